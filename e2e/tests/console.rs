//! The web console in a real headless Chromium (Debian's, over WebDriver), against a real
//! keysync and PostgreSQL, with traffic sent through a real Envoy so that the charts have
//! data: sign in, see the organization and the numbers `keysync usage` gives, make a key
//! in the browser and use it at the gateway, revoke it there and see it refused; a
//! read-only token gets no write controls; a wrong token is refused in the API's words;
//! nothing is loaded from another origin and the browser logs no error; axe-core finds
//! no serious or critical violation on any page. Screenshots of each page at 1280 and
//! 360 px go to `target/console-screenshots/`.

// Tests: an answer without the expected field fails the test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use keysync_e2e::http;
use keysync_e2e::keysync as ks;
use keysync_e2e::paths;
use keysync_e2e::poll;
use keysync_e2e::stack::Stack;
use keysync_e2e::webdriver::{self, Browser};
use serde_json::{json, Value};

/// The sync service's configuration: usage reported every second.
const SYNC_WITH_USAGE: &str = r#"{"role":"sync","refresh_interval":"2s","max_retry_interval":"1s","usage_flush_interval":"1s"}"#;

/// `keysync admin-tokens create`: the token.
fn admin_token(database_url: &str, name: &str, read_only: bool) -> String {
    let mut args = vec!["admin-tokens", "create", "--name", name];
    if read_only {
        args.push("--read-only");
    }
    ks::cli_json(database_url, &args)["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `GET path` (or `POST` with a body) on keysync's API with `token`.
fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> http::Response {
    let body = body.map(|body| body.to_string()).unwrap_or_default();
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nhost: keysync\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    http::send_raw(addr, raw.as_bytes()).unwrap()
}

/// `keysync usage --org-id ORG [--key-id KEY] --by hour --json`: requests by hour.
fn usage_by_hour(stack: &Stack, org: &str, key: &str) -> Vec<(String, u64)> {
    let answer = ks::cli_json(
        &stack.database_url,
        &[
            "usage", "--org-id", org, "--key-id", key, "--by", "hour", "--since", "1d",
        ],
    );
    answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["period"].as_str().unwrap().to_owned(),
                row["requests"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The chart's rows as the page shows them: (hour, requests).
fn chart_rows(browser: &Browser) -> Vec<(String, u64)> {
    let rows = browser.run(
        "return [...document.querySelectorAll('figure.usage tr[data-period]')]\
            .map((row) => [row.dataset.period, Number(row.dataset.total)])",
        &[],
    );
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row[0].as_str().unwrap().to_owned(),
                row[1].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Runs axe-core (installed by `make test` under `target/axe`) on the page: the
/// serious and critical violations, as `rule: nodes`.
fn accessibility_violations(browser: &Browser) -> Vec<String> {
    let axe = paths::target_dir().join("axe/node_modules/axe-core/axe.min.js");
    let source = std::fs::read_to_string(&axe).unwrap_or_else(|error| {
        panic!(
            "{}: {error} (make test installs axe-core there)",
            axe.display()
        )
    });
    browser.run(&format!("{source}\n; return true;"), &[]);
    let result = browser.run_async(
        "const done = arguments[arguments.length - 1];\
         axe.run(document, { resultTypes: ['violations'] })\
            .then((result) => done(result.violations\
                .filter((violation) => ['serious', 'critical'].includes(violation.impact))\
                .map((violation) => `${violation.id}: ${violation.nodes.map((node) => node.target.join(' ')).join(', ')}`)))\
            .catch((error) => done([`axe failed: ${error}`]));",
        &[],
    );
    result
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Checks the page for what every page must hold to, and saves its screenshots. The
/// browser logs each answer over 399 as an error: `expected` names the ones the test
/// provoked (`/v1/whoami - Failed to load resource: ... 401`).
fn check_page(browser: &Browser, origin: &str, name: &str, expected: &[&str]) {
    // No value the page failed to write out.
    let text = browser
        .run("return document.body.innerText", &[])
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for slip in ["null", "undefined", "[object", "NaN"] {
        assert!(
            !text.split_whitespace().any(|word| word.starts_with(slip)),
            "{name} shows {slip}: {text}"
        );
    }
    let violations = accessibility_violations(browser);
    assert!(
        violations.is_empty(),
        "{name}: axe-core found {violations:#?}"
    );
    for url in browser.resources() {
        assert!(
            url.starts_with(origin),
            "{name} loaded {url}, not from {origin}"
        );
    }
    let errors: Vec<Value> = browser
        .log()
        .into_iter()
        .filter(|entry| entry["level"] == "SEVERE")
        .filter(|entry| {
            let message = entry["message"].as_str().unwrap_or_default();
            !expected.iter().any(|allowed| message.contains(allowed))
        })
        .collect();
    assert!(
        errors.is_empty(),
        "{name}: the browser logged errors: {errors:#?}"
    );
    let dir = webdriver::screenshot_dir();
    browser.screenshot(&dir.join(format!("{name}-1280.png")));
    browser.set_size(360, 780);
    browser.screenshot(&dir.join(format!("{name}-360.png")));
    // At 360 px nothing sticks out sideways (a table scrolls in its own frame).
    let overflow = browser.run(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
        &[],
    );
    assert!(
        overflow.as_i64().unwrap() <= 0,
        "{name} scrolls sideways at 360 px by {overflow}"
    );
    browser.set_size(1280, 900);
}

/// Signs in with the keyboard alone: the token field has the focus when the page opens,
/// and Enter submits.
fn sign_in(browser: &Browser, console: &str, token: &str) {
    browser.open(console);
    let input = browser.wait_for("input[name=token]");
    let focused = browser.run("return document.activeElement.name", &[]);
    assert_eq!(
        focused, "token",
        "the sign-in page does not focus the token field"
    );
    // WebDriver's Enter key.
    browser.type_into(&input, &format!("{token}\u{E007}"));
}

#[test]
fn the_console_shows_and_changes_what_the_api_does_in_a_real_browser() {
    assert!(
        webdriver::available(),
        "chromium and chromedriver are missing: `make test` installs them (apt-get install chromium chromium-driver)"
    );
    let mut stack = Stack::start(|options| options.sync_config = SYNC_WITH_USAGE.into());
    let org = stack.create_org("demo");
    let key = stack.create_key(&org, &[]);
    stack.set_key_limit(&key.key_id, &["--rpm", "600", "--burst", "100"]);
    stack
        .gateway
        .wait_for_status("/", &key.key, 200, poll::DEADLINE);
    for _ in 0..11 {
        assert_eq!(stack.gateway.get_with_key("/orders", &key.key).status, 200);
    }
    let sent: u64 = poll::within(Duration::from_secs(30), poll::INTERVAL, || {
        let rows = usage_by_hour(&stack, &org, &key.key_id);
        let total: u64 = rows.iter().map(|(_, requests)| requests).sum();
        if total >= 12 {
            Ok(total)
        } else {
            Err(rows)
        }
    })
    .unwrap_or_else(|rows| panic!("usage never reached 12 requests: {rows:?}"));

    let api_addr = stack.keysync.api();
    let origin = format!("http://{api_addr}");
    let console = format!("{origin}/console/");
    let admin = admin_token(&stack.database_url, "console", false);
    let read_only = admin_token(&stack.database_url, "console viewer", true);
    let browser = Browser::start(1280, 900);

    // A wrong token: refused, in the API's words.
    let wrong = "ksa_NotATokenAnyoneWasGiven0000000000000000";
    let refusal = api(api_addr, "GET", "/v1/whoami", wrong, None);
    assert_eq!(refusal.status, 401);
    let message = refusal.json()["message"].as_str().unwrap().to_owned();
    sign_in(&browser, &console, wrong);
    browser.wait_for_text("form.signin .error", &message);
    check_page(
        &browser,
        &origin,
        "sign-in",
        &["/v1/whoami - Failed to load resource: the server responded with a status of 401"],
    );

    // Signed in: the overview counts what the gateway served.
    sign_in(&browser, &console, &admin);
    browser.wait_for_text("h1", "Overview");
    let total = browser.wait_for("figure.usage");
    assert_eq!(
        browser.attribute(&total, "data-total").as_deref(),
        Some(sent.to_string().as_str())
    );
    browser.wait_for_text(".overview .columns table", "demo");
    check_page(&browser, &origin, "overview", &[]);

    // The demo organization is listed and has its page.
    browser.click(&browser.wait_for("nav a[data-section=orgs]"));
    browser.wait_for_text("main table", "demo");
    let search = browser.wait_for("input[name=search]");
    browser.type_into(&search, "nobody");
    browser.wait_for_text("main", "No organization matches");
    browser.type_into(&search, "DEM");
    browser.wait_for_text("main table", "demo");
    check_page(&browser, &origin, "organizations", &[]);
    browser.click(&browser.wait_for(&format!("a[href='#/orgs/{org}']")));
    browser.wait_for_text("h1", "demo");
    browser.wait_for_text("#org-keys + div table", &key.key[..12]);
    browser.wait_for("figure.usage");
    check_page(&browser, &origin, "organization", &[]);

    // The key's chart has the requests `keysync usage` counts, hour by hour.
    browser.open(&format!("{console}#/keys/{}", key.key_id));
    browser.wait_for_text("h1", "Key");
    browser.wait_for("figure.usage");
    assert_eq!(
        chart_rows(&browser),
        usage_by_hour(&stack, &org, &key.key_id)
    );
    check_page(&browser, &origin, "key", &[]);

    // A save the API refuses says why in its words, and the form keeps what was typed.
    browser.open(&format!("{console}#/orgs/{org}"));
    let name = browser.wait_for("form input[name=name]");
    browser.type_into(&name, "made in the browser");
    let expiry = browser.wait_for("form input[name=expires_in]");
    browser.type_into(&expiry, "soon");
    browser.click(&browser.wait_for("form button[type=submit]"));
    let refusal = browser.wait_for_text("form .error", "soon");
    let typed = || {
        browser.run(
            "return [...document.querySelectorAll('form input')].map((input) => input.value)",
            &[],
        )
    };
    assert_eq!(typed()[0], "made in the browser", "{refusal}");
    assert_eq!(typed()[1], "soon", "{refusal}");
    check_page(
        &browser,
        &origin,
        "create-refused",
        &["/v1/keys - Failed to load resource: the server responded with a status of 4"],
    );

    // A key made in the browser works at the gateway; revoked there, it is refused.
    browser.type_into(&expiry, "90d");
    browser.click(&browser.wait_for("form button[type=submit]"));
    let secret = browser.wait_for("code.secret");
    let made = browser.text(&secret);
    assert!(made.starts_with("sk_live_"), "{made}");
    let made_id = browser.attribute(&secret, "data-key-id").unwrap();
    stack
        .gateway
        .wait_for_status("/", &made, 200, poll::DEADLINE);
    browser.open(&format!("{console}#/keys/{made_id}"));
    browser.click(&browser.wait_for("button.danger[type=button]"));
    browser.click(&browser.wait_for("dialog button.danger[type=submit]"));
    // The receipt: the one gateway of this stack confirmed the revocation.
    browser.wait_for_text("main .notice", "Revoked on 1 of 1 gateway in");
    browser.wait_for_text("main .status", "revoked");
    stack
        .gateway
        .wait_for_status("/", &made, 403, poll::DEADLINE);
    check_page(&browser, &origin, "key-revoked", &[]);

    // The audit trail names the creation and the revocation.
    browser.open(&format!("{console}#/audit"));
    browser.wait_for_text("main table", "key.revoked");
    check_page(&browser, &origin, "audit", &[]);
    browser.open(&format!("{console}#/gateways"));
    browser.wait_for_text("h1", "Gateways");
    // The stack's one gateway, current (it has just confirmed the revocation).
    browser.wait_for_text("main", "1 gateway, 0 stale");
    browser.wait_for_text("main table", "current");
    check_page(&browser, &origin, "gateways", &[]);

    // Signed out, then in with a read-only token: no control that would change anything.
    browser.click(&browser.wait_for("#signout"));
    browser.wait_for("input[name=token]");
    sign_in(&browser, &console, &read_only);
    browser.wait_for_text("#who", "read-only");
    browser.open(&format!("{console}#/orgs/{org}"));
    browser.wait_for_text("#org-keys + div table", &key.key[..12]);
    assert!(
        browser.find("form input[name=name]").is_none(),
        "a create form for a read-only token"
    );
    browser.open(&format!("{console}#/keys/{}", key.key_id));
    browser.wait_for("figure.usage");
    for css in [
        "button.danger",
        "form input[name=grace]",
        "main button[type=submit]",
    ] {
        assert!(
            browser.find(css).is_none(),
            "{css} shown to a read-only token"
        );
    }
    check_page(&browser, &origin, "key-read-only", &[]);
    // The API refuses the write the console does not offer.
    let write = api(
        api_addr,
        "POST",
        &format!("/v1/keys/{}/revoke", key.key_id),
        &read_only,
        Some(json!({})),
    );
    assert_eq!(write.status, 403, "{}", write.text());
    assert_eq!(write.json()["error"], "read_only_token");
    assert_eq!(stack.gateway.get_with_key("/orders", &key.key).status, 200);

    // A token limited to the demo organization opens on its page, with no fleet pages.
    let tenant = ks::cli_json(
        &stack.database_url,
        &[
            "admin-tokens",
            "create",
            "--name",
            "demo's own",
            "--org-id",
            &org,
        ],
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    browser.click(&browser.wait_for("#signout"));
    sign_in(&browser, &console, &tenant);
    browser.wait_for_text("h1", "demo");
    let hash = browser.run("return location.hash", &[]);
    assert_eq!(hash, format!("#/orgs/{org}"));
    for section in ["overview", "gateways"] {
        let link = browser
            .find(&format!("nav a[data-section={section}]"))
            .unwrap();
        assert!(
            !browser.displayed(&link),
            "{section} shown to an organization's token"
        );
    }
    check_page(&browser, &origin, "organization-token", &[]);

    // keysync goes away: the console, already loaded, says so and keeps asking; keysync
    // back on the same address, the page it was asking for loads.
    browser.click(&browser.wait_for("#signout"));
    sign_in(&browser, &console, &admin);
    browser.wait_for_text("h1", "Overview");
    stack.keysync.process.terminate();
    browser.run("location.hash = '#/audit'", &[]);
    browser.wait_for_text("#connection", "Connection to keysync lost");
    let _back = ks::Keysync::start(
        &stack.database_url,
        &[("KEYSYNC_API_ADDR", &api_addr.to_string())],
    );
    browser.wait_for_text("main table", "key.revoked");
    let banner = browser.find("#connection").unwrap();
    assert!(
        !browser.displayed(&banner),
        "the banner stays once keysync is back"
    );
}
