//! Monthly quotas, the operator side, against a real PostgreSQL: `orgs set-quota` and
//! `keys set-quota` setting, replacing and clearing rows of `quotas`, each change taking
//! a new `quota_revision` and recording an audit event, this period's `quota_usage` row
//! started from the hourly rollup (forwarded requests only, this period only), a
//! reset day that moves the periods of the organization's key quotas, the listings'
//! used/monthly ([`org_quotas`], [`key_quotas`]), every misuse (one line, exit 1,
//! nothing written: [`misuse`]), and the HTTP API's endpoints ([`http_api`]). This file
//! holds what they share: reading the tables, and rows of the hourly rollup.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod http_api;
mod key_quotas;
mod misuse;
mod org_quotas;

use chrono::{DateTime, SecondsFormat, Utc};
use common::*;
use keysync::quota::period::Period;
use keysync_e2e::TestPostgres;
use serde_json::{json, Value};

fn text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The period with reset day `day` now, as the commands compute it.
fn period(day: u8) -> Period {
    Period::containing(day, Utc::now())
}

/// How many revisions of the list of quotas were taken.
fn revision(postgres: &TestPostgres, url: &str) -> i64 {
    let row = sql(
        postgres,
        url,
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM quota_revision",
    );
    row.parse().unwrap()
}

fn quotas(postgres: &TestPostgres, url: &str) -> String {
    sql(
        postgres,
        url,
        "SELECT subject_kind, subject_id, org_id, monthly_limit, reset_day FROM quotas \
         ORDER BY subject_kind, subject_id",
    )
}

/// The usage row of a subject in the period starting at `start` (empty: none).
fn usage_row(
    postgres: &TestPostgres,
    url: &str,
    kind: u8,
    subject: &str,
    start: DateTime<Utc>,
) -> String {
    sql(
        postgres,
        url,
        &format!(
            "SELECT used FROM quota_usage WHERE subject_kind = {kind} \
             AND subject_id = '{subject}' AND period_start = '{}'",
            text(start)
        ),
    )
}

fn count(postgres: &TestPostgres, url: &str, table: &str) -> String {
    sql(postgres, url, &format!("SELECT count(*) FROM {table}"))
}

/// Rows of the hourly rollup, as a usage flush would have left them.
fn served(postgres: &TestPostgres, url: &str, rows: &[(DateTime<Utc>, &str, &str, u8, i64)]) {
    for (hour, org, key, outcome, requests) in rows {
        sql(
            postgres,
            url,
            &format!(
                "INSERT INTO usage_hourly VALUES ('{}', '{org}', '{key}', {outcome}, \
                 {requests}, 0, {requests}, 0, 0, 0, 0, 0)",
                text(*hour)
            ),
        );
    }
}

/// The audit records of `action`, oldest first.
fn audited(url: &str, action: &str) -> Vec<Value> {
    let all = json(url, &["audit", "--json", "--limit", "1000"]);
    let mut records: Vec<Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| record["action"] == action)
        .cloned()
        .collect();
    records.reverse();
    records
}

fn quota_json(monthly: i64, used: i64, day: u8) -> Value {
    let period = period(day);
    json!({
        "monthly": monthly,
        "used": used,
        "reset_day": day,
        "period_start": text(period.start),
        "resets_at": text(period.end),
    })
}

fn listed_org(url: &str, org: &str) -> Value {
    json(url, &["orgs", "list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["org_id"] == org)
        .unwrap()
        .clone()
}

fn listed_key(url: &str, org: &str, key_id: &str) -> Value {
    json(url, &["keys", "list", "--org-id", org, "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["key_id"] == key_id)
        .unwrap()
        .clone()
}

/// The QUOTA cell of the row starting with `id` in a table.
fn quota_cell(table: &str, id: &str) -> String {
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    let column = header.iter().position(|name| *name == "QUOTA").unwrap();
    let line = table
        .lines()
        .find(|line| line.starts_with(id))
        .unwrap_or_else(|| panic!("{id} not in {table}"));
    // Cells are separated by two spaces or more; names here have no spaces.
    line.split_whitespace().nth(column).unwrap().to_owned()
}
