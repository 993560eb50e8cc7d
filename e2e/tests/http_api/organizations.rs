//! `/v1/orgs`: creating, reading and listing organizations and setting their limits,
//! answered like the CLI, and refused where the CLI refuses.

use keysync_e2e::keysync as ks;
use serde_json::{json, Value};

use super::{ok, refused, Service};

#[test]
fn organizations_answer_like_the_cli_and_refuse_what_it_refuses() {
    let service = Service::start();
    let api = service.api();

    let created = ok(api.post("/v1/orgs", json!({"name": "  Acme Corp "})), 201);
    assert_eq!(created["name"], "Acme Corp");
    let org = created["org_id"].as_str().unwrap().to_owned();
    let chosen = "7d2c4a3e-0000-4000-8000-000000000001";
    let created = ok(
        api.post("/v1/orgs", json!({"name": "Chosen", "org_id": chosen})),
        201,
    );
    assert_eq!(
        created,
        json!({"org_id": chosen, "name": "Chosen", "external_id": null, "metadata": null})
    );
    refused(
        api.post("/v1/orgs", json!({"name": "Again", "org_id": chosen})),
        409,
        "org_exists",
    );
    let message = refused(
        api.post("/v1/orgs", json!({"name": " "})),
        422,
        "invalid_value",
    );
    assert_eq!(message, "invalid organization name: must not be empty");
    let message = refused(
        api.post("/v1/orgs", json!({"name": "x", "nmae": "typo"})),
        400,
        "invalid_request",
    );
    assert!(message.contains("unknown field `nmae`"), "{message}");
    refused(
        api.send("POST", "/v1/orgs", &[], "{\"name\":"),
        400,
        "invalid_request",
    );
    refused(
        api.post("/v1/orgs", json!({"name": 5})),
        400,
        "invalid_request",
    );
    refused(api.post("/v1/orgs", json!({})), 400, "invalid_request");
    let huge = json!({"name": "x".repeat(4096)});
    refused(api.post("/v1/orgs", huge), 413, "payload_too_large");

    // One organization, as `orgs list --json` shows it.
    let got = ok(api.get(&format!("/v1/orgs/{org}")), 200);
    let listed = ks::cli_json(&service.database_url, &["orgs", "list"]);
    assert_eq!(got, listed[0], "the CLI's --json and the API agree");
    assert_eq!(got["rate_limit"], Value::Null);
    refused(
        api.get("/v1/orgs/7d2c4a3e-0000-4000-8000-00000000ffff"),
        404,
        "org_not_found",
    );
    refused(api.get("/v1/orgs/not-a-uuid"), 400, "invalid_request");

    // Limits: set, set again (unchanged), out of range, clear, unknown organization.
    let path = format!("/v1/orgs/{org}/rate-limit");
    let set = ok(
        api.put(&path, json!({"requests_per_minute": 100, "burst": 20})),
        200,
    );
    assert_eq!(
        set,
        json!({"org_id": org, "rate_limit": {"requests_per_minute": 100, "burst": 20}, "changed": true})
    );
    let again = ok(
        api.put(&path, json!({"requests_per_minute": 100, "burst": 20})),
        200,
    );
    assert_eq!(again["changed"], false);
    let cli = ks::cli_json(
        &service.database_url,
        &["orgs", "set-limit", &org, "--rpm", "100", "--burst", "20"],
    );
    assert_eq!(cli, again, "the CLI's --json and the API agree");
    for bad in [
        json!({"requests_per_minute": 0}),
        json!({"requests_per_minute": 2147483648u64}),
        json!({"requests_per_minute": 5, "burst": -1}),
    ] {
        refused(api.put(&path, bad), 422, "invalid_value");
    }
    refused(api.put(&path, json!({"burst": 5})), 400, "invalid_request");
    let listed = ks::cli_json(&service.database_url, &["orgs", "list"]);
    assert_eq!(listed[0]["rate_limit"]["requests_per_minute"], 100);
    let cleared = ok(api.delete(&path), 200);
    assert_eq!(cleared["rate_limit"], Value::Null);
    assert_eq!(cleared["changed"], true);
    assert_eq!(ok(api.delete(&path), 200)["changed"], false);
    refused(
        api.delete("/v1/orgs/7d2c4a3e-0000-4000-8000-00000000ffff/rate-limit"),
        404,
        "org_not_found",
    );
    refused(
        api.put(
            "/v1/orgs/7d2c4a3e-0000-4000-8000-00000000ffff/rate-limit",
            json!({"requests_per_minute": 1}),
        ),
        404,
        "org_not_found",
    );

    // Pages: walked with the cursor, every organization once, oldest first.
    for n in 0..5 {
        api.create_org(&format!("org {n}"));
    }
    let everyone = ks::cli_json(&service.database_url, &["orgs", "list"]);
    assert_eq!(everyone.as_array().unwrap().len(), 7);
    let mut walked = Vec::new();
    let mut path = "/v1/orgs?limit=3".to_owned();
    loop {
        let page = ok(api.get(&path), 200);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        walked.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/orgs?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(Value::Array(walked), everyone);
    let all = ok(api.get("/v1/orgs?limit=5000"), 200);
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        7,
        "capped, not refused"
    );
    assert_eq!(all["next_cursor"], Value::Null);
    refused(api.get("/v1/orgs?limit=0"), 400, "invalid_request");
    refused(api.get("/v1/orgs?cursor=nonsense"), 400, "invalid_request");
    refused(api.get("/v1/orgs?page=2"), 400, "invalid_request");

    // Unknown paths and methods, in the same shape.
    refused(api.get("/v1/nothing-here"), 404, "not_found");
    refused(api.delete("/v1/orgs"), 405, "method_not_allowed");
    // The API has a listener of its own: probes and metrics stay on the admin port,
    // which serves no API.
    assert_eq!(api.get("/healthz").status, 404, "the API listener");
    assert_eq!(api.get("/metrics").status, 404, "the API listener");
    let admin_port = super::Api {
        addr: service.keysync.http,
        ..api.clone()
    };
    assert_eq!(admin_port.get("/healthz").status, 200);
    assert_eq!(
        admin_port.get("/v1/orgs").status,
        404,
        "no API on the admin port"
    );
}

/// `GET /v1/orgs?search=` (the console's search): names containing the text in any
/// case, or the one id, over every page; `%` and `_` are plain characters; a token
/// limited to one organization finds that one or nothing.
#[test]
fn organizations_are_searched_by_name_or_id_a_page_at_a_time() {
    let service = Service::start();
    let api = service.api();
    for name in ["Acme Corp", "acme labs", "Globex", "ACME_x", "50% Off"] {
        api.create_org(name);
    }
    let names = |query: &str| -> Vec<String> {
        ok(api.get(&format!("/v1/orgs?{query}")), 200)["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|org| org["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("search=acme"), ["Acme Corp", "acme labs", "ACME_x"]);
    assert_eq!(names("search=%25"), ["50% Off"]);
    assert_eq!(names("search=e_x"), ["ACME_x"]);
    assert_eq!(names("search=nobody").len(), 0);
    assert_eq!(names("search=").len(), 5);
    // Paged like the listing.
    let first = ok(api.get("/v1/orgs?search=acme&limit=2"), 200);
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"].as_str().unwrap();
    assert_eq!(
        names(&format!("search=acme&limit=2&cursor={cursor}")),
        ["ACME_x"]
    );
    let globex = ok(api.get("/v1/orgs?search=globex"), 200)["items"][0]["org_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        names(&format!("search={}", globex.to_uppercase())),
        ["Globex"]
    );

    let (own, _) = super::admin_token_of(&service.database_url, "globex", true, Some(&globex));
    let tenant = super::Api::new(&service.keysync, &own);
    let found = |query: &str| {
        ok(tenant.get(&format!("/v1/orgs?{query}")), 200)["items"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(found("search=glob"), 1);
    assert_eq!(found("search=acme"), 0);
}
