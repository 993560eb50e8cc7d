//! CPU time a process has used, all its threads: from /proc/<pid>/task/*/schedstat
//! (nanoseconds, the threads alive now: what Envoy itself spent, whatever else the
//! shared machine made it wait for), or from /proc/<pid>/stat (user plus system time in
//! clock ticks, threads that ended included: what `top` and `ps` show).

use std::sync::OnceLock;

/// Nanoseconds on a CPU so far, summed over the process's threads that are alive now.
pub fn process_cpu_ns(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|e| panic!("cannot list /proc/{pid}/task: {e}"));
    tasks
        .filter_map(|task| {
            let path = task.ok()?.path().join("schedstat");
            // A thread that ended in between has no file left; it is simply not counted.
            let stat = std::fs::read_to_string(path).ok()?;
            running_ns(&stat)
        })
        .sum()
}

/// Seconds of CPU (user plus system) the process has used so far, from
/// `/proc/<pid>/stat`.
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/stat: {e}"));
    let ticks = cpu_ticks(&stat).unwrap_or_else(|| panic!("no CPU times in /proc/{pid}/stat"));
    ticks as f64 / clock_ticks_per_second()
}

/// `utime + stime` of a `/proc/<pid>/stat` line: fields 14 and 15, counted after the
/// command name, which may itself hold spaces and parentheses.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// `getconf CLK_TCK` (USER_HZ, 100 on every Linux the project runs on, asked once).
fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The first field of a schedstat line: time spent running, in nanoseconds.
fn running_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_running_time() {
        assert_eq!(running_ns("181496595 12498903 454\n"), Some(181_496_595));
        assert_eq!(running_ns(""), None);
    }

    #[test]
    fn reads_user_and_system_ticks_after_the_name() {
        let stat = "4242 (key sync) (x)) S 1 4242 4242 0 -1 4194560 2301 0 0 0 \
                    150 27 0 0 20 0 5 0 12345 0 0";
        assert_eq!(cpu_ticks(stat), Some(177));
        assert_eq!(cpu_ticks("4242 (keysync) S 1"), None);
    }

    #[test]
    fn this_process_has_run_by_its_stat_too() {
        let before = process_cpu_seconds(std::process::id());
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        assert!(process_cpu_seconds(std::process::id()) > before, "{x}");
    }

    #[test]
    fn this_process_has_run() {
        let before = process_cpu_ns(std::process::id());
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        assert!(process_cpu_ns(std::process::id()) > before, "{x}");
    }
}
