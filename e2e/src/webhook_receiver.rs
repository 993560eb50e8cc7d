//! A real webhook receiver for the tests: `webhook_receiver.py` (next to this file), run
//! with the virtualenv's Python, verifies each delivery with the Standard Webhooks
//! reference library (`standardwebhooks`, pinned in the Makefile) and records it.
//!
//! Each endpoint is a path, `/hook/NAME`, whose secret the test registers once keysync
//! has shown it ([`Receiver::register`]); `?fail=N` makes the first N attempts of each
//! `webhook-id` answer 500, `?delay=S` makes every answer wait S seconds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::http;
use crate::paths;
use crate::poll;
use crate::process::Process;

/// One delivery as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The endpoint's name (`/hook/NAME`).
    pub name: String,
    pub webhook_id: String,
    pub timestamp: String,
    pub signature: String,
    /// The body as sent.
    pub raw: String,
    /// The body, parsed by the library once verified; `Null` otherwise.
    pub body: Value,
    /// Whether `standardwebhooks` verified the signature.
    pub verified: bool,
    /// Why it did not verify, if it did not.
    pub error: Option<String>,
    /// Which attempt of this webhook-id it was at this endpoint (1, 2, ...).
    pub attempt: u64,
    /// The status answered.
    pub status: u64,
    /// When it arrived and was answered (unix seconds).
    pub arrived: f64,
    pub answered: f64,
}

impl Delivery {
    fn from_json(value: &Value) -> Delivery {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let headers = &value["headers"];
        Delivery {
            name: text(&value["name"]),
            webhook_id: text(&headers["webhook-id"]),
            timestamp: text(&headers["webhook-timestamp"]),
            signature: text(&headers["webhook-signature"]),
            raw: text(&value["raw"]),
            body: value["body"].clone(),
            verified: value["verified"].as_bool().unwrap_or(false),
            error: value["error"].as_str().map(str::to_owned),
            attempt: value["attempt"].as_u64().unwrap_or(0),
            status: value["status"].as_u64().unwrap_or(0),
            arrived: value["arrived"].as_f64().unwrap_or(0.0),
            answered: value["answered"].as_f64().unwrap_or(0.0),
        }
    }

    /// The event type in the verified body.
    pub fn event_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }
}

/// The receiver process.
pub struct Receiver {
    pub process: Process,
    pub addr: SocketAddr,
}

/// The virtualenv's Python, where `make deps` installs `standardwebhooks`.
fn python() -> PathBuf {
    let path = paths::workspace_root()
        .join(".venv")
        .join("bin")
        .join("python");
    assert!(
        path.is_file(),
        "{} is missing: `make deps` makes the virtualenv and installs standardwebhooks",
        path.display()
    );
    path
}

impl Receiver {
    /// Starts the receiver on a free loopback port.
    pub fn start() -> Receiver {
        let script = paths::workspace_root()
            .join("e2e")
            .join("src")
            .join("webhook_receiver.py");
        let mut command = Command::new(python());
        command.arg("-u").arg(script);
        let process = Process::spawn("webhook-receiver", command);
        let line = process.wait_for_log("listening on ", poll::DEADLINE);
        let port: u16 = line
            .rsplit(' ')
            .next()
            .and_then(|port| port.trim().parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        Receiver {
            process,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// The URL of endpoint `name`, with its behaviour (`fail=2`, `delay=5`), if any.
    pub fn url(&self, name: &str, query: &str) -> String {
        let mut url = format!("http://{}/hook/{name}", self.addr);
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// Tells the receiver endpoint `name`'s secret, to verify its deliveries with.
    pub fn register(&self, name: &str, secret: &str) {
        let raw = format!(
            "PUT /_secret/{name} HTTP/1.1\r\nhost: receiver\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{secret}",
            secret.len()
        );
        let response = http::send_raw(self.addr, raw.as_bytes()).expect("reach the receiver");
        assert_eq!(response.status, 204, "{}", response.text());
    }

    /// Every delivery so far, in arrival order.
    pub fn received(&self) -> Vec<Delivery> {
        let response = http::get(self.addr, "/_received", &[]).expect("reach the receiver");
        assert_eq!(response.status, 200, "{}", response.text());
        response
            .json()
            .as_array()
            .map(|all| all.iter().map(Delivery::from_json).collect())
            .unwrap_or_default()
    }

    /// The deliveries to endpoint `name`.
    pub fn received_by(&self, name: &str) -> Vec<Delivery> {
        self.received()
            .into_iter()
            .filter(|delivery| delivery.name == name)
            .collect()
    }

    /// Waits until endpoint `name` has got deliveries that satisfy `done`; returns them.
    pub fn wait_for(
        &self,
        what: &str,
        name: &str,
        timeout: Duration,
        done: impl Fn(&[Delivery]) -> bool,
    ) -> Vec<Delivery> {
        poll::eventually(what, timeout, || self.received_by(name), |all| done(all))
    }
}
