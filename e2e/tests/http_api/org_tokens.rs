//! Admin tokens limited to one organization: another organization's routes answer as if
//! it did not exist, and what has no organization in its path is limited too.

use keysync_e2e::http::Response;
use keysync_e2e::keysync as ks;
use serde_json::{json, Value};

use super::{admin_token_of, ok, refused, Api, Service};

/// What an answer says, with `id` written as `ID`: a foreign id's answer must read like
/// an unknown id's.
fn answer_about(response: Response, id: &str) -> (u16, String, String) {
    let status = response.status;
    let body = response.json();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
        body["message"]
            .as_str()
            .unwrap_or_default()
            .replace(id, "ID"),
    )
}

/// `GET {route}?org_id=` of another organization answers exactly as an unknown id's:
/// 404 `org_not_found`.
fn another_org_is_unknown_to(dashboard: &Api, route: &str, theirs: &str, unknown: &str) {
    let foreign = dashboard.get(&format!("{route}?org_id={theirs}"));
    let absent = dashboard.get(&format!("{route}?org_id={unknown}"));
    assert_eq!(answer_about(foreign, theirs), answer_about(absent, unknown));
    refused(
        dashboard.get(&format!("{route}?org_id={theirs}")),
        404,
        "org_not_found",
    );
}

#[test]
fn a_token_limited_to_one_organization_sees_and_changes_only_that_one() {
    let service = Service::start();
    let url = &service.database_url;
    let admin = service.api();
    let ours = admin.create_org("ours");
    let theirs = admin.create_org("theirs");
    let our_key = admin.create_key(&ours)["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let their_key = admin.create_key(&theirs)["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        admin.put(
            &format!("/v1/orgs/{theirs}/rate-limit"),
            json!({"requests_per_minute": 600}),
        ),
        200,
    );
    let (token, token_id) = admin_token_of(url, "customer dashboard", false, Some(&ours));
    let dashboard = Api::new(&service.keysync, &token);
    let unknown = "7d2c4a3e-0000-4000-8000-00000000ffff";
    let theirs_before = ok(admin.get(&format!("/v1/orgs/{theirs}")), 200);
    let their_key_before = ok(admin.get(&format!("/v1/keys/{their_key}")), 200);

    // Every documented route with an organization or a key in its path: another
    // organization's answers exactly as one that does not exist (404), whatever the body.
    let document = Api::anonymous(&service.keysync)
        .get("/v1/openapi.json")
        .json();
    let mut without_ids = Vec::new();
    for (path, methods) in document["paths"].as_object().unwrap() {
        for method in methods.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let (foreign, missing, id) = if path.contains("{org_id}") {
                (
                    path.replace("{org_id}", &theirs),
                    path.replace("{org_id}", unknown),
                    &theirs,
                )
            } else if path.contains("{key_id}") {
                (
                    path.replace("{key_id}", &their_key),
                    path.replace("{key_id}", unknown),
                    &their_key,
                )
            } else {
                without_ids.push(format!("{method} {path}"));
                continue;
            };
            for body in ["{}", "{\"requests_per_minute\": 1}", "{\"monthly\": 5}"] {
                let refused = answer_about(dashboard.send(&method, &foreign, &[], body), id);
                let absent = answer_about(dashboard.send(&method, &missing, &[], body), unknown);
                assert_eq!(refused, absent, "{method} {foreign} {body}");
                assert_eq!(refused.0, 404, "{method} {foreign}: {refused:?}");
            }
        }
    }
    without_ids.sort();
    assert_eq!(
        without_ids,
        [
            // Webhooks hear of every organization's keys: 403 (http_api/webhooks.rs).
            "DELETE /v1/webhooks/{webhook_id}",
            "GET /v1/alerts",
            "GET /v1/audit",
            // The fleet: refused to an organization's token (http_api/gateways.rs).
            "GET /v1/gateways",
            "GET /v1/openapi.json",
            "GET /v1/orgs",
            "GET /v1/plans",
            "GET /v1/plans/{plan}",
            // The fleet's usage is refused to an organization's token, whoami answers
            // any token (whoami_names_each_tokens_rights_and_...).
            "GET /v1/usage",
            "GET /v1/webhooks",
            "GET /v1/webhooks/deliveries",
            "GET /v1/whoami",
            "POST /v1/keys",
            "POST /v1/orgs",
            "POST /v1/plans",
            "POST /v1/plans/{plan}/archive",
            "POST /v1/webhooks",
            "POST /v1/webhooks/{webhook_id}/test",
        ],
        "a new route without an id in its path: decide what an organization's token may do"
    );
    // Price plans are every organization's: neither read nor chosen by one's token (its
    // own invoice preview is its own, below).
    for (method, path, body) in [
        ("GET", "/v1/plans".to_owned(), "{}"),
        ("GET", "/v1/plans/pro".to_owned(), "{}"),
        ("POST", "/v1/plans".to_owned(), "{}"),
        ("POST", "/v1/plans/pro/archive".to_owned(), "{}"),
        (
            "PUT",
            format!("/v1/orgs/{ours}/plan"),
            "{\"plan\": \"pro\"}",
        ),
    ] {
        let (status, code, _) = answer_about(dashboard.send(method, &path, &[], body), &ours);
        assert_eq!(
            (status, code.as_str()),
            (403, "org_scoped_token"),
            "{method} {path}"
        );
    }

    // Those six: the list holds its organization alone, a key is made only in it,
    // organizations are not made at all, the audit trail and the anomaly alerts are its
    // organization's.
    let listed = ok(dashboard.get("/v1/orgs"), 200);
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["items"][0]["org_id"], ours.as_str());
    assert_eq!(listed["next_cursor"], Value::Null);
    let message = refused(
        dashboard.post("/v1/orgs", json!({"name": "another"})),
        403,
        "org_scoped_token",
    );
    assert!(!message.contains(&theirs), "{message}");
    assert_eq!(
        answer_about(
            dashboard.post("/v1/keys", json!({"org_id": theirs, "name": "sneaky"})),
            &theirs
        ),
        answer_about(
            dashboard.post("/v1/keys", json!({"org_id": unknown, "name": "sneaky"})),
            unknown
        ),
    );
    refused(
        dashboard.post("/v1/keys", json!({"org_id": theirs, "name": "sneaky"})),
        404,
        "org_not_found",
    );
    let made = ok(
        dashboard.post_once(
            "/v1/keys",
            "dashboard-key-000000001",
            json!({"org_id": ours, "name": "from the dashboard"}),
        ),
        201,
    );
    assert_eq!(made["org_id"], ours.as_str());
    another_org_is_unknown_to(&dashboard, "/v1/audit", &theirs, unknown);
    for (org, event) in [(&ours, 1), (&theirs, 2)] {
        service.sql(&format!(
            "INSERT INTO anomaly_alerts (org_id, kind, hour, hour_complete, observed, \
             baseline, threshold, requests, matching_requests, baseline_weeks, event_id) \
             VALUES ('{org}', 'spike', date_trunc('hour', now(), 'UTC'), true, 900, 100, \
             400, 900, 900, 4, '00000000-0000-4000-8000-00000000000{event}')"
        ));
    }
    let alerts = ok(dashboard.get("/v1/alerts"), 200);
    let alerted: Vec<&Value> = alerts["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|alert| &alert["org_id"])
        .collect();
    assert_eq!(alerted, [&json!(ours)], "{alerts:#}");
    another_org_is_unknown_to(&dashboard, "/v1/alerts", &theirs, unknown);
    assert_eq!(
        ok(admin.get("/v1/alerts"), 200)["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let own = ok(dashboard.get(&format!("/v1/alerts?org_id={ours}")), 200);
    assert_eq!(own["items"].as_array().unwrap().len(), 1, "{own:#}");

    // Its own organization: everything works as for any token.
    ok(dashboard.get(&format!("/v1/orgs/{ours}")), 200);
    ok(dashboard.get(&format!("/v1/orgs/{ours}/keys")), 200);
    ok(dashboard.get(&format!("/v1/orgs/{ours}/usage")), 200);
    ok(dashboard.get(&format!("/v1/orgs/{ours}/plan")), 200);
    // Reached: it has no price plan yet (its invoice, not another's 404).
    refused(
        dashboard.get(&format!("/v1/orgs/{ours}/invoice-preview")),
        404,
        "no_plan",
    );
    ok(
        dashboard.put(
            &format!("/v1/orgs/{ours}/rate-limit"),
            json!({"requests_per_minute": 60}),
        ),
        200,
    );
    ok(
        dashboard.put(&format!("/v1/orgs/{ours}/quota"), json!({"monthly": 1000})),
        200,
    );
    ok(dashboard.get(&format!("/v1/keys/{our_key}")), 200);
    for (path, body) in [
        ("rate-limit", json!({"requests_per_minute": 6})),
        ("quota", json!({"monthly": 10})),
        ("scopes", json!({"scopes": ["orders:read"]})),
        ("allowlist", json!({"allowed_networks": ["10.0.0.0/8"]})),
    ] {
        ok(
            dashboard.put(&format!("/v1/keys/{our_key}/{path}"), body),
            200,
        );
        ok(dashboard.delete(&format!("/v1/keys/{our_key}/{path}")), 200);
    }
    ok(
        dashboard.post(
            &format!("/v1/keys/{our_key}/rotate"),
            json!({"grace": "0s"}),
        ),
        201,
    );
    let usage = dashboard.get(&format!("/v1/orgs/{ours}/usage?key_id={their_key}"));
    assert_eq!(ok(usage, 200)["total_requests"], 0);
    let trail = ok(dashboard.get("/v1/audit?limit=1000"), 200);
    let items = trail["items"].as_array().unwrap();
    assert!(items.len() >= 10, "{trail:#}");
    for item in items {
        assert_eq!(item["org_id"], ours.as_str(), "{item:#}");
    }
    assert!(
        items
            .iter()
            .any(|item| item["action"] == "admin_token.created"
                && item["object_id"] == token_id.as_str()),
        "its own creation is in its organization's trail: {trail:#}"
    );

    // The other organization is untouched.
    assert_eq!(
        ok(admin.get(&format!("/v1/orgs/{theirs}")), 200),
        theirs_before
    );
    assert_eq!(
        ok(admin.get(&format!("/v1/keys/{their_key}")), 200),
        their_key_before
    );
    assert_eq!(
        service.sql(&format!(
            "SELECT count(*) FROM audit_events WHERE actor_token_id = '{token_id}' \
             AND org_id IS DISTINCT FROM '{ours}'"
        )),
        "0"
    );

    // Read-only and limited at once: reads its organization, changes nothing.
    let (reader, _) = admin_token_of(url, "customer reports", true, Some(&ours));
    let reader = Api::new(&service.keysync, &reader);
    ok(reader.get(&format!("/v1/orgs/{ours}/keys")), 200);
    refused(
        reader.get(&format!("/v1/orgs/{theirs}/keys")),
        404,
        "org_not_found",
    );
    refused(
        reader.put(
            &format!("/v1/orgs/{ours}/rate-limit"),
            json!({"requests_per_minute": 1}),
        ),
        403,
        "read_only_token",
    );

    // The CLI: listed with its organization; an unknown organization is refused.
    let tokens = ks::cli_json(url, &["admin-tokens", "list"]);
    let ours_listed: Vec<&Value> = tokens
        .as_array()
        .unwrap()
        .iter()
        .filter(|token| token["org_id"] == ours.as_str())
        .collect();
    assert_eq!(ours_listed.len(), 2, "{tokens:#}");
    assert_eq!(tokens[0]["org_id"], Value::Null, "the unlimited token");
    let text = ks::cli(url, &["admin-tokens", "list"]);
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.lines().next().unwrap().contains("ORG"), "{text}");
    assert!(
        text.lines()
            .any(|line| line.contains(&token_id) && line.contains(&ours)),
        "{text}"
    );
    let refused_cli = ks::cli(
        url,
        &["admin-tokens", "create", "--name", "x", "--org-id", unknown],
    );
    assert_eq!(refused_cli.status.code(), Some(1), "{refused_cli:?}");
    let stderr = String::from_utf8_lossy(&refused_cli.stderr);
    assert_eq!(
        stderr,
        format!("error: organization {unknown} not found\n"),
        "{stderr}"
    );
}

/// `GET /v1/whoami` tells each token what it may do (the console hides what would be
/// refused), and the fleet-wide usage is refused to a token of one organization.
#[test]
fn whoami_names_each_tokens_rights_and_the_fleet_usage_is_not_for_one_organization() {
    let service = Service::start();
    let url = &service.database_url;
    let (admin, admin_id) = admin_token_of(url, "admin", false, None);
    let org = Api::new(&service.keysync, &admin).create_org("tenant");
    let (viewer, viewer_id) = admin_token_of(url, "viewer", true, None);
    let (tenant, tenant_id) = admin_token_of(url, "tenant", true, Some(&org));
    for (token, id, read_only, org_id) in [
        (&admin, &admin_id, false, Value::Null),
        (&viewer, &viewer_id, true, Value::Null),
        (&tenant, &tenant_id, true, json!(org)),
    ] {
        let me = ok(Api::new(&service.keysync, token).get("/v1/whoami"), 200);
        assert_eq!(
            me,
            json!({"token_id": id, "read_only": read_only, "org_id": org_id})
        );
    }
    let fleet = ok(
        Api::new(&service.keysync, &viewer).get("/v1/usage?since=7d"),
        200,
    );
    assert_eq!(fleet["total_requests"], 0, "{fleet}");
    let message = refused(
        Api::new(&service.keysync, &tenant).get("/v1/usage"),
        403,
        "org_scoped_token",
    );
    assert!(message.contains("/v1/orgs/{org_id}/usage"), "{message}");
    refused(
        Api::anonymous(&service.keysync).get("/v1/whoami"),
        401,
        "missing_token",
    );
    refused(
        Api::new(&service.keysync, &viewer).get("/v1/usage?since=soon"),
        400,
        "invalid_request",
    );
}
