//! The `KEYSYNC_USAGE_EXPORT_*` variables: where usage events and alerts go (Kafka).

use crate::usage::export::{ExportSettings, DEFAULT_BACKLOG, DEFAULT_TOPIC};

use super::{read, ConfigError, Environment};

pub const USAGE_EXPORT_KAFKA_BROKERS: &str = "KEYSYNC_USAGE_EXPORT_KAFKA_BROKERS";
pub const USAGE_EXPORT_TOPIC: &str = "KEYSYNC_USAGE_EXPORT_TOPIC";
pub const USAGE_EXPORT_BACKLOG: &str = "KEYSYNC_USAGE_EXPORT_BACKLOG";

/// `KEYSYNC_USAGE_EXPORT_KAFKA_BROKERS`, with the topic and backlog, which need it.
pub(super) fn read_usage_export(
    env: &impl Environment,
) -> Result<Option<ExportSettings>, ConfigError> {
    let topic = read(
        env,
        USAGE_EXPORT_TOPIC,
        DEFAULT_TOPIC.to_owned(),
        parse_topic,
    )?;
    let backlog = read(env, USAGE_EXPORT_BACKLOG, DEFAULT_BACKLOG, parse_backlog)?;
    let Some(value) = env
        .get(USAGE_EXPORT_KAFKA_BROKERS)
        .filter(|value| !value.trim().is_empty())
    else {
        for name in [USAGE_EXPORT_TOPIC, USAGE_EXPORT_BACKLOG] {
            if let Some(value) = env.get(name) {
                return Err(ConfigError {
                    name,
                    value,
                    reason: format!(
                        "needs {USAGE_EXPORT_KAFKA_BROKERS} (the export is off without it)"
                    ),
                });
            }
        }
        return Ok(None);
    };
    let brokers = parse_brokers(&value).map_err(|reason| ConfigError {
        name: USAGE_EXPORT_KAFKA_BROKERS,
        // Credentials have no place here; should someone write them, they stay unshown.
        value: if value.contains('@') {
            "***".to_owned()
        } else {
            value.clone()
        },
        reason,
    })?;
    Ok(Some(ExportSettings {
        brokers,
        topic,
        backlog,
    }))
}

/// Comma-separated `host:port` (a name or an address, IPv6 in brackets).
fn parse_brokers(value: &str) -> Result<Vec<String>, String> {
    let mut brokers = Vec::new();
    for broker in value.split(',').map(str::trim) {
        let bad = || {
            format!("'{broker}' is not host:port; expected a comma-separated list such as kafka-1:9092,kafka-2:9092")
        };
        if broker.contains('@') || broker.contains('/') {
            return Err("expected host:port entries, without a scheme or credentials".to_owned());
        }
        let (host, port) = broker.rsplit_once(':').ok_or_else(bad)?;
        let host_ok = !host.is_empty()
            && (host.starts_with('[') && host.ends_with(']')
                || host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
        match port.parse::<u16>() {
            Ok(port) if port > 0 && host_ok => brokers.push(broker.to_owned()),
            _ => return Err(bad()),
        }
    }
    Ok(brokers)
}

/// A Kafka topic name: 1 to 249 of `a-z A-Z 0-9 . _ -`, not `.` or `..`.
fn parse_topic(value: &str) -> Result<String, String> {
    let legal = (1..=249).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && value != "."
        && value != "..";
    if legal {
        Ok(value.to_owned())
    } else {
        Err("expected a Kafka topic name: 1 to 249 of a-z A-Z 0-9 . _ -".to_owned())
    }
}

/// Events held in memory: 1 to 10,000,000.
fn parse_backlog(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(events) if (1..=10_000_000).contains(&events) => Ok(events),
        _ => Err("expected a whole number of events from 1 to 10000000".to_owned()),
    }
}
