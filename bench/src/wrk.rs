//! Runs wrk (fixed connections and duration, latency percentiles) and reads its report.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct Report {
    /// Requests completed in the run.
    pub requests: u64,
    pub requests_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub non_2xx: u64,
}

impl Report {
    /// Microseconds of Envoy time per request when one worker is saturated.
    pub fn us_per_request(&self) -> f64 {
        1_000_000.0 / self.requests_per_sec
    }
}

/// `wrk -t2 -c<connections> -d<duration> --latency [-H header]... http://target/` (one
/// thread for one connection)
pub fn run(target: SocketAddr, connections: u32, duration: Duration, headers: &[String]) -> Report {
    run_with(target, connections, duration, headers, None)
}

/// Same, with a Lua script that builds each request (see `rotating_keys_script`).
pub fn run_with(
    target: SocketAddr,
    connections: u32,
    duration: Duration,
    headers: &[String],
    script: Option<&std::path::Path>,
) -> Report {
    let mut command = Command::new(std::env::var("WRK_BIN").unwrap_or_else(|_| "wrk".into()));
    // wrk needs at least one connection per thread.
    command
        .arg(format!("-t{}", connections.clamp(1, 2)))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs()))
        .arg("--latency");
    for header in headers {
        command.arg("-H").arg(header);
    }
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    command.arg(format!("http://{target}/"));
    let output = command
        .output()
        .expect("run wrk (apt-get install wrk; make bench installs it)");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse(&text).unwrap_or_else(|| panic!("cannot read wrk's report:\n{text}"))
}

/// A wrk script sending `Authorization: Bearer <key>` with the keys in turn, so that
/// requests spread over many store buckets like real traffic.
pub fn rotating_keys_script(keys: &[String]) -> String {
    let list: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    format!(
        "local keys = {{{}}}\nlocal n = 0\nrequest = function()\n  n = n + 1\n  return wrk.format(nil, nil, {{[\"Authorization\"] = \"Bearer \" .. keys[(n % #keys) + 1]}})\nend\n",
        list.join(",")
    )
}

/// A wrk script sending a fresh random well-formed key each time: every request a miss.
pub const RANDOM_KEYS_SCRIPT: &str = "math.randomseed(os.time())\nrequest = function()\n  return wrk.format(nil, nil, {[\"Authorization\"] = \"Bearer sk_live_unknown\" .. math.random(1, 2^40) .. \"x\" .. math.random(1, 2^40)})\nend\n";

fn parse(text: &str) -> Option<Report> {
    let value = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(str::trim)
    };
    let requests_per_sec = value("Requests/sec:")?.parse().ok()?;
    // `300000 requests in 10.00s, 30.00MB read`
    let requests = text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let count = words.next()?.parse().ok()?;
        (words.next()? == "requests" && words.next()? == "in").then_some(count)
    })?;
    let latency = |percent: &str| -> Option<f64> {
        let raw = value(percent)?;
        let (number, unit) = raw.split_at(raw.find(|c: char| c.is_ascii_alphabetic())?);
        let number: f64 = number.parse().ok()?;
        Some(match unit {
            "us" => number,
            "ms" => number * 1_000.0,
            "s" => number * 1_000_000.0,
            _ => return None,
        })
    };
    let non_2xx = value("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(Report {
        requests,
        requests_per_sec,
        p50_us: latency("50%")?,
        p99_us: latency("99%")?,
        non_2xx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 10s test @ http://127.0.0.1:8080/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   512.27us  120.00us   5.00ms   90.00%
  Latency Distribution
     50%  480.00us
     75%  550.00us
     90%  700.00us
     99%    1.20ms
  300000 requests in 10.00s, 30.00MB read
  Non-2xx or 3xx responses: 12
Requests/sec:  30000.50
Transfer/sec:      3.00MB
";

    #[test]
    fn reads_the_report() {
        let report = parse(SAMPLE).expect("parses");
        assert_eq!(report.requests, 300_000);
        assert!((report.requests_per_sec - 30000.5).abs() < 1e-6);
        assert!((report.p50_us - 480.0).abs() < 1e-6);
        assert!((report.p99_us - 1200.0).abs() < 1e-6);
        assert_eq!(report.non_2xx, 12);
        assert!((report.us_per_request() - 33.332).abs() < 0.01);
    }
}
