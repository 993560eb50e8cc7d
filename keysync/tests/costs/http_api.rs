//! The HTTP API's plan and invoice endpoints, in process on the test database: the same
//! operations as the CLI, the same JSON, and who may use them.

use axum::http::StatusCode;
use serde_json::json;

use super::*;
use crate::common::api::{admin_token, Api};
use crate::common::{json, migrated_database, sql};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_and_invoices_over_http_are_the_clis() {
    let (postgres, url) = migrated_database();
    let pool = pool(&url).await;
    let api = Api::new(&url).await;
    let token = admin_token(&url, &[]);

    let (status, created) = api
        .send(
            &token,
            "POST",
            "/v1/plans",
            Some(json!({
                "name": "pro",
                "currency": "EUR",
                "base_fee_minor": 4900,
                "included_requests": 1_000_000,
                "tiers": [
                    {"up_to": 10_000_000, "price_per_1000_minor": 50},
                    {"up_to": null, "price_per_1000_minor": 30}
                ],
                "weights": {"search": 5, "health": 0}
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["base_fee"], "49.00");
    let pro = Uuid::parse_str(created["plan_id"].as_str().unwrap()).unwrap();
    let (status, shown) = api.get(&token, "/v1/plans/pro").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, json(&url, &["plans", "show", "pro", "--json"]));
    let starter = plan(&url, STARTER);
    let (status, listed) = api.get(&token, "/v1/plans").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed, json(&url, &["plans", "list", "--json"]));

    // Refusals: the plan's rules (422), a taken name (409), an unknown plan (404).
    for (body, code, expected) in [
        (
            json!({"name": "x", "currency": "EURO", "tiers": [{"up_to": null, "price_per_1000_minor": 1}]}),
            "invalid_value",
            "unknown currency 'EURO'",
        ),
        (
            json!({"name": "x", "currency": "EUR", "base_fee_minor": -1, "tiers": [{"up_to": null, "price_per_1000_minor": 1}]}),
            "invalid_value",
            "invalid base fee: must not be negative",
        ),
        (
            json!({"name": "x", "currency": "EUR", "tiers": [{"up_to": 10, "price_per_1000_minor": 1}, {"up_to": 5, "price_per_1000_minor": 1}, {"up_to": null, "price_per_1000_minor": 1}]}),
            "invalid_value",
            "tiers not increasing: tier 2 goes up to 5, not beyond 10",
        ),
        (
            json!({"name": "x", "currency": "EUR", "tiers": [{"up_to": null, "price_per_1000_minor": 1}], "weights": {"a b": 2}}),
            "invalid_value",
            "invalid weight endpoint 'a b'",
        ),
    ] {
        let (status, answer) = api.send(&token, "POST", "/v1/plans", Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["error"], code);
        assert!(
            answer["message"].as_str().unwrap().starts_with(expected),
            "{answer}"
        );
    }
    let (status, answer) = api
        .send(
            &token,
            "POST",
            "/v1/plans",
            Some(json!({"name": "pro", "currency": "EUR", "tiers": [{"up_to": null, "price_per_1000_minor": 1}]})),
        )
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::CONFLICT, Some("plan_exists"))
    );
    let (status, answer) = api.get(&token, "/v1/plans/gold").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("plan_not_found"))
    );

    // November on starter then pro, through the API, is the CLI's invoice.
    let acme = org(&url, "acme");
    november(&pool, acme, starter, pro).await;
    let path = format!("/v1/orgs/{acme}/invoice-preview?period=2026-11");
    let (status, invoice) = api.get(&token, &path).await;
    assert_eq!(status, StatusCode::OK, "{invoice}");
    assert_november(&invoice, acme);
    assert_eq!(invoice, cost_json(&url, acme, "2026-11"));
    let (status, answer) = api
        .get(
            &token,
            &format!("/v1/orgs/{acme}/invoice-preview?period=november"),
        )
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );

    // Putting an organization on a plan: scheduled for the next period, audited.
    let globex = org(&url, "globex");
    let plan_path = format!("/v1/orgs/{globex}/plan");
    let (status, answer) = api
        .send(&token, "PUT", &plan_path, Some(json!({"plan": "gold"})))
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("plan_not_found"))
    );
    let (status, first) = api
        .send(&token, "PUT", &plan_path, Some(json!({"plan": "starter"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["current"]["plan_name"], "starter");
    let (status, next) = api
        .send(
            &token,
            "PUT",
            &plan_path,
            Some(json!({"plan": pro.to_string()})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{next}");
    assert_eq!(next["scheduled"][0]["plan_name"], "pro");
    assert_eq!(next["changed"], true);
    let (status, read) = api.get(&token, &plan_path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        read,
        json(&url, &["orgs", "plan", &globex.to_string(), "--json"])
    );
    assert_eq!(read["current"], next["current"]);
    assert_eq!(read["scheduled"], next["scheduled"]);
    let (status, zero) = api
        .get(&token, &format!("/v1/orgs/{globex}/invoice-preview"))
        .await;
    assert_eq!(status, StatusCode::OK, "{zero}");
    assert_eq!(zero["closed"], false);
    assert_eq!(zero["segments"][0]["units"], 0, "no usage yet");
    assert_eq!(
        sql(
            &postgres,
            &url,
            &format!(
                "SELECT count(*) FROM audit_events WHERE action = 'org.plan_set' \
                 AND object_id = '{globex}' AND actor = 'admin_token'"
            )
        ),
        "2"
    );
    let (status, archived) = api
        .send(&token, "POST", "/v1/plans/starter/archive", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{archived}");
    assert_eq!(archived["changed"], true);
    let (status, answer) = api
        .send(
            &token,
            "PUT",
            &plan_path,
            Some(json!({"plan": "starter", "now": true})),
        )
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::CONFLICT, Some("plan_archived"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organizations_token_reads_its_invoice_and_no_plan() {
    let (_postgres, url) = migrated_database();
    let pool = pool(&url).await;
    let api = Api::new(&url).await;
    let (starter, pro) = (plan(&url, STARTER), plan(&url, PRO));
    let (acme, globex) = (org(&url, "acme"), org(&url, "globex"));
    november(&pool, acme, starter, pro).await;
    let own = admin_token(&url, &["--org-id", &acme.to_string()]);
    let read_only = admin_token(&url, &["--read-only"]);

    let (status, invoice) = api
        .get(
            &own,
            &format!("/v1/orgs/{acme}/invoice-preview?period=2026-11"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(invoice["total"], "460.01");
    // Which plan it is on is its own to read.
    let (status, plans) = api.get(&own, &format!("/v1/orgs/{acme}/plan")).await;
    assert_eq!(status, StatusCode::OK, "{plans}");
    assert_eq!(plans["current"]["plan_name"], "pro");
    // Another organization's is as if it did not exist.
    let (status, answer) = api
        .get(&own, &format!("/v1/orgs/{globex}/invoice-preview"))
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("org_not_found"))
    );
    // Plans are every organization's: not for a token limited to one.
    for (method, path, body) in [
        ("GET", "/v1/plans".to_owned(), None),
        ("GET", "/v1/plans/pro".to_owned(), None),
        ("POST", "/v1/plans/pro/archive".to_owned(), None),
        (
            "PUT",
            format!("/v1/orgs/{acme}/plan"),
            Some(json!({"plan": "pro"})),
        ),
    ] {
        let (status, answer) = api.send(&own, method, &path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        assert_eq!(answer["error"], "org_scoped_token");
    }
    // A read-only token reads plans and invoices, and changes nothing.
    let (status, _) = api.get(&read_only, "/v1/plans/pro").await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = api
        .send(&read_only, "POST", "/v1/plans/pro/archive", None)
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("read_only_token"))
    );
    let (status, _) = api
        .get(&read_only, &format!("/v1/orgs/{globex}/invoice-preview"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "globex has no plan");
}
