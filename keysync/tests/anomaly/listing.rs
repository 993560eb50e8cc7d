//! `keysync alerts` and `GET /v1/alerts`: the stored alerts, newest first, filtered by
//! organization, kind and age; an organization's token sees its own alone.

use axum::http::StatusCode;
use keysync::operations::timestamp::Timestamp;
use keysync::usage::Outcome;
use serde_json::Value;

use super::*;
use crate::common::api::{admin_token, Api};
use crate::common::{assert_one_line_error, json, keysync, migrated_database, ok};

/// Two organizations' alerts: a spike of `acme` in the hour judged whole, then, judged
/// an hour later, a drop and a jump of upstream 5xx of `globex`.
async fn two_organizations_alerted(url: &str) -> (Uuid, Uuid, DateTime<Utc>) {
    let pool = pool(url).await;
    let (acme, globex) = (org(url, "acme"), org(url, "globex"));
    let now = judged_at();
    let hour = complete_hour(now);
    let next = hour + TimeDelta::hours(1);
    let mut history = History::default();
    for org in [acme, globex] {
        history.every_hour(org, weeks_before(hour, 6), hour, |_| {
            vec![(Outcome::Status2xx, 4_000)]
        });
    }
    history
        .add(acme, hour, Outcome::Status2xx, 30_000)
        .add(acme, next, Outcome::Status2xx, 4_000)
        .add(globex, hour, Outcome::Status2xx, 4_000);
    // The next hour, globex's upstream fails: a twentieth of its requests, most 5xx.
    history
        .add(globex, next, Outcome::Status2xx, 20)
        .add(globex, next, Outcome::Status5xx, 180);
    history.write(&pool).await;
    assert_eq!(judge(&pool, now).await.raised.len(), 1);
    assert_eq!(
        judge(&pool, now + TimeDelta::hours(1)).await.raised.len(),
        2
    );
    (acme, globex, hour)
}

fn kinds(listed: &Value) -> Vec<(String, String)> {
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|alert| {
            (
                alert["org_id"].as_str().unwrap().to_owned(),
                alert["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_alerts_newest_first_and_filters_them() {
    let (_postgres, url) = migrated_database();
    let (acme, globex, hour) = two_organizations_alerted(&url).await;
    let (acme, globex) = (acme.to_string(), globex.to_string());

    let all = json(&url, &["alerts", "--json"]);
    // Newest first: globex's two (raised together, by event id), then acme's.
    let listed = kinds(&all);
    assert_eq!(listed.len(), 3, "{all}");
    assert_eq!(listed[2], (acme.clone(), "spike".to_owned()));
    let mut globex_kinds: Vec<_> = listed[..2].iter().map(|(_, kind)| kind.clone()).collect();
    globex_kinds.sort();
    assert_eq!(globex_kinds, ["drop", "upstream_5xx"]);
    assert!(listed[..2].iter().all(|(org, _)| *org == globex));
    let spike = &all[2];
    assert_eq!(spike["hour"], Timestamp(hour).to_string());
    assert_eq!(spike["hour_complete"], true);
    assert_eq!(spike["observed"], 30_000.0);
    assert_eq!(spike["baseline"], 4_000.0);
    assert_eq!(spike["threshold"], 20_000.0);
    assert_eq!(spike["requests"], 30_000);
    assert_eq!(spike["matching_requests"], 30_000);
    assert_eq!(spike["baseline_weeks"], 4);
    assert_eq!(
        spike["event_id"],
        keysync::anomaly::event::event_id(
            Uuid::parse_str(&acme).unwrap(),
            keysync::anomaly::kind::AnomalyKind::Spike,
            hour
        )
        .to_string()
    );
    let failing = all
        .as_array()
        .unwrap()
        .iter()
        .find(|alert| alert["kind"] == "upstream_5xx")
        .unwrap();
    assert_eq!(failing["observed"], 0.9);
    assert_eq!(failing["matching_requests"], 180);

    let only_acme = json(&url, &["alerts", "--org-id", &acme, "--json"]);
    assert_eq!(kinds(&only_acme), [(acme.clone(), "spike".to_owned())]);
    let by_kind = json(
        &url,
        &[
            "alerts",
            "--kind",
            "spike,upstream_5xx",
            "--since",
            "1h",
            "--json",
        ],
    );
    let mut listed = kinds(&by_kind);
    listed.sort();
    let mut expected = vec![
        (acme.clone(), "spike".to_owned()),
        (globex.clone(), "upstream_5xx".to_owned()),
    ];
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(
        json(&url, &["alerts", "--limit", "1", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The table: a header and a row each, shares as percentages.
    let text = ok(&url, &["alerts", "--org-id", &globex]);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0][..3], ["RAISED_AT", "ORG", "KIND"]);
    let failing = lines.iter().find(|line| line[2] == "upstream_5xx").unwrap();
    assert_eq!(failing[5..8], ["90.0%", "0.0%", "5.0%"], "{text}");
    let dropped = lines.iter().find(|line| line[2] == "drop").unwrap();
    assert_eq!(dropped[5..8], ["200", "4000", "200"], "{text}");

    // Mistakes are one line.
    for (args, expected) in [
        (
            vec!["alerts", "--kind", "surge"],
            "invalid --kind 'surge': expected spike, drop, refusals or upstream_5xx",
        ),
        (vec!["alerts", "--since", "soon"], "invalid --since 'soon'"),
        (vec!["alerts", "--limit", "0"], "invalid --limit '0'"),
        (vec!["alerts", "--org-id", "abc"], "invalid org id 'abc'"),
    ] {
        assert_one_line_error(&keysync(Some(&url), &args), expected);
    }
    let unknown = Uuid::new_v4().to_string();
    assert_one_line_error(
        &keysync(Some(&url), &["alerts", "--org-id", &unknown]),
        &format!("organization {unknown} not found"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_lists_alerts_in_pages_and_an_organizations_token_sees_its_own() {
    let (_postgres, url) = migrated_database();
    let (acme, globex, _) = two_organizations_alerted(&url).await;
    let api = Api::new(&url).await;
    let reader = admin_token(&url, &["--read-only"]);
    let acme_token = admin_token(&url, &["--org-id", &acme.to_string()]);

    let (status, all) = api.get(&reader, "/v1/alerts").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    assert_eq!(all["next_cursor"], Value::Null);
    // The CLI's JSON, item for item.
    assert_eq!(all["items"], json(&url, &["alerts", "--json"]));

    // A page at a time.
    let (_, first) = api.get(&reader, "/v1/alerts?limit=2").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = api
        .get(&reader, &format!("/v1/alerts?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["next_cursor"], Value::Null);
    assert_eq!(second["items"][0], all["items"][2]);

    let (_, filtered) = api
        .get(
            &reader,
            &format!("/v1/alerts?org_id={globex}&kind=drop&since=7d"),
        )
        .await;
    assert_eq!(
        kinds(&filtered["items"]),
        [(globex.to_string(), "drop".to_owned())]
    );

    // acme's token: acme's alerts, asked for or not; globex's as if it did not exist.
    let (status, own) = api.get(&acme_token, "/v1/alerts").await;
    assert_eq!(status, StatusCode::OK, "{own}");
    assert_eq!(
        kinds(&own["items"]),
        [(acme.to_string(), "spike".to_owned())]
    );
    let (status, other) = api
        .get(&acme_token, &format!("/v1/alerts?org_id={globex}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{other}");
    assert_eq!(other["error"], "org_not_found");

    let (status, bad) = api.get(&reader, "/v1/alerts?kind=surge").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert_eq!(bad["error"], "invalid_request");
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid kind 'surge': "),
        "{bad}"
    );
}
