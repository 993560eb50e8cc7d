//! Usage counters added up, to compare what a consumer of the export computed with what
//! keysync's rollups hold (`keysync usage --by endpoint|status`): the eight values of a
//! counter by (org, key, endpoint, outcome), and the same grouped as `keysync usage`
//! groups them.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::keysync::{self, CreatedKey};

/// The eight values of a counter, as the events' data and `keysync usage` name them.
pub const VALUES: [&str; 8] = [
    "requests",
    "duration_us",
    "le_10ms",
    "le_100ms",
    "le_1s",
    "over_1s",
    "request_bytes",
    "response_bytes",
];

/// What a counter is: (org, key, endpoint, outcome).
pub type Counter = (String, String, String, String);
/// (org, key, endpoint, outcome) -> the eight values.
pub type Sums = BTreeMap<Counter, [i64; 8]>;
/// (org, key, endpoint or outcome) -> the eight values: what `keysync usage --by
/// endpoint` or `--by status` reports of each key.
pub type GroupSums = BTreeMap<(String, String, String), [i64; 8]>;

/// The eight values of `object` (an event's data, a row of `keysync usage`); panics
/// when one is missing.
pub fn values_of(object: &Value) -> [i64; 8] {
    VALUES.map(|name| {
        object[name]
            .as_i64()
            .unwrap_or_else(|| panic!("no integer {name} in {object}"))
    })
}

/// The counter `object` (an event's data, an aggregate) is of: its `org_id`, `key_id`,
/// `endpoint` and `outcome`; panics when one is missing.
pub fn counter_of(object: &Value) -> Counter {
    let field = |name: &str| {
        object[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {object}"))
            .to_string()
    };
    (
        field("org_id"),
        field("key_id"),
        field("endpoint"),
        field("outcome"),
    )
}

/// Adds `values` to the sums at `at`.
pub fn add<K: Ord>(sums: &mut BTreeMap<K, [i64; 8]>, at: K, values: [i64; 8]) {
    let sum = sums.entry(at).or_insert([0; 8]);
    for (total, value) in sum.iter_mut().zip(values) {
        *total += value;
    }
}

/// `sums` added up by (org, key, endpoint) or (org, key, outcome), as `by` says
/// (`endpoint` or `status`).
pub fn grouped(sums: &Sums, by: &str) -> GroupSums {
    let mut grouped = GroupSums::new();
    for ((org, key, endpoint, outcome), values) in sums {
        let group = if by == "endpoint" { endpoint } else { outcome };
        add(
            &mut grouped,
            (org.clone(), key.clone(), group.clone()),
            *values,
        );
    }
    grouped
}

/// What `keysync usage --by <by>` (`endpoint` or `status`) holds for these keys over
/// the last day.
pub fn rollup_sums(database_url: &str, keys: &[(&str, &CreatedKey)], by: &str) -> GroupSums {
    let field = if by == "endpoint" {
        "endpoint"
    } else {
        "outcome"
    };
    let mut sums = GroupSums::new();
    for (org, key) in keys {
        let answer = keysync::cli_json(
            database_url,
            &[
                "usage",
                "--org-id",
                org,
                "--key-id",
                &key.key_id,
                "--by",
                by,
                "--since",
                "1d",
            ],
        );
        for row in answer["rows"].as_array().cloned().unwrap_or_default() {
            let group = row[field].as_str().unwrap_or_default().to_string();
            add(
                &mut sums,
                (org.to_string(), key.key_id.clone(), group),
                values_of(&row),
            );
        }
    }
    sums
}

/// Requests of each entry of `sums`.
pub fn requests<K: Ord + Clone>(sums: &BTreeMap<K, [i64; 8]>) -> BTreeMap<K, i64> {
    sums.iter()
        .map(|(at, values)| (at.clone(), values[0]))
        .collect()
}

/// Counts one request of `key` served on the route named `endpoint` with `outcome`.
pub fn count_request(
    counts: &mut BTreeMap<Counter, i64>,
    org: &str,
    key: &CreatedKey,
    endpoint: &str,
    outcome: &str,
) {
    let at = (
        org.to_string(),
        key.key_id.clone(),
        endpoint.to_string(),
        outcome.to_string(),
    );
    *counts.entry(at).or_default() += 1;
}

/// Requests by counter, as sums whose other values are zero.
pub fn as_sums(counts: &BTreeMap<Counter, i64>) -> Sums {
    counts
        .iter()
        .map(|(at, n)| (at.clone(), [*n, 0, 0, 0, 0, 0, 0, 0]))
        .collect()
}
