//! `GET /v1/gateways` and `POST /v1/keys/{key_id}/revoke?wait=`: the fleet and a
//! revocation's receipt over the API, against a real Envoy; a bad or unbounded wait is
//! refused before anything is revoked.

use keysync_e2e::poll::{self, DEADLINE};
use keysync_e2e::stack::Stack;
use serde_json::{json, Value};

use super::{admin_token, admin_token_of, ok, refused, Api};

#[test]
fn the_fleet_and_a_receipt_over_the_api() {
    let stack = Stack::start(|_| {});
    let (token, _) = admin_token(&stack.database_url, "fleet", false);
    let api = Api::new(&stack.keysync, &token);
    let org = api.create_org("fleet");
    let key = api.create_key(&org);
    let (secret, key_id) = (
        key["key"].as_str().unwrap(),
        key["key_id"].as_str().unwrap(),
    );
    stack.gateway.wait_for_status("/", secret, 200, DEADLINE);

    let fleet = poll::eventually(
        "the gateway in the fleet",
        DEADLINE,
        || ok(api.get("/v1/gateways"), 200),
        |fleet| fleet["gateways"].as_array().is_some_and(|g| g.len() == 1),
    );
    let gateway = &fleet["gateways"][0];
    let fields: Vec<&str> = gateway
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "host",
            "instance_id",
            "lag",
            "last_seen",
            "mode",
            "revision",
            "stale",
            "version"
        ],
        "{gateway}"
    );
    assert!(
        ["wasm", "native"].contains(&gateway["mode"].as_str().unwrap()),
        "{gateway}"
    );
    assert_eq!(gateway["stale"], false);
    assert!(fleet["revision"].as_u64().unwrap() >= gateway["revision"].as_u64().unwrap());

    // A wait that does not read, or longer than the bound: 400, and the key stays.
    for wait in ["soon", "5m"] {
        refused(
            api.post(&format!("/v1/keys/{key_id}/revoke?wait={wait}"), json!({})),
            400,
            "invalid_request",
        );
    }
    assert_eq!(stack.gateway.get_with_key("/", secret).status, 200);

    let revoked = ok(
        api.post(&format!("/v1/keys/{key_id}/revoke?wait=10s"), json!({})),
        200,
    );
    assert_eq!(revoked["revocation"], "revoked");
    let receipt = &revoked["receipt"];
    assert_eq!(
        (&receipt["confirmed"], &receipt["gateways"]),
        (&1.into(), &1.into()),
        "{revoked}"
    );
    assert_eq!(receipt["missing"], Value::Array(vec![]));
    assert!(
        receipt["elapsed_ms"].is_u64() && receipt["revision"].is_u64(),
        "{revoked}"
    );
    assert_eq!(stack.gateway.get_with_key("/", secret).status, 403);

    // Without a wait, the usual answer and no receipt.
    let again = ok(
        api.post(&format!("/v1/keys/{key_id}/revoke"), json!({})),
        200,
    );
    assert_eq!(again["revocation"], "already_revoked");
    assert!(again.get("receipt").is_none(), "{again}");

    // The fleet serves every organization: not a token limited to one.
    let (scoped, _) = admin_token_of(&stack.database_url, "one org", false, Some(&org));
    refused(
        Api::new(&stack.keysync, &scoped).get("/v1/gateways"),
        403,
        "org_scoped_token",
    );
}
