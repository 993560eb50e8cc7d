//! Which environment variables the project's code reads, found in its sources, each with
//! the line that reads it:
//! - Rust: `env::var("X")`, `env::var_os("X")`, the harness's `env_path("X")`, clap's
//!   `env = "X"`, names held in `const NAME: &str = "X_Y"`, any `"KEYSYNC_..."` literal,
//!   and `RUST_LOG` behind tracing's `from_default_env`;
//! - Python (`envoy/render.py`): `.get("X")`, `environ["X"]`, its `DEFAULTS`, the
//!   `values["X"]` it reads, and the `${X}` fields of the Envoy templates it does not
//!   fill itself;
//! - shell: `${X:-...}` and the like, and `$X` of a variable the script never sets;
//! - make: `X ?= ...` (a user may set it) and `export X` (handed to the tests).

use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::Regex;

/// A variable name: upper case, digits and underscores.
const NAME: &str = r"[A-Z][A-Z0-9_]*";

/// A pattern in which `{NAME}` stands for a variable's name.
fn pattern(text: &str) -> Regex {
    Regex::new(&text.replace("{NAME}", NAME)).expect("a valid pattern")
}

/// Rust: the calls, attributes, constants and literals that name a variable it reads.
static RUST_READS: LazyLock<[Regex; 4]> = LazyLock::new(|| {
    [
        pattern(r#"\b(?:var|var_os|env_path)\(\s*"({NAME})""#),
        pattern(r#"\benv\s*=\s*"({NAME})""#),
        pattern(
            r#"\bconst\s+{NAME}\s*:\s*&(?:'static\s+)?str\s*=\s*"([A-Z][A-Z0-9]*_[A-Z0-9_]+)""#,
        ),
        pattern(r#""(KEYSYNC_[A-Z0-9_]+)""#),
    ]
});
static PYTHON_GET: LazyLock<Regex> = LazyLock::new(|| pattern(r#"\.get\(\s*"({NAME})""#));
static PYTHON_ENVIRON: LazyLock<Regex> =
    LazyLock::new(|| pattern(r#"environ\[\s*"({NAME})"\s*\]"#));
static PYTHON_DEFAULT: LazyLock<Regex> = LazyLock::new(|| pattern(r#"(?m)^\s*"({NAME})"\s*:"#));
static PYTHON_VALUE: LazyLock<Regex> = LazyLock::new(|| pattern(r#"values\["({NAME})"\]"#));
/// `values["X"] = ...`, `values["X"], values["Y"] = ...`: group 1 holds the targets.
static PYTHON_ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    pattern(r#"(?m)^\s*((?:values\["{NAME}"\]\s*,\s*)*values\["{NAME}"\])\s*=[^=]"#)
});
static QUOTED_NAME: LazyLock<Regex> = LazyLock::new(|| pattern(r#""({NAME})""#));
/// `("X", ...)`: a name paired with what fills it.
static PYTHON_PAIR: LazyLock<Regex> = LazyLock::new(|| pattern(r#"\(\s*"({NAME})"\s*,"#));
static TEMPLATE_FIELD: LazyLock<Regex> = LazyLock::new(|| pattern(r"\$\{({NAME})\}"));
static SHELL_ASSIGNMENT: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"(?m)^\s*(?:export\s+|local\s+|readonly\s+)?({NAME})="));
/// `${X:-...}`, `${X-...}`, `${X:=...}`, `${X:?...}`: read, with a default or a check.
static SHELL_DEFAULTED: LazyLock<Regex> = LazyLock::new(|| pattern(r"\$\{({NAME}):?[-=?]"));
static SHELL_EXPANSION: LazyLock<Regex> = LazyLock::new(|| pattern(r"\$\{?({NAME})"));
static MAKE_OVERRIDABLE: LazyLock<Regex> = LazyLock::new(|| pattern(r"(?m)^({NAME})\s*\?="));
static MAKE_EXPORT: LazyLock<Regex> = LazyLock::new(|| pattern(r"(?m)^export\s+({NAME})"));
static MAKE_INCLUDE: LazyLock<Regex> = LazyLock::new(|| pattern(r"(?m)^-?include\s+(\S+)"));

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// The names that the first group of `pattern` matches in `text`, with their lines.
fn captures(text: &str, pattern: &Regex) -> Vec<(usize, String)> {
    pattern
        .captures_iter(text)
        .map(|capture| {
            let name = capture.get(1).expect("group 1 is not optional");
            (line_of(text, name.start()), name.as_str().to_owned())
        })
        .collect()
}

/// The variables a Rust source reads.
pub fn in_rust(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for rule in RUST_READS.iter() {
        found.extend(captures(text, rule));
    }
    for (offset, _) in text.match_indices("from_default_env") {
        found.push((line_of(text, offset), "RUST_LOG".to_owned()));
    }
    found
}

/// The variables `envoy/render.py` reads directly: `.get("X")`, `environ["X"]`, its
/// `DEFAULTS`, and `values["X"]` where it is not assigned.
pub fn in_python(text: &str) -> Vec<(usize, String)> {
    let mut found = captures(text, &PYTHON_GET);
    found.extend(captures(text, &PYTHON_ENVIRON));
    if let Some(start) = text.find("DEFAULTS = {") {
        let end = text[start..]
            .find("\n}")
            .map_or(text.len(), |end| start + end);
        found.extend(
            captures(&text[start..end], &PYTHON_DEFAULT)
                .into_iter()
                .map(|(line, name)| (line + line_of(text, start) - 1, name)),
        );
    }
    let written = filled_by_python(text);
    found.extend(
        captures(text, &PYTHON_VALUE)
            .into_iter()
            .filter(|(_, name)| !written.contains(name)),
    );
    found
}

/// The template fields `envoy/render.py` fills itself: `values["X"] = ...` (also in a
/// tuple assignment), and the `("X", ...)` pairs of a list it assigns from.
pub fn filled_by_python(text: &str) -> BTreeSet<String> {
    let mut filled: BTreeSet<String> = PYTHON_ASSIGNMENT
        .captures_iter(text)
        .flat_map(|capture| {
            QUOTED_NAME
                .captures_iter(&capture[1])
                .map(|n| n[1].to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    filled.extend(
        captures(text, &PYTHON_PAIR)
            .into_iter()
            .map(|(_, name)| name),
    );
    filled
}

/// The `${X}` fields of an Envoy template.
pub fn template_fields(text: &str) -> Vec<(usize, String)> {
    captures(text, &TEMPLATE_FIELD)
}

/// The variables a shell script reads from its environment: expansions with a default
/// or a check (`${X:-...}`, `${X-...}`, `${X:?...}`, `${X:=...}`), and any expansion of
/// a variable the script never assigns. Comment lines are skipped.
pub fn in_shell(text: &str) -> Vec<(usize, String)> {
    let code: String = text
        .split('\n')
        .map(|line| {
            if line.trim_start().starts_with('#') {
                ""
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let assigned: BTreeSet<String> = captures(&code, &SHELL_ASSIGNMENT)
        .into_iter()
        .map(|(_, name)| name)
        .collect();
    let mut found = captures(&code, &SHELL_DEFAULTED);
    found.extend(
        captures(&code, &SHELL_EXPANSION)
            .into_iter()
            .filter(|(_, name)| !assigned.contains(name)),
    );
    found
}

/// The variables a Makefile takes from its user or hands to the tests.
pub fn in_makefile(text: &str) -> Vec<(usize, String)> {
    let mut found = captures(text, &MAKE_OVERRIDABLE);
    found.extend(captures(text, &MAKE_EXPORT));
    found
}

/// The files a Makefile includes.
pub fn makefile_includes(text: &str) -> Vec<String> {
    captures(text, &MAKE_INCLUDE)
        .into_iter()
        .map(|(_, path)| path)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(found: Vec<(usize, String)>) -> Vec<String> {
        let mut names: Vec<String> = found.into_iter().map(|(_, name)| name).collect();
        names.sort();
        names.dedup();
        names
    }

    #[test]
    fn rust_reads_are_found_and_writes_and_compile_time_names_are_not() {
        let source = r#"
            pub const GRPC_ADDR: &str = "KEYSYNC_GRPC_ADDR";
            const NOT_A_NAME: &str = "info,sqlx=warn";
            let a = std::env::var("WRK_BIN");
            let b = env::var_os( "FAKETIME_LIB" );
            let c = env_path("KEYSYNC_BIN");
            #[arg(long, env = "DATABASE_URL")]
            let d = env!("CARGO_MANIFEST_DIR");
            command.env("LC_ALL", "C");
            let e = EnvFilter::try_from_default_env();
            env.push(("KEYSYNC_POLL_INTERVAL".into(), "1s".into()));
        "#;
        assert_eq!(
            names(in_rust(source)),
            [
                "DATABASE_URL",
                "FAKETIME_LIB",
                "KEYSYNC_BIN",
                "KEYSYNC_GRPC_ADDR",
                "KEYSYNC_POLL_INTERVAL",
                "RUST_LOG",
                "WRK_BIN"
            ]
        );
        assert!(
            in_rust(source).contains(&(2, "KEYSYNC_GRPC_ADDR".to_owned())),
            "lines count from 1"
        );
    }

    #[test]
    fn python_reads_defaults_and_gets_but_not_the_fields_it_fills() {
        let source = r#"
DEFAULTS = {
    "GATEWAY_PORT": "8080",
    "RATE_LIMIT_MODE": "local",
}
def render(template, env):
    token = values.get("KEYSYNC_GRPC_TOKEN")
    x = os.environ["SOMETHING_ELSE"]
    values["KEYSYNC_HOST"], values["KEYSYNC_PORT"] = host_port(values["KEYSYNC_GRPC_ADDR"])
    values["ROUTES"] = block(routes(values["BACKEND_URLS"]))
    for field, text in [("GLOBAL_RATE_LIMITS", GLOBAL)]:
        pass
    if values["ROUTES"] == "":
        pass
"#;
        assert_eq!(
            names(in_python(source)),
            [
                "BACKEND_URLS",
                "GATEWAY_PORT",
                "KEYSYNC_GRPC_ADDR",
                "KEYSYNC_GRPC_TOKEN",
                "RATE_LIMIT_MODE",
                "SOMETHING_ELSE"
            ]
        );
        let filled: Vec<String> = filled_by_python(source).into_iter().collect();
        assert_eq!(
            filled,
            [
                "GLOBAL_RATE_LIMITS",
                "KEYSYNC_HOST",
                "KEYSYNC_PORT",
                "ROUTES"
            ]
        );
        assert!(
            in_python(source).contains(&(3, "GATEWAY_PORT".to_owned())),
            "a default's line is its own"
        );
    }

    #[test]
    fn shell_reads_are_defaulted_expansions_and_variables_never_set() {
        let script = r#"#!/usr/bin/env bash
# A comment naming $NOT_READ
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KEYSYNC="${KEYSYNC_BIN:-$ROOT/target/debug/keysync}"
export GATEWAY_PORT="${GATEWAY_PORT:-8080}"
echo "$GATEWAY_PORT $ROOT $HOME_DIR ${pids[@]}"
[ -n "${DATABASE_URL:-}" ] || export DATABASE_URL=postgres://x
"#;
        assert_eq!(
            names(in_shell(script)),
            ["DATABASE_URL", "GATEWAY_PORT", "HOME_DIR", "KEYSYNC_BIN"]
        );
    }

    #[test]
    fn makefile_variables_are_the_overridable_and_the_exported() {
        let makefile = "CARGO ?= cargo\nVENV := .venv\nexport ENVOY_BIN := $(abspath x)\n\
                        include deploy/deploy.mk\n";
        assert_eq!(names(in_makefile(makefile)), ["CARGO", "ENVOY_BIN"]);
        assert_eq!(makefile_includes(makefile), ["deploy/deploy.mk"]);
    }

    #[test]
    fn template_fields_are_found() {
        let template = "address: ${GATEWAY_ADDRESS}\nport: ${GATEWAY_PORT}\n";
        assert_eq!(
            template_fields(template),
            [
                (1, "GATEWAY_ADDRESS".to_owned()),
                (2, "GATEWAY_PORT".to_owned())
            ]
        );
    }
}
