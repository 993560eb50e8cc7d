//! Routing decided by Envoy's own configuration (`envoy/render.py`): `BACKEND_URLS`
//! gives the backends and their prefixes, `PUBLIC_BACKENDS` makes some of them public by
//! turning the auth filter off on their routes (`typed_per_filter_config` with
//! `FilterConfig{disabled: true}`), and `ENVOY_PROBE_PORT` answers Kubernetes probes and
//! Prometheus (and nothing else of the admin interface).

use keysync_e2e::http;
use keysync_e2e::poll::{self, DEADLINE};
use keysync_e2e::replies::forwarded_header;
use keysync_e2e::stack::Stack;

#[test]
fn a_public_backend_by_configuration_passes_without_a_key_and_the_other_does_not() {
    for template in ["gateway.yaml", "ext-authz.yaml"] {
        let mut probes = None;
        let stack = Stack::start(|options| {
            options.template = template.into();
            // The stack's echo backend under two names: `api` behind the auth filter,
            // `docs` public by configuration.
            let url = options.backends.split_once('=').unwrap().1.to_owned();
            options.backends = format!("api={url},docs={url}");
            options.env.push(("PUBLIC_BACKENDS".into(), "docs".into()));
            probes = Some(options.probe_listener());
        });
        let probes = probes.unwrap();
        let org = stack.create_org("routing");
        let key = stack.create_key(&org, &[]);
        stack
            .gateway
            .wait_for_status("/api/orders", &key.key, 200, DEADLINE);

        let refused = stack.gateway.get("/api/orders", &[]);
        assert_eq!(refused.status, 401, "{template}: {}", refused.text());

        let public = stack.gateway.get(
            "/docs/intro",
            &[
                ("x-org-id", b"forged-org".as_slice()),
                ("x-api-key-id", b"forged-key".as_slice()),
                ("x-api-key", key.key.as_bytes()),
            ],
        );
        assert_eq!(public.status, 200, "{template}: {}", public.text());
        for header in ["x-org-id", "x-api-key-id", "x-api-key", "authorization"] {
            assert!(
                forwarded_header(&public, header).is_empty(),
                "{template}: {header} reached the public backend: {}",
                public.text()
            );
        }

        // /ready is 200 once the gateway can decide keys (e2e/tests/readiness.rs); the
        // key above may have been answered before that, on the miss path.
        poll::eventually(
            &format!("{template}: GET /ready on the probe port"),
            DEADLINE,
            || http::get(probes, "/ready", &[]).unwrap().status,
            |&status| status == 200,
        );
        let status = http::get(probes, "/stats/prometheus", &[]).unwrap().status;
        assert_eq!(
            status, 200,
            "{template}: GET /stats/prometheus on the probe port"
        );
        let status = http::get(probes, "/stats", &[]).unwrap().status;
        assert_eq!(status, 404, "{template}: GET /stats on the probe port");
        for path in ["/ready", "/quitquitquit"] {
            let raw = format!("POST {path} HTTP/1.1\r\nhost: probe\r\ncontent-length: 0\r\n\r\n");
            let status = http::send_raw(probes, raw.as_bytes()).unwrap().status;
            assert_eq!(status, 404, "{template}: POST {path} on the probe port");
        }
    }
}

/// With several backends, `/billing` (the bare prefix) reaches the backend's root as
/// `/billing/` does, with its query; `/billingx` is no backend's.
#[test]
fn a_bare_backend_prefix_reaches_the_backends_root() {
    let stack = Stack::start(|options| {
        let url = options.backends.split_once('=').unwrap().1.to_owned();
        options.backends = format!("api-service={url},billing={url}");
    });
    let org = stack.create_org("routing");
    let key = stack.create_key(&org, &[]);
    stack
        .gateway
        .wait_for_status("/billing/invoices", &key.key, 200, DEADLINE);
    for (path, reached) in [
        ("/billing", "/"),
        ("/billing/", "/"),
        ("/billing?month=3", "/?month=3"),
        ("/billing/invoices", "/invoices"),
        ("/api-service", "/"),
    ] {
        let answer = stack.gateway.get_with_key(path, &key.key);
        assert_eq!(answer.status, 200, "{path}: {}", answer.text());
        assert_eq!(answer.json()["path"], reached, "{path}: {}", answer.text());
    }
    assert_eq!(
        stack.gateway.get_with_key("/billingx", &key.key).status,
        404
    );
}
