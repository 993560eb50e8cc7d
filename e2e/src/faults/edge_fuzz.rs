//! Edge fuzz: generated hostile requests (see `edge_requests`) against the gateway in
//! any mode, the wasm filter (`envoy/gateway.yaml`), the native filter
//! (`envoy/native.yaml`) or ext_authz (`envoy/ext-authz.yaml`), each with a public prefix
//! besides `/health`: the filter's `public_paths: ["/public/*"]`, or in ext_authz mode a
//! public backend under `/public/` (`PUBLIC_BACKENDS`, the authenticated one under
//! `/api/`). Keys travel in headers, a query parameter and a cookie (`credentials`, the
//! query and the cookie first: every request's are read). Recording backends say what got
//! through. It must show that no request reached a backend unauthenticated on a
//! non-public path, with an identity the gateway did not set, or carrying the credential
//! (a credential parameter or cookie included; except on ext_authz's public backend, whose
//! route Envoy cannot strip a parameter or a cookie from: counted, not a violation); that the gateway answered no 5xx and every
//! request; that the filter never failed (no wasm VM failure, no panic caught in the
//! native module) and that Envoy is still running at the end.
//! A path is public when every common backend would resolve it under the public prefix
//! (`backend_paths`: `/public/..;/admin` is `/admin` to a servlet container).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::backend_paths;
use super::edge_requests::{
    generate, EdgeKeys, Identity, COOKIE_NAME, CREDENTIALS, FUZZ_ID, QUERY_PARAMETER,
};
use super::figures::{duration, statuses, Figures, Verdict};
use super::filter_health::FilterHealth;
use super::Scale;
use crate::gateway::{FilterKind, Gateway, GatewayOptions};
use crate::http::Connection;
use crate::keysync::{self, Keysync};
use crate::poll::DEADLINE;
use crate::recording_backend::Recording;
use crate::replies::header_values;
use crate::stack::Backend;
use crate::TestPostgres;

/// What enforces the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforcement {
    /// The keysync wasm filter (`envoy/gateway.yaml`).
    Wasm,
    /// The keysync native filter, an Envoy dynamic module (`envoy/native.yaml`).
    Native,
    /// Envoy's ext_authz filter asking keysync (`envoy/ext-authz.yaml`).
    ExtAuthz,
}

/// The seed of every run: the same requests each time.
const SEED: u64 = 0x6564_6765_6675_7a7a;
/// Client threads, each on its own keep-alive connection.
const THREADS: u64 = 8;
/// The public prefix, as the filter's `public_paths` spells it.
const PUBLIC_PREFIX: &str = "/public/";

pub fn run(scale: Scale, enforcement: Enforcement) -> Figures {
    let requests: u64 = scale.pick(3_000, 100_000);
    let postgres = TestPostgres::start();
    let database_url = postgres.create_database();
    keysync::migrate(&database_url);
    let keysync = Keysync::start(&database_url, &[("KEYSYNC_CREDENTIALS", CREDENTIALS)]);
    // The authenticated backend, and in ext_authz mode a public one beside it (a route
    // made public by the shipped configuration: PUBLIC_BACKENDS).
    let recording = Recording::new();
    let backend = Backend::serve(recording.router());
    let public_recording = Recording::new();
    let public_backend = Backend::serve(public_recording.router());
    let mut options = GatewayOptions::new(keysync.grpc, backend.backend_urls());
    options.env.push(("CREDENTIALS".into(), CREDENTIALS.into()));
    let api_prefix = match enforcement {
        Enforcement::Wasm | Enforcement::Native => {
            options.template = match enforcement {
                Enforcement::Native => FilterKind::Native,
                _ => FilterKind::Wasm,
            }
            .template()
            .into();
            options.auth_config =
                format!(r#"{{"role":"auth","public_paths":["/health","{PUBLIC_PREFIX}*"]}}"#);
            ""
        }
        Enforcement::ExtAuthz => {
            options.template = "ext-authz.yaml".into();
            options.backends = format!("api={},public={}", backend.url(), public_backend.url());
            options
                .env
                .push(("PUBLIC_BACKENDS".into(), "public".into()));
            "/api"
        }
    };
    let gateway = Gateway::start(options);

    let valid: Vec<Identity> = ["fuzz-a", "fuzz-b"]
        .iter()
        .map(|name| {
            let org = keysync::create_org(&database_url, name);
            let key = keysync::create_key(&database_url, &org, name, &[]);
            Identity {
                secret: key.key,
                org_id: key.org_id,
                key_id: key.key_id,
            }
        })
        .collect();
    let revoked = keysync::create_key(&database_url, &valid[0].org_id, "revoked", &[]);
    keysync::revoke_key(&database_url, &revoked.key_id);
    let keys = Arc::new(EdgeKeys {
        valid,
        revoked: revoked.key,
        unknown: "sk_live_NeverIssuedToAnyoneAtAll00000001".to_string(),
        api_prefix: api_prefix.to_string(),
    });
    let probe = format!("{api_prefix}/");
    for identity in &keys.valid {
        gateway.wait_for_status(&probe, &identity.secret, 200, DEADLINE);
    }
    gateway.wait_for_status(&probe, &keys.revoked, 403, DEADLINE);
    if enforcement != Enforcement::ExtAuthz {
        gateway.wait_until_synced(DEADLINE);
    }
    recording.take();
    public_recording.take();

    let started = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let keys = keys.clone();
            let sent = sent.clone();
            let target = gateway.addr;
            std::thread::spawn(move || {
                let mut connection = Connection::new(target);
                (thread..requests)
                    .step_by(THREADS as usize)
                    .map(|id| {
                        let request = generate(&keys, SEED, id);
                        sent.fetch_add(1, Ordering::Relaxed);
                        let status = connection
                            .exchange(&request.raw)
                            .ok()
                            .map(|response| response.status);
                        (id, status)
                    })
                    .collect::<Vec<(u64, Option<u16>)>>()
            })
        })
        .collect();
    let answered: Vec<(u64, Option<u16>)> = threads
        .into_iter()
        .flat_map(|thread| thread.join().expect("a fuzz thread panicked"))
        .collect();
    let answers: Vec<Option<u16>> = answered.iter().map(|(_, status)| *status).collect();
    let server_error_requests: Vec<String> = answered
        .iter()
        .filter(|(_, status)| status.is_some_and(|s| s >= 500))
        .take(3)
        .map(|(id, status)| {
            let raw = generate(&keys, SEED, *id).raw;
            format!(
                "{status:?} for {:?}",
                String::from_utf8_lossy(&raw[..raw.len().min(600)])
            )
        })
        .collect();
    let took = started.elapsed();
    let received = recording.take();
    let received_public = public_recording.take();

    // With one backend, what is public is told by the path; with two, by the backend.
    let mut judged = Judged::default();
    judge(&keys, &received, &mut judged, true, |record| {
        enforcement != Enforcement::ExtAuthz
            && record["path"]
                .as_str()
                .is_some_and(|path| backend_paths::resolves_under(path, PUBLIC_PREFIX))
    });
    judge(&keys, &received_public, &mut judged, false, |_| true);
    let server_errors = answers
        .iter()
        .filter(|status| status.is_some_and(|s| s >= 500))
        .count();
    let unanswered = answers.iter().filter(|status| status.is_none()).count();
    let health = FilterHealth::of(&gateway);

    let mut figures = Figures::new(&format!("Edge fuzz ({enforcement:?})"));
    figures.add("requests sent", sent.load(Ordering::Relaxed));
    figures.add("time", duration(took));
    figures.add(
        "requests a second",
        format!("{:.0}", requests as f64 / took.as_secs_f64()),
    );
    figures.add("answers by status class", classes(&answers));
    figures.add("answers by status", statuses(answers.iter().copied()));
    figures.add(
        "reached the backend(s)",
        received.len() + received_public.len(),
    );
    figures.add("  of which on a public path", judged.public);
    figures.add("  of which with the gateway's identity", judged.identified);
    figures.add(
        "client-sent x-keysync-rl-limit that reached the backend (not identity)",
        judged.descriptor_limits,
    );
    figures.add(
        "query or cookie credential on ext_authz's public backend (Envoy's route cannot strip it)",
        judged.unstrippable_public,
    );
    for (kind, count) in &judged.violations {
        figures.add(&format!("VIOLATION: {kind}"), count);
    }
    figures.add("violations (must be 0)", judged.total());
    figures.add("5xx answers (must be 0)", server_errors);
    figures.add("requests without an answer (must be 0)", unanswered);
    health.add_figures(&mut figures);
    super::operator_figures(&mut figures, &gateway, Some(&keysync));
    figures.print();

    let mut verdict = Verdict::new();
    verdict.check(judged.total() == 0, "nothing reaches the backend unauthenticated on a non-public path, with an identity the gateway did not set, or carrying the credential", || {
        format!("{:?}; examples:\n{}", judged.violations, judged.examples.join("\n"))
    });
    verdict.check(server_errors == 0, "no 5xx from the gateway", || {
        format!(
            "{}; for instance:\n{}",
            statuses(answers),
            server_error_requests.join("\n")
        )
    });
    verdict.check(unanswered == 0, "every request is answered", || {
        gateway.process.log_tail(60)
    });
    health.check(&mut verdict, &gateway);
    verdict.finish(&format!("edge fuzz ({enforcement:?})"));
    figures
}

/// `2xx: n, 4xx: m, ...`.
fn classes(answers: &[Option<u16>]) -> String {
    let mut counts = BTreeMap::new();
    for answer in answers {
        let class = answer.map_or("no answer".to_string(), |s| format!("{}xx", s / 100));
        *counts.entry(class).or_insert(0usize) += 1;
    }
    counts
        .iter()
        .map(|(class, count)| format!("{class}: {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What reached the backend, judged.
#[derive(Default)]
struct Judged {
    public: usize,
    identified: usize,
    /// Client-sent `x-keysync-rl-limit` headers that reached the backend: no identity,
    /// and read by nothing in local mode, so counted but not a violation.
    descriptor_limits: usize,
    /// A credential parameter or cookie on a public route of Envoy's own configuration
    /// (ext_authz's `PUBLIC_BACKENDS`): no filter runs there to take it off.
    unstrippable_public: usize,
    violations: BTreeMap<&'static str, usize>,
    examples: Vec<String>,
}

impl Judged {
    fn total(&self) -> usize {
        self.violations.values().sum()
    }

    fn violation(&mut self, kind: &'static str, record: &Value) {
        *self.violations.entry(kind).or_default() += 1;
        if self.examples.len() < 5 {
            self.examples.push(format!("{kind}: {record}"));
        }
    }
}

/// Every request a backend received, against the rules: credentials, descriptor
/// headers and underscore variants of identity headers never arrive; an identity is
/// exactly the one of a valid key the request carried; without one, only where
/// `public` says the request was public. `filtered`: the auth filter ran on the route
/// (it takes credential parameters and cookies off).
fn judge(
    keys: &EdgeKeys,
    received: &[Value],
    judged: &mut Judged,
    filtered: bool,
    public: impl Fn(&Value) -> bool,
) {
    for record in received {
        if let Some(place) = credential_beyond_headers(record) {
            if filtered {
                judged.violation(place, record);
            } else {
                judged.unstrippable_public += 1;
            }
        }
        let headers = record["headers"].as_object().cloned().unwrap_or_default();
        let values = |name: &str| header_values(record, name);
        let carries = values(FUZZ_ID)
            .first()
            .and_then(|id| id.parse().ok())
            .map(|id| generate(keys, SEED, id).carries)
            .unwrap_or_default();
        let (orgs, key_ids) = (values("x-org-id"), values("x-api-key-id"));
        let identified = !orgs.is_empty() || !key_ids.is_empty();
        for (name, forwarded) in &headers {
            let canonical = name.to_ascii_lowercase().replace('_', "-");
            // A credential: any `x-api-key`, a Bearer `Authorization`, or a working key
            // in either (another scheme's credential, say `Basic dXNlcjpwYXNz`, is the
            // backend's business).
            let carries_a_key = forwarded.as_array().is_some_and(|values| {
                values.iter().filter_map(Value::as_str).any(|value| {
                    canonical == "x-api-key"
                        || value
                            .trim_start()
                            .to_ascii_lowercase()
                            .starts_with("bearer")
                        || keys.valid.iter().any(|key| value.contains(&key.secret))
                })
            });
            match canonical.as_str() {
                "authorization" | "x-api-key" if !carries_a_key => {}
                "authorization" | "x-api-key" if identified => {
                    judged.violation(
                        "credential header forwarded (authenticated request)",
                        record,
                    );
                }
                "authorization" | "x-api-key" => {
                    judged.violation("credential header forwarded (public path)", record);
                }
                // An organization id the gateway did not put there.
                "x-keysync-rl-subject" => {
                    judged.violation("client-sent rate-limit subject forwarded", record);
                }
                "x-keysync-rl-limit" => judged.descriptor_limits += 1,
                "x-org-id" | "x-api-key-id" if canonical != *name => {
                    judged.violation("identity header variant forwarded", record);
                }
                _ => {}
            }
        }
        if !identified {
            if public(record) {
                judged.public += 1;
            } else {
                judged.violation("unauthenticated on a non-public path", record);
            }
            continue;
        }
        let set_by_gateway = orgs.len() == 1
            && key_ids.len() == 1
            && carries
                .iter()
                .any(|&n| keys.valid[n].org_id == orgs[0] && keys.valid[n].key_id == key_ids[0]);
        if set_by_gateway {
            judged.identified += 1;
        } else {
            judged.violation("identity the gateway did not set", record);
        }
    }
}

/// Whether a credential parameter (its name decoded once, as the gateway and backends
/// read it) or a credential cookie reached the backend.
fn credential_beyond_headers(record: &Value) -> Option<&'static str> {
    let path = record["path"].as_str().unwrap_or_default();
    let query = path.split_once('?').map_or("", |(_, query)| query);
    let parameter = query.split('&').any(|pair| {
        let name = pair.split('=').next().unwrap_or_default();
        name == QUERY_PARAMETER || name.eq_ignore_ascii_case("api%5Fkey")
    });
    if parameter {
        return Some("credential query parameter forwarded");
    }
    let cookie = header_values(record, "cookie").iter().any(|header| {
        header
            .split(';')
            .any(|pair| pair.split('=').next().unwrap_or_default().trim() == COOKIE_NAME)
    });
    cookie.then_some("credential cookie forwarded")
}
