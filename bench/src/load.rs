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
    let barrier = Arc::new(Barrier::new(connections));
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let target = targets[c % targets.len()];
            let requests = total / connections + usize::from(c < total % connections);
            let key = key.to_string();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(target).expect("connect to envoy");
                stream.set_nodelay(true).expect("nodelay");
                let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
                let request =
                    format!("GET / HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {key}\r\n\r\n");
                barrier.wait();
                (0..requests)
                    .map(|_| {
                        stream.write_all(request.as_bytes()).expect("send");
                        read_status(&mut reader)
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let mut counts = BTreeMap::new();
    for thread in threads {
        for status in thread.join().expect("load thread") {
            *counts.entry(status).or_insert(0) += 1;
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
