//! Generated hostile requests for the edge fuzz: raw HTTP/1.1 bytes (a client library
//! would normalize or refuse most of them) built from a seed, mixing paths that try to
//! pass as public (`..`, `//`, `%2F`, `%2e`, `;`, `%2e%2e;`, `\`, absolute form),
//! credentials in every spelling (case, duplicates, schemes, underscores, binary, huge)
//! and every place (headers, the query parameter and the cookie of [`CREDENTIALS`],
//! percent-encoded, repeated, disagreeing, in over-long query strings and cookie headers),
//! identity and rate-limit headers a client has no business sending (underscore and
//! case variants included), and junk that should make the gateway refuse the request
//! outright.
//!
//! Each request carries `x-fuzz-id: <n>`, so what reaches the backend can be matched
//! with what was sent.

use crate::seeded::Seeded;

/// A key the gateway accepts, and the identity it forwards for it.
#[derive(Clone, Debug)]
pub struct Identity {
    pub secret: String,
    pub org_id: String,
    pub key_id: String,
}

/// The keys requests are built from.
pub struct EdgeKeys {
    /// Valid keys (of different organizations).
    pub valid: Vec<Identity>,
    pub revoked: String,
    /// Well-formed, never issued.
    pub unknown: String,
    /// Put before every origin-form path that does not try to be public (`/public...`,
    /// `/health...`): the prefix of the authenticated backend's routes when the gateway
    /// routes by prefix (`/api`), or nothing.
    pub api_prefix: String,
}

/// One generated request.
pub struct EdgeRequest {
    pub raw: Vec<u8>,
    /// Which of [`EdgeKeys::valid`] appear anywhere in it.
    pub carries: Vec<usize>,
}

/// The header naming the request, for matching.
pub const FUZZ_ID: &str = "x-fuzz-id";

/// The query parameter and the cookie that carry keys besides the headers.
pub const QUERY_PARAMETER: &str = "api_key";
pub const COOKIE_NAME: &str = "session";
/// The gateway's `credentials` for the fuzz: the query and the cookie first, so that every
/// request's are read (and must never reach a backend), then the contract's headers.
pub const CREDENTIALS: &str = r#"[{"query":"api_key"},{"cookie":"session"},{"header":"authorization","scheme":"Bearer"},{"header":"x-api-key"}]"#;

/// Paths as sent; the public ones are those under `/public/` (and `/health`).
const PATHS: &[&str] = &[
    "/",
    "/orders",
    "/orders?page=2",
    "/admin",
    "/public/docs",
    "/public/",
    "/public",
    "/publicity",
    "/health",
    "/health?probe=1",
    "/health/x",
    "/health/../orders",
    "/public/../admin",
    "/public/%2e%2e/admin",
    "/public/%2E%2E/admin",
    "/public/.%2e/admin",
    "/public%2F..%2Fadmin",
    "/public%2fdocs",
    "/public/..%2Fadmin",
    "/public/%2e%2e%2fadmin",
    "/public/%252e%252e/admin",
    "/public/%2e%2e;/admin",
    "/public/%2E%2E;x=1/admin",
    "/public/.%2e;/admin",
    "/public/%2e.;/admin",
    "/public/%2e%2e%3b/admin",
    "/public/%252e%252e;/admin",
    "/public/x/%2e%2e;/%2e%2e;/admin",
    "/public/%5c..%5cadmin",
    "//public/x",
    "/public//x",
    "/./public/x",
    "/public/./x",
    "/public;/x",
    "/public/x;y=z",
    "/orders;/public/x",
    "/orders/..;/public/x",
    "/%70ublic/x",
    "/PUBLIC/x",
    "/Public/x",
    "/public\\..\\admin",
    "/public/x?next=../../admin",
    "/orders#/public/x",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/public/%00/../admin",
    "http://gateway/public/x",
    "http://gateway/orders",
    "http://evil.example/orders",
    "http://gateway/public/../orders",
    "https://gateway/public/x",
    "*",
];

/// Pieces of generated paths.
const SEGMENTS: &[&str] = &[
    "public",
    "orders",
    "admin",
    "health",
    "..",
    ".",
    "%2e%2e",
    "%2E",
    "%2F",
    "%2f",
    "",
    ";",
    "x;y",
    "%70ublic",
    "PUBLIC",
    "..;",
    "%5c",
    "~",
    "%2e%2e;",
    ".%2e;x",
    "%2e%2e%3b",
];

const METHODS: &[&str] = &[
    "GET", "GET", "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS",
];
const SCHEMES: &[&str] = &["Bearer", "bearer", "BEARER", "BeArEr", "Basic", "Token", ""];
const SEPARATORS: &[&str] = &[" ", " ", " ", "  ", "\t", ""];
const AUTHORIZATION_NAMES: &[&str] = &["authorization", "Authorization", "AUTHORIZATION"];
const API_KEY_NAMES: &[&str] = &[
    "x-api-key",
    "X-Api-Key",
    "X-API-KEY",
    "x_api_key",
    "X_API_KEY",
    "x-api_key",
];
const IDENTITY_NAMES: &[&str] = &[
    "x-org-id",
    "X-Org-Id",
    "X-ORG-ID",
    "x_org_id",
    "X_ORG_ID",
    "x-org_id",
    "x_org-id",
    "x-api-key-id",
    "X-Api-Key-Id",
    "x_api_key_id",
    "x-api_key-id",
];
const DESCRIPTOR_NAMES: &[&str] = &[
    "x-keysync-rl-subject",
    "x-keysync-rl-limit",
    "x_keysync_rl_subject",
    "X-Keysync-Rl-Limit",
];

impl EdgeKeys {
    /// A value where a key goes: one of the keys, or junk.
    fn key_value(&self, random: &mut Seeded, carries: &mut Vec<usize>) -> Vec<u8> {
        match random.below(10) {
            0..=3 => {
                let n = random.below(self.valid.len());
                carries.push(n);
                self.valid[n].secret.clone().into_bytes()
            }
            4 => self.revoked.clone().into_bytes(),
            5 => self.unknown.clone().into_bytes(),
            6 => {
                let mut huge = b"sk_live_".to_vec();
                huge.resize(random.between(300, 12_000), b'A');
                huge
            }
            7 => {
                let mut binary = b"sk_live_".to_vec();
                binary.extend(random.bytes(16).iter().map(|b| b | 0x80));
                binary
            }
            8 => {
                // A valid key with something glued to it.
                let n = random.below(self.valid.len());
                carries.push(n);
                let mut value = self.valid[n].secret.clone().into_bytes();
                const GLUE: &[&[u8]] = &[b" ", b",", b"\x00", b";x", b" extra"];
                let glue = GLUE[random.below(GLUE.len())];
                value.extend_from_slice(glue);
                value
            }
            _ => Vec::new(),
        }
    }
}

/// Request `id` of a run seeded with `seed`: the same pair always gives the same bytes.
pub fn generate(keys: &EdgeKeys, seed: u64, id: u64) -> EdgeRequest {
    let mut random = Seeded::new(seed ^ id.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut carries = Vec::new();
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let method = *random.pick(METHODS);
    let mut path = path(&mut random);
    if path.starts_with('/') && !path.starts_with("/public") && !path.starts_with("/health") {
        path.insert_str(0, &keys.api_prefix);
    }
    let version = if random.percent(3) {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    };

    if !random.percent(2) {
        headers.push((b"host".to_vec(), b"gateway".to_vec()));
    }
    headers.push((FUZZ_ID.as_bytes().to_vec(), id.to_string().into_bytes()));
    let query = credentials(keys, &mut random, &mut headers, &mut carries);
    if !query.is_empty() {
        path.push(if path.contains('?') { '&' } else { '?' });
        path.push_str(&query.join("&"));
    }
    if random.percent(3) {
        // An over-long query string around whatever else it carries.
        let filler = "q=1&".repeat(random.between(500, 4_000));
        path.push(if path.contains('?') { '&' } else { '?' });
        path.push_str(&filler);
    }
    if random.percent(40) {
        spoofed_identity(keys, &mut random, &mut headers);
    }
    if random.percent(15) {
        junk(&mut random, &mut headers);
    }
    // Mix the order: the credential need not come first.
    let len = headers.len();
    for _ in 0..random.below(3) {
        let (a, b) = (random.below(len), random.below(len));
        headers.swap(a, b);
    }

    let body = if matches!(method, "POST" | "PUT" | "PATCH") {
        let len = random.below(64);
        random.bytes(len)
    } else {
        Vec::new()
    };
    let line_end: &[u8] = if random.percent(2) { b"\n" } else { b"\r\n" };
    let mut raw = format!("{method} {path} {version}").into_bytes();
    raw.extend_from_slice(line_end);
    for (name, value) in &headers {
        raw.extend_from_slice(name);
        raw.extend_from_slice(b": ");
        raw.extend_from_slice(value);
        raw.extend_from_slice(line_end);
    }
    if !body.is_empty() || method != "GET" {
        raw.extend_from_slice(format!("content-length: {}", body.len()).as_bytes());
        raw.extend_from_slice(line_end);
    }
    raw.extend_from_slice(line_end);
    raw.extend_from_slice(&body);
    carries.sort_unstable();
    carries.dedup();
    EdgeRequest { raw, carries }
}

fn path(random: &mut Seeded) -> String {
    if random.percent(70) {
        return random.pick(PATHS).to_string();
    }
    let mut path = String::new();
    for _ in 0..random.between(1, 5) {
        path.push_str(if random.percent(10) { "//" } else { "/" });
        path.push_str(SEGMENTS[random.below(SEGMENTS.len())]);
    }
    if random.percent(20) {
        path.push_str("?q=");
        path.push_str(SEGMENTS[random.below(SEGMENTS.len())]);
    }
    path
}

/// The request's credentials: headers pushed, cookies in a `Cookie` header (or
/// several), and the query parameters returned, to be appended to the path.
fn credentials(
    keys: &EdgeKeys,
    random: &mut Seeded,
    headers: &mut Vec<(Vec<u8>, Vec<u8>)>,
    carries: &mut Vec<usize>,
) -> Vec<String> {
    let count = match random.below(10) {
        0 => 0,
        1..=6 => 1,
        7 | 8 => 2,
        _ => 3,
    };
    let mut query = Vec::new();
    for _ in 0..count {
        let key = keys.key_value(random, carries);
        let place = random.below(10);
        if place < 2 {
            query.push(query_credential(random, &key));
        } else if place < 4 {
            headers.push((b"cookie".to_vec(), cookie_credential(random, &key)));
        } else if random.percent(60) {
            let scheme = random.pick(SCHEMES);
            let separator = random.pick(SEPARATORS);
            let mut value = format!("{scheme}{separator}").into_bytes();
            value.extend_from_slice(&key);
            headers.push((random.pick(AUTHORIZATION_NAMES).as_bytes().to_vec(), value));
        } else {
            headers.push((random.pick(API_KEY_NAMES).as_bytes().to_vec(), key));
        }
    }
    query
}

/// `api_key=<key>` in some spelling: percent-encoded (once or twice), the name encoded,
/// repeated, beside an empty one and other neighbours; the key's bytes escaped where a URL cannot hold them.
fn query_credential(random: &mut Seeded, key: &[u8]) -> String {
    let name = *random.pick(&[QUERY_PARAMETER, QUERY_PARAMETER, "api%5Fkey", "API_KEY"]);
    let value: String = match random.below(6) {
        0 => key.iter().map(|b| format!("%{b:02X}")).collect(),
        1 => key.iter().map(|b| format!("%25{b:02X}")).collect(),
        2 => format!("{}&{QUERY_PARAMETER}={}", escaped(key), escaped(key)),
        _ => escaped(key),
    };
    let mut parameter = format!("{name}={value}");
    if random.percent(30) {
        parameter = format!("a=1&&{QUERY_PARAMETER}=&{parameter}&b=%2F");
    }
    parameter
}

/// `session=<key>` among other cookies, sometimes quoted, sometimes among thousands.
fn cookie_credential(random: &mut Seeded, key: &[u8]) -> Vec<u8> {
    let mut value = Vec::new();
    if random.percent(40) {
        value.extend_from_slice(b"theme=dark; ");
    }
    if random.percent(5) {
        value.extend_from_slice("c=1; ".repeat(random.between(500, 8_000)).as_bytes());
    }
    value.extend_from_slice(COOKIE_NAME.as_bytes());
    value.push(b'=');
    let quoted = random.percent(20);
    if quoted {
        value.push(b'"');
    }
    value.extend_from_slice(escaped(key).as_bytes());
    if quoted {
        value.push(b'"');
    }
    if random.percent(30) {
        value.extend_from_slice(b";lang=en");
    }
    value
}

/// A URL-safe spelling of `bytes`: what a URL or a cookie cannot hold, percent-encoded.
fn escaped(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn spoofed_identity(keys: &EdgeKeys, random: &mut Seeded, headers: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    for _ in 0..random.between(1, 3) {
        if random.percent(25) {
            let value = if random.percent(50) {
                format!("org:{}", keys.valid[random.below(keys.valid.len())].org_id)
            } else {
                "1+0".to_string()
            };
            headers.push((
                random.pick(DESCRIPTOR_NAMES).as_bytes().to_vec(),
                value.into_bytes(),
            ));
            continue;
        }
        let name = random.pick(IDENTITY_NAMES);
        // Another organization's real id, or junk; never a whole (org, key) pair.
        let value = match random.below(3) {
            0 => keys.valid[random.below(keys.valid.len())].org_id.clone(),
            1 => "forged".to_string(),
            _ => "00000000-0000-0000-0000-000000000000".to_string(),
        };
        headers.push((name.as_bytes().to_vec(), value.into_bytes()));
    }
}

fn junk(random: &mut Seeded, headers: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    match random.below(9) {
        0 => {
            let size = *random.pick(&[1_000, 30_000, 70_000, 100_000]);
            headers.push((b"x-junk".to_vec(), vec![b'j'; size]));
        }
        1 => {
            for n in 0..random.between(50, 120) {
                headers.push((format!("x-h{n}").into_bytes(), b"v".to_vec()));
            }
        }
        2 => {
            let value: Vec<u8> = random.bytes(24).iter().map(|b| b | 0x80).collect();
            headers.push((b"x-binary".to_vec(), value));
        }
        3 => headers.push((b"x bad name".to_vec(), b"v".to_vec())),
        4 => headers.push((b"x-fold".to_vec(), b"a\r\n folded".to_vec())),
        5 => headers.push((b"x-nul".to_vec(), b"a\x00b".to_vec())),
        6 => {
            headers.push((b"transfer-encoding".to_vec(), b"chunked".to_vec()));
            headers.push((b"content-length".to_vec(), b"3".to_vec()));
        }
        7 => {
            // Ask a proxy to drop the gateway's own headers as hop-by-hop.
            headers.push((b"connection".to_vec(), b"x-org-id, x-api-key-id".to_vec()));
        }
        _ => {
            headers.push((b"upgrade".to_vec(), b"websocket".to_vec()));
            headers.push((b"connection".to_vec(), b"upgrade".to_vec()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> EdgeKeys {
        EdgeKeys {
            valid: vec![Identity {
                secret: "sk_live_ValidKeyForTheFuzz000000001".into(),
                org_id: "11111111-1111-1111-1111-111111111111".into(),
                key_id: "22222222-2222-2222-2222-222222222222".into(),
            }],
            revoked: "sk_live_RevokedKeyForTheFuzz0000001".into(),
            unknown: "sk_live_UnknownKeyForTheFuzz0000001".into(),
            api_prefix: String::new(),
        }
    }

    #[test]
    fn keys_travel_in_the_query_and_in_cookies_too() {
        let keys = keys();
        let requests: Vec<String> = (0..2_000)
            .map(|id| String::from_utf8_lossy(&generate(&keys, 3, id).raw).into_owned())
            .collect();
        let in_query = requests
            .iter()
            .filter(|r| r.contains("api_key=sk_live"))
            .count();
        let encoded = requests.iter().filter(|r| r.contains("=%73%6B%5F")).count();
        let in_cookie = requests.iter().filter(|r| r.contains("session=")).count();
        let long = requests.iter().filter(|r| r.len() > 8_000).count();
        assert!(
            in_query > 50 && encoded > 10 && in_cookie > 100 && long > 20,
            "{in_query} {encoded} {in_cookie} {long}"
        );
    }

    #[test]
    fn the_same_seed_and_id_give_the_same_request() {
        let keys = keys();
        assert_eq!(generate(&keys, 1, 42).raw, generate(&keys, 1, 42).raw);
        assert_ne!(generate(&keys, 1, 42).raw, generate(&keys, 1, 43).raw);
    }

    #[test]
    fn every_request_is_named_and_carried_keys_are_noted() {
        let keys = keys();
        let mut carrying = 0;
        for id in 0..500 {
            let request = generate(&keys, 7, id);
            let text = String::from_utf8_lossy(&request.raw);
            assert!(text.contains(&format!("{FUZZ_ID}: {id}")), "{text}");
            if !request.carries.is_empty() {
                carrying += 1;
                let secret = &keys.valid[0].secret;
                let encoded: String = secret.bytes().map(|b| format!("%{b:02X}")).collect();
                let twice: String = secret.bytes().map(|b| format!("%25{b:02X}")).collect();
                assert!(
                    text.contains(secret) || text.contains(&encoded) || text.contains(&twice),
                    "{text}"
                );
            }
        }
        assert!(carrying > 100, "only {carrying} of 500 carry a valid key");
    }
}
