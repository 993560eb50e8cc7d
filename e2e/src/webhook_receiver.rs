//! A real webhook receiver for the tests: `webhook_receiver.py` (next to this file), run
//! with the virtualenv's Python, verifies each delivery with the Standard Webhooks
//! reference library (`standardwebhooks`, pinned in the Makefile) and records it.
//!
//! Each endpoint is a path, `/hook/NAME`, whose secret the test registers once keysync
//! has shown it ([`Receiver::register`]); `?fail=N` makes the first N attempts of each
//! `webhook-id` answer 500, `?delay=S` makes every answer wait S seconds, `?hang_first=S`
//! the first attempt of each `webhook-id`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::http;
use crate::paths;
use crate::poll;
use crate::process::Process;
use crate::scratch::ScratchDir;
use crate::test_ca::ServerCertificate;

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
    /// Where deliveries go.
    pub addr: SocketAddr,
    /// Where the test registers secrets and reads what arrived (plain http).
    control: SocketAddr,
    /// The certificate and key of an https receiver.
    tls: Option<ScratchDir>,
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
        Receiver::start_with(None)
    }

    /// Starts it serving https with `certificate`; [`Receiver::url`] names it by
    /// `host`, which the certificate must cover for a delivery to be made.
    pub fn start_tls(certificate: &ServerCertificate) -> Receiver {
        Receiver::start_with(Some(certificate))
    }

    fn start_with(certificate: Option<&ServerCertificate>) -> Receiver {
        let script = paths::workspace_root()
            .join("e2e")
            .join("src")
            .join("webhook_receiver.py");
        let mut command = Command::new(python());
        command.arg("-u").arg(script);
        let tls = certificate.map(|certificate| {
            let dir = ScratchDir::new("webhook-receiver-tls").expect("a scratch dir");
            let cert = dir.path().join("cert.pem");
            let key = dir.path().join("key.pem");
            std::fs::write(&cert, &certificate.certificate_pem).expect("write the certificate");
            std::fs::write(&key, &certificate.key_pem).expect("write the key");
            command.arg("--tls").arg(cert).arg(key);
            dir
        });
        let process = Process::spawn("webhook-receiver", command);
        let line = process.wait_for_log("listening on ", poll::DEADLINE);
        let port = |after: &str| -> SocketAddr {
            line.split_whitespace()
                .skip_while(|word| *word != after)
                .nth(1)
                .and_then(|port| port.parse::<u16>().ok())
                .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
                .unwrap_or_else(|| panic!("no {after} port in {line:?}"))
        };
        Receiver {
            addr: port("on"),
            control: port("control"),
            process,
            tls,
        }
    }

    /// The URL of endpoint `name`, with its behaviour (`fail=2`, `delay=5`), if any.
    pub fn url(&self, name: &str, query: &str) -> String {
        assert!(self.tls.is_none(), "an https receiver: use url_by_host");
        self.url_by_host("127.0.0.1", name, query)
    }

    /// The same with `host` for the address (`localhost`), and https for an https
    /// receiver.
    pub fn url_by_host(&self, host: &str, name: &str, query: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut url = format!("{scheme}://{host}:{}/hook/{name}", self.addr.port());
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
        let response = http::send_raw(self.control, raw.as_bytes()).expect("reach the receiver");
        assert_eq!(response.status, 204, "{}", response.text());
    }

    /// Every delivery so far, in arrival order.
    pub fn received(&self) -> Vec<Delivery> {
        let response = http::get(self.control, "/_received", &[]).expect("reach the receiver");
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
