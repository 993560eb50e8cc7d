//! A fixed-count load: exactly N requests over C keep-alive connections at once, each
//! connection on its own thread, counting the statuses. (wrk runs for a duration, not a
//! count, so it cannot say "exactly 100 of 1,000 were allowed".)

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};

/// Sends `total` GETs with `key` spread over `connections` and the `targets` (round
/// robin per connection); returns how many responses had each status.
pub fn run(
    targets: &[SocketAddr],
    key: &str,
    total: usize,
    connections: usize,
) -> BTreeMap<u16, usize> {
    let mut counts = BTreeMap::new();
    for ((_, status), n) in run_keys(targets, &[key.to_string()], total, connections) {
        *counts.entry(status).or_insert(0) += n;
    }
    counts
}

/// Sends `total` GETs spread over `connections` and the `targets` (round robin per
/// connection), request `i` of the whole load with `keys[i % keys.len()]`; returns how
/// many responses each key got of each status (by the key's index).
pub fn run_keys(
    targets: &[SocketAddr],
    keys: &[String],
    total: usize,
    connections: usize,
) -> BTreeMap<(usize, u16), usize> {
    let barrier = Arc::new(Barrier::new(connections));
    let keys = Arc::new(keys.to_vec());
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let target = targets[c % targets.len()];
            let requests = total / connections + usize::from(c < total % connections);
            let keys = Arc::clone(&keys);
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(target).expect("connect to envoy");
                stream.set_nodelay(true).expect("nodelay");
                let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
                barrier.wait();
                (0..requests)
                    .map(|n| {
                        let index = (c + n * connections) % keys.len();
                        let request = format!(
                            "GET / HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {}\r\n\r\n",
                            keys[index]
                        );
                        stream.write_all(request.as_bytes()).expect("send");
                        (index, read_status(&mut reader))
                    })
                    .collect::<Vec<(usize, u16)>>()
            })
        })
        .collect();
    let mut counts = BTreeMap::new();
    for thread in threads {
        for answer in thread.join().expect("load thread") {
            *counts.entry(answer).or_insert(0) += 1;
        }
    }
    counts
}

/// Reads one response (status line, headers, content-length body); returns its status.
fn read_status(reader: &mut BufReader<TcpStream>) -> u16 {
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).expect("header");
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("body");
    status
}
