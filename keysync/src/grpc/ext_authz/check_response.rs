//! Envoy's answer for a [`Verdict`]: the `CheckResponse` that forwards or refuses the
//! request, built from the contract's replies and identity headers.
//!
//! - allowed: status OK and an `OkHttpResponse` that sets `x-org-id` and `x-api-key-id`
//!   (overwriting anything the client sent) and removes the credential headers; a key in
//!   a query parameter or a cookie is taken off by overwriting `:path` or `Cookie` with
//!   the rewritten value (Envoy's own `query_parameters_to_remove` re-encodes the whole
//!   query string from a map: order and repeated names would not survive). It also sets the two descriptor headers Envoy's rate-limit filter
//!   reads in global mode (`x-keysync-rl-subject`, `x-keysync-rl-limit`), or removes
//!   client-sent ones when the key has no limit; `envoy/ext-authz.yaml` strips them
//!   before the backend.
//! - missing or invalid key, or a valid key refused by its policy (a scope the route
//!   requires, an address outside its allowlist): `UNAUTHENTICATED` or
//!   `PERMISSION_DENIED` and a `DeniedHttpResponse` with the contract's status, headers
//!   and JSON body (403 `insufficient_scope` with `WWW-Authenticate: Bearer
//!   error="insufficient_scope"`, 403 `ip_not_allowed`), exactly as the filter answers.
//! - cannot tell: an `UNAVAILABLE` gRPC error, so that Envoy answers with its
//!   `status_on_error` (503, given the contract's JSON body by the configuration).
//! - a readiness check once the key snapshot is loaded: status OK, nothing changed.
//!
//! Every answer also says where the key set that decided it stood
//! ([`with_provenance`]): Envoy keeps it as the ext_authz filter's dynamic metadata
//! (`keysync_epoch`, `keysync_confirmed_age_ms`), for access logs
//! (`%DYNAMIC_METADATA(envoy.filters.http.ext_authz:keysync_confirmed_age_ms)%`).

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{value::Kind, Struct, Value};
use envoy_types::pb::google::rpc;
use keysync_contract::credential_sources::{COOKIE, PATH};
use keysync_contract::id::Id;
use keysync_contract::reply::{self, Denial};
use keysync_contract::{KEY_ID_HEADER, ORG_ID_HEADER};
use keysync_proto::v1::Provenance;
use tonic::Status;

use super::verdict::{CredentialRemoval, Verdict};
use crate::key_set::key_entry::KeyEntry;

/// The status for unknown, revoked, expired and malformed keys (the filter's default
/// `invalid_key_status`).
pub const INVALID_KEY_STATUS: u32 = 403;

pub use keysync_contract::{RATE_LIMIT_LIMIT_HEADER, RATE_LIMIT_SUBJECT_HEADER};

/// What Envoy is told; `Err` only when keysync cannot tell.
pub fn answer(verdict: &Verdict) -> Result<CheckResponse, Status> {
    match verdict {
        Verdict::Allow { entry, removal } => Ok(allowed(entry, removal)),
        Verdict::Ready => Ok(CheckResponse {
            status: Some(rpc_status(rpc::Code::Ok, "")),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse::default())),
            dynamic_metadata: None,
        }),
        Verdict::Deny(Denial::Unavailable) => Err(Status::unavailable(
            "keysync cannot decide: its key set is not loaded yet, or not confirmed \
                 against PostgreSQL within KEYSYNC_MAX_STALENESS",
        )),
        Verdict::Deny(denial) => Ok(denied(*denial)),
    }
}

/// `response` with `provenance` as its dynamic metadata: the epoch as 16 hex digits (a
/// JSON number cannot hold 64 bits) and the confirmation's age in milliseconds.
pub fn with_provenance(mut response: CheckResponse, provenance: Provenance) -> CheckResponse {
    let value = |kind| Value { kind: Some(kind) };
    response.dynamic_metadata = Some(Struct {
        fields: [
            (
                "keysync_epoch".to_owned(),
                value(Kind::StringValue(format!("{:016x}", provenance.epoch))),
            ),
            (
                "keysync_confirmed_age_ms".to_owned(),
                // Exact up to 2^53 ms (285,000 years).
                value(Kind::NumberValue(provenance.confirmed_age_ms as f64)),
            ),
        ]
        .into_iter()
        .collect(),
    });
    response
}

fn allowed(entry: &KeyEntry, removal: &CredentialRemoval) -> CheckResponse {
    let mut headers = vec![
        overwrite(ORG_ID_HEADER, entry.org_id.hyphenated().to_string()),
        overwrite(KEY_ID_HEADER, entry.key_id.hyphenated().to_string()),
    ];
    // Whatever carried the key, a second credential beside it is not forwarded either.
    let mut headers_to_remove = removal.headers.clone();
    if let Some(path) = &removal.path {
        headers.push(overwrite(PATH, path.clone()));
    }
    match &removal.cookie {
        Some(Some(cookies)) => headers.push(overwrite(COOKIE, cookies.clone())),
        Some(None) => headers_to_remove.push(COOKIE.to_owned()),
        None => {}
    }
    match entry.rate_limit {
        Some(key_limit) => {
            let subject =
                key_limit.subject(Id(entry.key_id.into_bytes()), Id(entry.org_id.into_bytes()));
            headers.push(overwrite(RATE_LIMIT_SUBJECT_HEADER, subject.to_string()));
            headers.push(overwrite(
                RATE_LIMIT_LIMIT_HEADER,
                key_limit.limit.to_string(),
            ));
        }
        // A client must not choose whose budget its request is counted on.
        None => headers_to_remove
            .extend([RATE_LIMIT_SUBJECT_HEADER, RATE_LIMIT_LIMIT_HEADER].map(str::to_owned)),
    }
    CheckResponse {
        status: Some(rpc_status(rpc::Code::Ok, "")),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers,
            headers_to_remove,
            ..OkHttpResponse::default()
        })),
        dynamic_metadata: None,
    }
}

fn denied(denial: Denial) -> CheckResponse {
    let reply = reply::reply(denial, INVALID_KEY_STATUS);
    let code = match denial {
        Denial::MissingKey => rpc::Code::Unauthenticated,
        _ => rpc::Code::PermissionDenied,
    };
    CheckResponse {
        status: Some(rpc_status(code, "")),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                // Statuses of the contract (401, 403) fit easily.
                code: i32::try_from(reply.status).unwrap_or(403),
            }),
            headers: reply
                .headers
                .iter()
                .map(|(name, value)| overwrite(name, (*value).to_owned()))
                .collect(),
            body: String::from_utf8_lossy(reply.body).into_owned(),
        })),
        dynamic_metadata: None,
    }
}

/// A header set to `value`, replacing every value already there.
fn overwrite(name: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_owned(),
            value,
            raw_value: Vec::new(),
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
        ..HeaderValueOption::default()
    }
}

fn rpc_status(code: rpc::Code, message: &str) -> rpc::Status {
    rpc::Status {
        code: code.into(),
        message: message.to_owned(),
        details: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use keysync_contract::limit::{KeyLimit, Limit};
    use tonic::Code;
    use uuid::Uuid;

    use keysync_contract::key_hash::KeyHash;

    use super::*;
    use crate::global_limit::descriptor::{self, LIMIT_ENTRY, SUBJECT_ENTRY};

    fn entry(rate_limit: Option<KeyLimit>) -> KeyEntry {
        KeyEntry {
            key_hash: KeyHash([1; 32]),
            key_id: Uuid::from_u128(0x11),
            org_id: Uuid::from_u128(0x22),
            expires_at: 0,
            rate_limit,
            policy: None,
        }
    }

    /// (name, value, append action) of each header.
    fn headers(options: &[HeaderValueOption]) -> Vec<(String, String, i32)> {
        options
            .iter()
            .map(|option| {
                let header = option.header.clone().unwrap();
                (header.key, header.value, option.append_action)
            })
            .collect()
    }

    fn ok_response(response: &CheckResponse) -> &OkHttpResponse {
        match &response.http_response {
            Some(HttpResponse::OkResponse(ok)) => ok,
            other => panic!("not an OK response: {other:?}"),
        }
    }

    fn denied_response(response: &CheckResponse) -> &DeniedHttpResponse {
        match &response.http_response {
            Some(HttpResponse::DeniedResponse(denied)) => denied,
            other => panic!("not a denied response: {other:?}"),
        }
    }

    const OVERWRITE: i32 = HeaderAppendAction::OverwriteIfExistsOrAdd as i32;

    #[test]
    fn allowed_sets_identity_and_removes_the_credential_it_used() {
        let verdict = Verdict::Allow {
            entry: entry(None),
            removal: CredentialRemoval::headers(["x-api-key"]),
        };
        let response = answer(&verdict).unwrap();
        assert_eq!(response.status.as_ref().unwrap().code, rpc::Code::Ok as i32);
        let ok = ok_response(&response);
        assert_eq!(
            headers(&ok.headers),
            vec![
                (
                    "x-org-id".to_owned(),
                    "00000000-0000-0000-0000-000000000022".to_owned(),
                    OVERWRITE
                ),
                (
                    "x-api-key-id".to_owned(),
                    "00000000-0000-0000-0000-000000000011".to_owned(),
                    OVERWRITE
                ),
            ]
        );
        assert_eq!(
            ok.headers_to_remove,
            vec!["x-api-key", "x-keysync-rl-subject", "x-keysync-rl-limit"]
        );
    }

    #[test]
    fn allowed_names_the_budget_for_global_rate_limiting() {
        let per_org = KeyLimit {
            limit: Limit {
                requests_per_minute: 100,
                burst: 20,
            },
            per_key: false,
        };
        let response = answer(&Verdict::Allow {
            entry: entry(Some(per_org)),
            removal: CredentialRemoval::headers(["authorization", "x-api-key"]),
        })
        .unwrap();
        let ok = ok_response(&response);
        assert_eq!(ok.headers_to_remove, vec!["authorization", "x-api-key"]);
        let set = headers(&ok.headers);
        assert_eq!(
            set[2..],
            [
                (
                    "x-keysync-rl-subject".to_owned(),
                    "org:00000000-0000-0000-0000-000000000022".to_owned(),
                    OVERWRITE
                ),
                (
                    "x-keysync-rl-limit".to_owned(),
                    "100+20".to_owned(),
                    OVERWRITE
                ),
            ]
        );

        let per_key = KeyLimit {
            per_key: true,
            ..per_org
        };
        let response = answer(&Verdict::Allow {
            entry: entry(Some(per_key)),
            removal: CredentialRemoval::headers(["authorization"]),
        })
        .unwrap();
        let subject = &headers(&ok_response(&response).headers)[2];
        assert_eq!(subject.1, "key:00000000-0000-0000-0000-000000000011");
    }

    #[test]
    fn the_descriptor_headers_parse_as_the_rate_limit_service_reads_them() {
        let limit = KeyLimit {
            limit: Limit {
                requests_per_minute: 7,
                burst: 0,
            },
            per_key: true,
        };
        let response = answer(&Verdict::Allow {
            entry: entry(Some(limit)),
            removal: CredentialRemoval::headers(["authorization"]),
        })
        .unwrap();
        let set = headers(&ok_response(&response).headers);
        let descriptor = descriptor::parse([
            (SUBJECT_ENTRY, set[2].1.as_str()),
            (LIMIT_ENTRY, set[3].1.as_str()),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            descriptor.subject.id(),
            Id(Uuid::from_u128(0x11).into_bytes())
        );
        assert_eq!(descriptor.limit.budget(), 7);
    }

    #[test]
    fn a_query_or_cookie_key_is_taken_off_by_overwriting_path_and_cookie() {
        let response = answer(&Verdict::Allow {
            entry: entry(None),
            removal: CredentialRemoval {
                headers: vec!["x-api-key".into()],
                path: Some("/v1/x?b=2&&a=1".into()),
                cookie: Some(Some("theme=dark".into())),
            },
        })
        .unwrap();
        let ok = ok_response(&response);
        let set = headers(&ok.headers);
        assert_eq!(
            set[2..],
            [
                (":path".to_owned(), "/v1/x?b=2&&a=1".to_owned(), OVERWRITE),
                ("cookie".to_owned(), "theme=dark".to_owned(), OVERWRITE),
            ]
        );
        assert!(ok.query_parameters_to_remove.is_empty());

        let response = answer(&Verdict::Allow {
            entry: entry(None),
            removal: CredentialRemoval {
                cookie: Some(None),
                ..CredentialRemoval::default()
            },
        })
        .unwrap();
        let ok = ok_response(&response);
        assert_eq!(ok.headers.len(), 2);
        assert_eq!(
            ok.headers_to_remove,
            vec!["cookie", "x-keysync-rl-subject", "x-keysync-rl-limit"]
        );
    }

    #[test]
    fn missing_is_the_contracts_401_with_a_challenge() {
        let response = answer(&Verdict::Deny(Denial::MissingKey)).unwrap();
        assert_eq!(
            response.status.as_ref().unwrap().code,
            rpc::Code::Unauthenticated as i32
        );
        let denied = denied_response(&response);
        let contract = reply::reply(Denial::MissingKey, INVALID_KEY_STATUS);
        assert_eq!(denied.status.as_ref().unwrap().code, 401);
        assert_eq!(denied.body.as_bytes(), contract.body);
        assert_eq!(
            headers(&denied.headers),
            vec![
                ("content-type".into(), "application/json".into(), OVERWRITE),
                ("www-authenticate".into(), "Bearer".into(), OVERWRITE),
            ]
        );
    }

    #[test]
    fn invalid_is_the_contracts_403() {
        let response = answer(&Verdict::Deny(Denial::InvalidKey)).unwrap();
        assert_eq!(
            response.status.as_ref().unwrap().code,
            rpc::Code::PermissionDenied as i32
        );
        let denied = denied_response(&response);
        assert_eq!(denied.status.as_ref().unwrap().code, 403);
        let body: serde_json::Value = serde_json::from_str(&denied.body).unwrap();
        assert_eq!(body["error"], "invalid_api_key");
        assert_eq!(
            headers(&denied.headers),
            vec![("content-type".into(), "application/json".into(), OVERWRITE)]
        );
    }

    #[test]
    fn cannot_tell_is_a_grpc_error_for_envoys_status_on_error() {
        let error = answer(&Verdict::Deny(Denial::Unavailable)).unwrap_err();
        assert_eq!(error.code(), Code::Unavailable);
    }

    /// Envoy writes that 503's body itself, from `envoy/ext-authz.yaml`: it must say
    /// what the contract says.
    #[test]
    fn the_configured_503_is_the_contracts() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../envoy/ext-authz.yaml");
        let template = std::fs::read_to_string(path).unwrap();
        let contract = reply::reply(Denial::Unavailable, INVALID_KEY_STATUS);
        let body: serde_json::Value = serde_json::from_slice(contract.body).unwrap();
        let message = body["message"].as_str().unwrap();
        for line in [
            format!("error: {}", body["error"].as_str().unwrap()),
            format!("message: \"{message}\""),
            "content_type: application/json".to_owned(),
            "status_on_error: { code: ServiceUnavailable }".to_owned(),
        ] {
            assert!(template.contains(&line), "{path} lacks {line:?}");
        }
        for (name, value) in contract.headers {
            if *name != "content-type" {
                let header = format!("header: {{ key: {name}, value: \"{value}\" }}");
                assert!(template.contains(&header), "{path} lacks {header:?}");
            }
        }
    }

    #[test]
    fn provenance_travels_as_dynamic_metadata() {
        let response = with_provenance(
            answer(&Verdict::Deny(Denial::InvalidKey)).unwrap(),
            Provenance {
                epoch: 0xfeed,
                confirmed_age_ms: 1500,
            },
        );
        let fields = response.dynamic_metadata.unwrap().fields;
        assert_eq!(
            fields["keysync_epoch"].kind,
            Some(Kind::StringValue("000000000000feed".to_owned()))
        );
        assert_eq!(
            fields["keysync_confirmed_age_ms"].kind,
            Some(Kind::NumberValue(1500.0))
        );
    }
}
