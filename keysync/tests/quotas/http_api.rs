//! The HTTP API's quota endpoints, in process: they set and clear quotas like the CLI.

use axum::http::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{audited, count, period, quota_json, quotas, revision, served};
use crate::common::api::Api;
use crate::common::*;

fn token(url: &str, read_only: bool) -> (String, String) {
    let mut args = vec!["admin-tokens", "create", "--name", "t", "--json"];
    if read_only {
        args.push("--read-only");
    }
    let created = json(url, &args);
    (
        created["token"].as_str().unwrap().to_owned(),
        created["token_id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn the_http_api_sets_and_clears_quotas_like_the_cli() {
    let (postgres, url) = migrated_database();
    let org = create_org(&url, "Acme");
    let key = create_key(&url, &org, "ci", &[]).key_id;
    served(&postgres, &url, &[(period(1).start, &org, &key, 3, 8)]);
    let api = Api::new(&url).await;
    let (admin, admin_id) = token(&url, false);
    let (reader, _) = token(&url, true);
    let org_path = format!("/v1/orgs/{org}/quota");
    let key_path = format!("/v1/keys/{key}/quota");

    let (status, set) = api
        .send(
            &admin,
            "PUT",
            &org_path,
            Some(json!({"monthly": 1000, "reset_day": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(
        set,
        json!({"org_id": org, "quota": quota_json(1000, 8, 1), "changed": true})
    );
    let (status, set) = api
        .send(&admin, "PUT", &key_path, Some(json!({"monthly": 50})))
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(
        set,
        json!({"key_id": key, "org_id": org, "quota": quota_json(50, 8, 1), "changed": true})
    );
    let (_, got) = api
        .send(&reader, "GET", &format!("/v1/orgs/{org}"), None)
        .await;
    assert_eq!(got["quota"], quota_json(1000, 8, 1));
    let (_, listed) = api
        .send(&reader, "GET", &format!("/v1/orgs/{org}/keys"), None)
        .await;
    assert_eq!(listed["items"][0]["quota"], quota_json(50, 8, 1));
    for action in ["org.quota_set", "key.quota_set"] {
        let records = audited(&url, action);
        assert_eq!(records.len(), 1, "{action}");
        assert_eq!(records[0]["actor"], "admin_token");
        assert_eq!(records[0]["actor_token_id"], admin_id.as_str());
    }
    assert_eq!(revision(&postgres, &url), 2);

    // Refused: one error shape, nothing written.
    let before = (
        quotas(&postgres, &url),
        count(&postgres, &url, "audit_events"),
        revision(&postgres, &url),
    );
    let unknown = Uuid::new_v4();
    for (token, method, path, body, status, code) in [
        (
            &admin,
            "PUT",
            org_path.clone(),
            Some(json!({"monthly": 0})),
            422,
            "invalid_value",
        ),
        (
            &admin,
            "PUT",
            org_path.clone(),
            Some(json!({"monthly": 1_000_000_000_000_001_i64})),
            422,
            "invalid_value",
        ),
        (
            &admin,
            "PUT",
            org_path.clone(),
            Some(json!({"monthly": 5, "reset_day": 29})),
            422,
            "invalid_value",
        ),
        (
            &admin,
            "PUT",
            org_path.clone(),
            Some(json!({"monthly": "5"})),
            400,
            "invalid_request",
        ),
        (
            &admin,
            "PUT",
            org_path.clone(),
            Some(json!({"reset_day": 5})),
            400,
            "invalid_request",
        ),
        (
            &admin,
            "PUT",
            key_path.clone(),
            Some(json!({"monthly": -1})),
            422,
            "invalid_value",
        ),
        (
            &admin,
            "PUT",
            key_path.clone(),
            Some(json!({"monthly": 5, "reset_day": 3})),
            400,
            "invalid_request",
        ),
        (
            &admin,
            "PUT",
            format!("/v1/orgs/{unknown}/quota"),
            Some(json!({"monthly": 5})),
            404,
            "org_not_found",
        ),
        (
            &admin,
            "DELETE",
            format!("/v1/orgs/{unknown}/quota"),
            None,
            404,
            "org_not_found",
        ),
        (
            &admin,
            "PUT",
            format!("/v1/keys/{unknown}/quota"),
            Some(json!({"monthly": 5})),
            404,
            "key_not_found",
        ),
        (
            &admin,
            "DELETE",
            format!("/v1/keys/{unknown}/quota"),
            None,
            404,
            "key_not_found",
        ),
        (
            &admin,
            "PUT",
            "/v1/keys/nope/quota".to_owned(),
            Some(json!({"monthly": 5})),
            400,
            "invalid_request",
        ),
        (
            &reader,
            "PUT",
            org_path.clone(),
            Some(json!({"monthly": 5})),
            403,
            "read_only_token",
        ),
        (
            &reader,
            "DELETE",
            key_path.clone(),
            None,
            403,
            "read_only_token",
        ),
    ] {
        let (answered, error) = api.send(token, method, &path, body).await;
        assert_eq!(answered.as_u16(), status, "{method} {path}: {error}");
        assert_eq!(error["error"], code, "{method} {path}: {error}");
        assert_eq!(error.as_object().unwrap().len(), 2, "{error}");
    }
    assert_eq!(
        (
            quotas(&postgres, &url),
            count(&postgres, &url, "audit_events"),
            revision(&postgres, &url),
        ),
        before
    );

    // DELETE clears; a second DELETE changes nothing.
    for path in [&key_path, &org_path] {
        let (status, cleared) = api.send(&admin, "DELETE", path, None).await;
        assert_eq!(status, StatusCode::OK, "{cleared}");
        assert_eq!(cleared["quota"], Value::Null);
        assert_eq!(cleared["changed"], true);
        let (_, again) = api.send(&admin, "DELETE", path, None).await;
        assert_eq!(again["changed"], false);
    }
    assert_eq!(quotas(&postgres, &url), "");
    assert_eq!(revision(&postgres, &url), 4);
}
