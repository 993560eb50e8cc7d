//! How common backends resolve a request path they receive: the edge fuzz's model of
//! "which resource did this request name". A request forwarded without a key is public
//! only if every model resolves its path under the public prefix: a servlet container
//! that drops `;` parameters resolves `/public/..;/admin` to `/admin`, a Windows server
//! reads `\` as `/`, a framework that decodes twice turns `%252e` into `.`.
//!
//! Written independently of the filter's rule (`keysync_contract::public_path`), so that
//! the fuzz checks the rule rather than repeating it.

/// The ways of reading a path that the models combine.
#[derive(Clone, Copy)]
struct Model {
    /// Percent-decoding rounds before the dot segments are resolved (0, 1 or 2).
    decodes: u8,
    /// `;` parameters are dropped from every segment: before decoding (Tomcat) or
    /// after it (Spring's `UrlPathHelper`, which decodes first).
    parameters: Parameters,
    /// `\` is a separator (IIS, ASP.NET, Windows file servers).
    backslash_separates: bool,
    /// Empty segments are dropped (`//` read as `/`: nginx, Windows).
    merges_slashes: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Parameters {
    Kept,
    DroppedBeforeDecoding,
    DroppedAfterDecoding,
}

const MODELS: &[Model] = &[
    // A static file server or router that resolves the path as sent.
    Model {
        decodes: 0,
        parameters: Parameters::Kept,
        backslash_separates: false,
        merges_slashes: false,
    },
    // nginx, most frameworks: decode, then resolve.
    Model {
        decodes: 1,
        parameters: Parameters::Kept,
        backslash_separates: false,
        merges_slashes: true,
    },
    // Tomcat, Jetty.
    Model {
        decodes: 1,
        parameters: Parameters::DroppedBeforeDecoding,
        backslash_separates: false,
        merges_slashes: false,
    },
    // Spring MVC and Spring Security's older matchers.
    Model {
        decodes: 1,
        parameters: Parameters::DroppedAfterDecoding,
        backslash_separates: false,
        merges_slashes: false,
    },
    // IIS and friends: backslashes, and a second decoding.
    Model {
        decodes: 2,
        parameters: Parameters::DroppedAfterDecoding,
        backslash_separates: true,
        merges_slashes: true,
    },
];

/// Every resolution the models give `path` (as a backend received it), query removed.
pub fn resolutions(path: &str) -> Vec<String> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    MODELS.iter().map(|model| resolve(path, *model)).collect()
}

/// Whether every model resolves `path` under `prefix` (which ends in `/`).
pub fn resolves_under(path: &str, prefix: &str) -> bool {
    resolutions(path)
        .iter()
        .all(|resolved| resolved.starts_with(prefix))
}

fn resolve(path: &str, model: Model) -> String {
    let mut bytes = path.as_bytes().to_vec();
    if model.parameters == Parameters::DroppedBeforeDecoding {
        bytes = drop_parameters(&bytes);
    }
    for _ in 0..model.decodes {
        bytes = decode(&bytes);
    }
    if model.parameters == Parameters::DroppedAfterDecoding {
        bytes = drop_parameters(&bytes);
    }
    if model.backslash_separates {
        for byte in &mut bytes {
            if *byte == b'\\' {
                *byte = b'/';
            }
        }
    }
    remove_dot_segments(&String::from_utf8_lossy(&bytes), model.merges_slashes)
}

fn drop_parameters(path: &[u8]) -> Vec<u8> {
    let segments: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .map(|segment| segment.split(|&b| b == b';').next().unwrap_or_default())
        .collect();
    segments.join(&b'/')
}

/// One round of percent-decoding; a `%` not followed by two hex digits stays.
fn decode(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let hex = |at: usize| path.get(at).and_then(|&b| (b as char).to_digit(16));
        match (path[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// RFC 3986 section 5.2.4, on `/`-separated segments.
fn remove_dot_segments(path: &str, merges_slashes: bool) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "" if merges_slashes && i > 0 && !last => {}
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            other => out.push(other),
        }
    }
    let joined = out.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_resolve_to_themselves_under_every_model() {
        for path in [
            "/public/docs",
            "/public/a/b.html",
            "/public/x;v=1",
            "/public/%20a",
        ] {
            assert!(resolves_under(path, "/public/"), "{path}");
        }
        assert!(!resolves_under("/publicity", "/public/"));
        assert!(!resolves_under("/admin", "/public/"));
    }

    #[test]
    fn a_dot_segment_in_any_spelling_leaves_the_prefix_under_some_model() {
        for path in [
            "/public/../admin",
            "/public/..;/admin",
            "/public/..;jsessionid=1/admin",
            "/public/%2e%2e/admin",
            "/public/%2E%2E;x/admin",
            "/public/.%2e;/admin",
            "/public/%2e%2e%3b/admin",
            "/public/%252e%252e/admin",
            "/public\\..\\admin",
            "/public/%5c..%5cadmin",
            "/public/x/..;/..;/admin",
            "/public/..%2fadmin",
        ] {
            assert!(
                !resolves_under(path, "/public/"),
                "{path}: {:?}",
                resolutions(path)
            );
        }
    }

    #[test]
    fn the_query_is_not_part_of_the_path() {
        assert!(resolves_under("/public/x?next=../../admin", "/public/"));
        assert_eq!(resolutions("/a/./b/../c?d")[0], "/a/c");
        assert_eq!(resolutions("/a//b")[1], "/a/b", "nginx merges slashes");
    }
}
