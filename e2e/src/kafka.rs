//! A throwaway Kafka-protocol broker on 127.0.0.1 for one test: `tansu` with its memory
//! storage, its own free port, stopped when dropped. It can be stopped and started again
//! on the same port (empty again: the memory storage keeps nothing, topics included) for
//! outage tests. Also the test's Kafka client (rskafka): creating a topic, reading
//! every record of one, and producing records as keysync's export does.
//!
//! The binary is `TANSU_BIN` when set (the Makefile's `kafka-broker` target installs it
//! and exports it), else `~/.cache/keysync/tansu-0.6.0/bin/tansu`, else `tansu` on
//! `PATH`.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use rskafka::BackoffConfig;

use crate::paths::free_port;
use crate::poll;
use crate::process::Process;

/// The tansu version the Makefile installs.
pub const TANSU_VERSION: &str = "0.6.0";
/// How long the broker may take to answer (a noisy 2-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many fresh ports [`TestKafka::start`] tries when its port gets taken.
const PORT_ATTEMPTS: usize = 10;
/// What tansu prints once it listens, and when its port is taken.
const READY_LINE: &str = "ready in";
const ADDRESS_IN_USE: &str = "Address already in use";

/// A running (or stopped) broker on 127.0.0.1.
pub struct TestKafka {
    port: u16,
    /// `None` between [`TestKafka::stop`] and [`TestKafka::start_again`].
    server: Option<Process>,
}

/// A record read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, Vec<u8>>,
}

impl ConsumedRecord {
    /// The value as JSON; panics when it is not.
    pub fn json(&self) -> serde_json::Value {
        let value = self.value.as_deref().unwrap_or_default();
        serde_json::from_slice(value).unwrap_or_else(|error| {
            panic!(
                "record {}/{} is not JSON ({error}): {}",
                self.partition,
                self.offset,
                String::from_utf8_lossy(value)
            )
        })
    }
}

impl TestKafka {
    /// Starts a fresh, empty broker on a free 127.0.0.1 port and waits until it answers
    /// a metadata request. Panics with its log when it cannot.
    pub fn start() -> TestKafka {
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            if let Some(server) = launch(port) {
                return TestKafka {
                    port,
                    server: Some(server),
                };
            }
        }
        panic!("tansu: {PORT_ATTEMPTS} free ports in a row were taken before the broker bound them")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The bootstrap list for a client: `127.0.0.1:PORT`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// The broker's log so far (empty while it is stopped).
    pub fn log(&self) -> String {
        self.server.as_ref().map(Process::log).unwrap_or_default()
    }

    /// Stops the broker (SIGTERM); its topics and records are gone. Does nothing if it
    /// is already stopped.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.terminate();
        }
    }

    /// Starts a new, empty broker on the same port and waits until it answers. Does
    /// nothing if it is running.
    pub fn start_again(&mut self) {
        if self.server.is_some() {
            return;
        }
        let port = self.port;
        let server = poll::within(START_TIMEOUT, Duration::from_millis(200), || {
            launch(port).ok_or(())
        })
        .unwrap_or_else(|()| panic!("tansu: port {port} stayed in use, cannot start again"));
        self.server = Some(server);
    }

    /// Creates `topic` with `partitions` partitions (replication 1).
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let brokers = self.brokers();
        block_on(async move {
            let client = connect(&brokers).await?;
            client
                .controller_client()?
                .create_topic(topic, partitions, 1, 5_000)
                .await
        })
        .unwrap_or_else(|error| panic!("tansu: cannot create topic {topic}: {error}"));
    }

    /// Produces `events` to partition 0 of `topic`, in order, as keysync's export
    /// writes CloudEvents: each keyed by its string, its JSON as the value, header
    /// `content-type: application/cloudevents+json`.
    pub fn produce_events(&self, topic: &str, events: &[(String, serde_json::Value)]) {
        let brokers = self.brokers();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
            });
        let now = rskafka::chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
        let records: Vec<Record> = events
            .iter()
            .map(|(key, event)| Record {
                key: Some(key.as_bytes().to_vec()),
                value: Some(event.to_string().into_bytes()),
                headers: BTreeMap::from([(
                    "content-type".to_owned(),
                    b"application/cloudevents+json".to_vec(),
                )]),
                timestamp: now,
            })
            .collect();
        block_on(async move {
            let client = connect(&brokers).await?;
            let partition = client
                .partition_client(topic, 0, UnknownTopicHandling::Retry)
                .await?;
            for batch in records.chunks(500) {
                partition
                    .produce(batch.to_vec(), Compression::NoCompression)
                    .await?;
            }
            Ok::<(), rskafka::client::error::Error>(())
        })
        .unwrap_or_else(|error| panic!("tansu: cannot produce to {topic}: {error}"));
    }

    /// Every record of `topic`, partition by partition, each in offset order.
    pub fn records(&self, topic: &str) -> Vec<ConsumedRecord> {
        let brokers = self.brokers();
        block_on(async move { read_topic(&brokers, topic).await })
            .unwrap_or_else(|error| panic!("tansu: cannot read topic {topic}: {error}"))
    }
}

/// rskafka's retries, bounded so that a broker that does not answer fails the call.
fn backoff() -> BackoffConfig {
    BackoffConfig {
        init_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        base: 2.0,
        deadline: Some(Duration::from_secs(10)),
    }
}

async fn connect(brokers: &str) -> Result<Client, rskafka::client::error::Error> {
    ClientBuilder::new(vec![brokers.to_owned()])
        .client_id("keysync-e2e")
        .backoff_config(backoff())
        .build()
        .await
}

async fn read_topic(
    brokers: &str,
    topic: &str,
) -> Result<Vec<ConsumedRecord>, rskafka::client::error::Error> {
    let client = connect(brokers).await?;
    let mut partitions: Vec<i32> = client
        .list_topics()
        .await?
        .into_iter()
        .find(|found| found.name == topic)
        .map(|found| found.partitions.into_iter().collect())
        .unwrap_or_default();
    partitions.sort_unstable();
    let mut records = Vec::new();
    for partition in partitions {
        let reader = client
            .partition_client(topic, partition, UnknownTopicHandling::Retry)
            .await?;
        let mut offset = 0;
        loop {
            let (batch, high_watermark) = reader.fetch_records(offset, 1..10_000_000, 100).await?;
            for read in batch {
                offset = offset.max(read.offset + 1);
                records.push(ConsumedRecord {
                    partition,
                    offset: read.offset,
                    key: read.record.key,
                    value: read.record.value,
                    headers: read.record.headers,
                });
            }
            if offset >= high_watermark {
                break;
            }
        }
    }
    Ok(records)
}

/// Runs `future` on a runtime of its own: the harness is synchronous.
fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for the Kafka client")
        .block_on(future)
}

/// `TANSU_BIN`, else the Makefile's cache, else `tansu` on `PATH`.
pub fn tansu_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("TANSU_BIN").filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            panic!("TANSU_BIN={} does not exist", path.display());
        }
        return path;
    }
    let cached = std::env::var_os("HOME").map(|home| {
        PathBuf::from(home).join(format!(".cache/keysync/tansu-{TANSU_VERSION}/bin/tansu"))
    });
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    cached
        .into_iter()
        .chain(on_path.into_iter().map(|dir| dir.join("tansu")))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "tansu {TANSU_VERSION} not found (set TANSU_BIN): `make kafka-broker` installs it"
            )
        })
}

/// Starts tansu on `port` and waits until it answers a metadata request; `None` if the
/// port is taken. Panics with its log on any other failure.
fn launch(port: u16) -> Option<Process> {
    let url = format!("tcp://127.0.0.1:{port}");
    let mut command = Command::new(tansu_bin());
    command
        .arg("broker")
        .args(["--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        // Plain log lines (no colour codes) for the test's output.
        .env("NO_COLOR", "1")
        .current_dir(std::env::temp_dir());
    let mut server = Process::spawn(&format!("tansu:{port}"), command);
    let deadline = Instant::now() + START_TIMEOUT;
    let listening = poll::until(deadline, Duration::from_millis(20), || {
        let log = server.log();
        if log.contains(ADDRESS_IN_USE) {
            return Ok(false);
        }
        if log.contains(READY_LINE) {
            return Ok(true);
        }
        if let Some(status) = server.exit_status() {
            panic!("tansu exited ({status}) while starting; its log:\n{log}");
        }
        Err(log)
    })
    .unwrap_or_else(|log| panic!("tansu not ready within {START_TIMEOUT:?}; its log:\n{log}"));
    if !listening {
        // It may stay up after failing to bind.
        server.kill();
        return None;
    }
    let brokers = format!("127.0.0.1:{port}");
    poll::until(deadline, Duration::from_millis(50), || {
        block_on(connect(&brokers))
            .map(drop)
            .map_err(|error| error.to_string())
    })
    .unwrap_or_else(|error| {
        panic!(
            "tansu on {brokers} does not answer ({error}); its log:\n{}",
            server.log()
        )
    });
    Some(server)
}
