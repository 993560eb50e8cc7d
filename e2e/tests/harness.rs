//! Tests of the harness itself: PostgreSQL clusters, Redis servers, child processes, the
//! echo backend.
#![allow(clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use keysync_e2e::poll::{eventually, DEADLINE};
use keysync_e2e::redis::TestRedis;
use keysync_e2e::{Process, TestPostgres};
use serde_json::Value;

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn harness_types_can_be_shared_between_threads() {
    assert_send_sync::<TestPostgres>();
    assert_send_sync::<TestRedis>();
    assert_send_sync::<Process>();
}

#[test]
fn postgres_serves_separate_databases() {
    let started = Instant::now();
    let postgres = TestPostgres::start();
    eprintln!("TestPostgres::start took {:?}", started.elapsed());

    let first = postgres.create_database();
    let second = postgres.create_database();
    assert_ne!(first, second);
    for url in [&first, &second] {
        let prefix = format!("postgres://keysync@127.0.0.1:{}/", postgres.port());
        let name = url
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{url} does not start with {prefix}"));
        assert_eq!(postgres.url(name), *url);
        assert_eq!(postgres.psql(name, "SELECT 1"), "1");
        assert_eq!(postgres.psql(name, "SELECT current_database()"), name);
    }
}

#[test]
fn postgres_keeps_data_across_stop_and_start_again() {
    let mut postgres = TestPostgres::start();
    let url = postgres.create_database();
    let database = keysync_e2e::postgres::database_of(&url);
    postgres.psql(
        database,
        "CREATE TABLE survivors (name text); INSERT INTO survivors VALUES ('kept')",
    );
    let port = postgres.port();

    postgres.stop();
    let refused = TcpStream::connect(("127.0.0.1", port));
    assert!(
        refused.is_err(),
        "port {port} still accepts connections after stop"
    );

    postgres.start_again();
    assert_eq!(postgres.port(), port);
    assert_eq!(
        postgres.psql(database, "SELECT name FROM survivors"),
        "kept"
    );
}

/// Sends one inline Redis command over a fresh connection and returns the reply line.
fn redis_command(port: u16, command: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(DEADLINE))?;
    stream.write_all(format!("{command}\r\n").as_bytes())?;
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        reply.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&reply).trim_end().to_owned())
}

#[test]
fn redis_serves_and_comes_back_empty_on_the_same_port() {
    let started = Instant::now();
    let mut redis = TestRedis::start();
    eprintln!("TestRedis::start took {:?}", started.elapsed());
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}/0"));
    assert!(redis.is_running());
    assert_eq!(redis_command(port, "PING").expect("PING"), "+PONG");
    assert_eq!(redis_command(port, "SET kept 1").expect("SET"), "+OK");
    assert_eq!(redis_command(port, "GET kept").expect("GET"), "$1");

    redis.stop();
    redis.stop();
    assert!(!redis.is_running());
    assert!(
        redis_command(port, "PING").is_err(),
        "port {port} still answers after stop"
    );

    redis.start_again();
    assert_eq!(redis.port(), port);
    assert_eq!(redis_command(port, "PING").expect("PING"), "+PONG");
    // `$-1`: the key is gone, since nothing was saved.
    assert_eq!(redis_command(port, "GET kept").expect("GET"), "$-1");
    assert!(redis.log().contains("Ready to accept connections"));
    redis.start_again();
    assert_eq!(redis.port(), port);
}

#[test]
fn two_redis_servers_run_side_by_side_and_drop_stops_them() {
    let first = TestRedis::start();
    let second = TestRedis::start();
    assert_ne!(first.port(), second.port());
    let port = first.port();
    drop(first);
    assert!(redis_command(port, "PING").is_err());
    assert_eq!(redis_command(second.port(), "PING").expect("PING"), "+PONG");
}

#[test]
fn process_log_is_waited_for_and_drop_terminates_the_process() {
    let mut command = Command::new("sh");
    command.args(["-c", "echo hello; sleep 30"]);
    let process = Process::spawn("sh-hello", command);
    assert_eq!(process.wait_for_log("hello", DEADLINE), "hello");
    assert!(process.log_len() >= "hello\n".len());
    assert!(process.exit_status().is_none(), "sh exited early");

    let pid = process.pid();
    let proc_entry = format!("/proc/{pid}");
    assert!(Path::new(&proc_entry).exists());
    drop(process);
    assert!(
        !Path::new(&proc_entry).exists(),
        "pid {pid} still exists after drop"
    );
}

#[test]
fn terminate_stops_the_whole_process_group() {
    let mut command = Command::new("sh");
    command.args(["-c", "sleep 30 & echo \"background $!\"; wait"]);
    let mut process = Process::spawn("sh-background", command);
    let line = process.wait_for_log("background ", DEADLINE);
    let background: u32 = line["background ".len()..]
        .parse()
        .unwrap_or_else(|error| panic!("bad pid in {line:?}: {error}"));
    process.terminate();
    process.terminate();
    // The background sleep is not our child: once killed, init reaps it.
    eventually(
        &format!("background pid {background} to end after terminate"),
        DEADLINE,
        || Path::new(&format!("/proc/{background}")).exists(),
        |&exists| !exists,
    );
}

#[test]
fn wait_for_log_after_ignores_earlier_lines() {
    let mut command = Command::new("sh");
    command.args(["-c", "echo tick 1; sleep 1; echo tick 2; sleep 30"]);
    let process = Process::spawn("sh-ticks", command);
    process.wait_for_log("tick 1", DEADLINE);
    let offset = process.log_len();
    assert_eq!(
        process.wait_for_log_after(offset, "tick", DEADLINE),
        "tick 2"
    );
    assert!(process.log().starts_with("tick 1\ntick 2\n"));
}

#[test]
#[should_panic(expected = "exited (exit code 3) without logging")]
fn wait_for_log_fails_fast_when_the_process_exits() {
    let mut command = Command::new("sh");
    command.args(["-c", "echo something else; exit 3"]);
    let process = Process::spawn("sh-exits", command);
    process.wait_for_log("never printed", Duration::from_secs(600));
}

#[test]
fn wait_exit_and_kill_report_how_the_process_ended() {
    let mut command = Command::new("sh");
    command.args(["-c", "exit 7"]);
    let mut quick = Process::spawn("sh-exit-7", command);
    let status = quick.wait_exit(DEADLINE).expect("sh -c 'exit 7' ends");
    assert_eq!(status.code(), Some(7));

    let mut command = Command::new("sleep");
    command.arg("30");
    let mut sleeper = Process::spawn("sleep", command);
    assert_eq!(sleeper.wait_exit(Duration::from_millis(100)), None);
    sleeper.kill();
    let status = sleeper.exit_status().expect("killed process is reaped");
    assert!(!status.success());
}

#[test]
fn echo_backend_binary_echoes_method_path_and_headers() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_echo-backend"));
    command.args(["--listen", "127.0.0.1:0"]);
    let mut backend = Process::spawn("echo-backend", command);
    let line = backend.wait_for_log("echo-backend listening on", DEADLINE);
    let address = line
        .strip_prefix("echo-backend listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    assert!(address.starts_with("127.0.0.1:"), "{line}");

    let (head, body) = http_get(
        address,
        "/v1/things?limit=5",
        &[("X-Org-Id", "org_1"), ("Accept", "a"), ("Accept", "b")],
    );
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let echo: Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/v1/things?limit=5");
    assert_eq!(echo["headers"]["x-org-id"], serde_json::json!(["org_1"]));
    assert_eq!(echo["headers"]["accept"], serde_json::json!(["a", "b"]));
    assert_eq!(echo["headers"]["host"], serde_json::json!([address]));

    backend.signal(keysync_e2e::Signal::Term);
    let status = backend
        .wait_exit(DEADLINE)
        .expect("echo-backend exits on SIGTERM");
    assert!(status.success(), "echo-backend exited with {status}");
    assert_eq!(backend.log().lines().count(), 1, "{}", backend.log());
}

#[tokio::test]
async fn echo_serve_runs_in_process() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let address = listener.local_addr().expect("local address").to_string();
    let server = tokio::spawn(keysync_e2e::echo::serve(listener));
    let (head, body) = tokio::task::spawn_blocking(move || {
        http_get(&address, "/health", &[("X-Api-Key", "sk_test_x")])
    })
    .await
    .expect("request thread");
    server.abort();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let echo: Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(echo["path"], "/health");
    assert_eq!(
        echo["headers"]["x-api-key"],
        serde_json::json!(["sk_test_x"])
    );
}

/// Sends one HTTP/1.1 GET over a fresh connection; returns the response head and body.
fn http_get(address: &str, path: &str, headers: &[(&str, &str)]) -> (String, String) {
    let mut stream =
        TcpStream::connect(address).unwrap_or_else(|error| panic!("connect {address}: {error}"));
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("set read timeout");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {response:?}"));
    (head.to_owned(), body.to_owned())
}
