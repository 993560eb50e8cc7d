//! The documentation checked against the tree, as part of `make test`:
//! - every relative link in every Markdown file of the repository leads to a file or
//!   folder that exists, and every `#anchor` to a heading (or an HTML `id`) of that
//!   file, by GitHub's rules (lower case, spaces to `-`, punctuation dropped, repeats
//!   numbered `-1`, `-2`);
//! - every document in `docs/` is linked from the README;
//! - every environment variable the code reads is listed in a table of
//!   `docs/configuration.md` (the users' or the one "for tests and benchmarks"), and
//!   every variable listed there is read by some code.
//!
//! `docs/markdown.rs` says what a link and an anchor are, `docs/env_reads.rs` what
//! counts as reading a variable. A failure names the file, the line, and the link or
//! the variable. No process is started: these read files only.

// Helpers outside `#[test]` functions report a broken expectation by panicking too.
#![allow(clippy::expect_used)]

#[path = "docs/env_reads.rs"]
mod env_reads;
#[path = "docs/markdown.rs"]
mod markdown;
#[path = "docs/source_tree.rs"]
mod source_tree;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

use keysync_e2e::paths::workspace_root;
use source_tree::{has_extension, normalized};

/// A GitHub line anchor (`#L10`, `#L10-L20`), the only kind a non-Markdown file has.
static LINE_ANCHOR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^L\d+(?:-L\d+)?$").expect("a valid pattern"));
/// A URL scheme (`https:`, `mailto:`): an external link.
static SCHEME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z][a-zA-Z0-9+.-]*:").expect("a valid pattern"));
/// A table row whose first cell is a variable's name.
static VARIABLE_ROW: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|").expect("a valid pattern"));

/// The document whose tables list every variable.
const CONFIGURATION: &str = "docs/configuration.md";

/// Set by the operating system, not by anyone configuring or testing keysync.
const SYSTEM_VARIABLES: [&str; 2] = ["HOME", "PATH"];

/// The sources scanned for variables: not `deploy/`, which documents its own settings
/// (`deploy/README.md`, the chart's values), nor this check, whose tests hold examples.
fn scanned(path: &Path) -> bool {
    !path.starts_with("deploy")
        && !path.starts_with("e2e/tests/docs")
        && path != Path::new("e2e/tests/docs.rs")
}

fn read(root: &Path, path: &Path) -> String {
    fs::read_to_string(root.join(path))
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

#[test]
fn every_relative_link_and_anchor_in_the_markdown_resolves() {
    let root = workspace_root();
    let mut anchors = AnchorCache::default();
    let mut broken = Vec::new();
    let documents = source_tree::files(&root, |path| has_extension(path, "md"));
    assert!(
        documents.len() >= 2,
        "found only {documents:?}: the walk of the tree is broken"
    );
    for document in &documents {
        for link in markdown::links(&read(&root, document)) {
            if let Err(problem) = resolve(&root, document, &link.destination, &mut anchors) {
                broken.push(format!(
                    "{}:{}: link ({}): {problem}",
                    document.display(),
                    link.line,
                    link.destination
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "{} broken links in the Markdown:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn every_document_in_docs_is_linked_from_the_readme() {
    let root = workspace_root();
    let readme = Path::new("README.md");
    let linked: BTreeSet<PathBuf> = markdown::links(&read(&root, readme))
        .into_iter()
        .filter_map(|link| target(readme, &link.destination).map(|(path, _)| path))
        .collect();
    let documents = source_tree::files(&root, |path| {
        path.starts_with("docs") && has_extension(path, "md")
    });
    assert!(!documents.is_empty(), "no documents found under docs/");
    let unlinked: Vec<String> = documents
        .iter()
        .filter(|document| !linked.contains(*document))
        .map(|document| format!("{} is not linked from README.md", document.display()))
        .collect();
    assert!(unlinked.is_empty(), "{}", unlinked.join("\n"));
}

#[test]
fn every_environment_variable_the_code_reads_is_in_the_configuration_table() {
    let root = workspace_root();
    let listed = listed_variables(&root);
    let unlisted: Vec<String> = variables_read(&root)
        .into_iter()
        .filter(|(name, _)| !listed.contains_key(name))
        .map(|(name, places)| {
            format!(
                "{}: {name} is read here, but {CONFIGURATION} lists it in neither table",
                places.join(", ")
            )
        })
        .collect();
    assert!(
        unlisted.is_empty(),
        "{} variables missing from {CONFIGURATION}:\n{}",
        unlisted.len(),
        unlisted.join("\n")
    );
}

#[test]
fn every_variable_in_the_configuration_table_is_read_by_the_code() {
    let root = workspace_root();
    let read = variables_read(&root);
    let mut problems = Vec::new();
    for (name, lines) in listed_variables(&root) {
        if lines.len() > 1 {
            problems.push(format!(
                "{CONFIGURATION}:{}: {name} is listed {} times (lines {lines:?}): one row each",
                lines[0],
                lines.len()
            ));
        }
        if !read.contains_key(&name) {
            problems.push(format!(
                "{CONFIGURATION}:{}: {name} is listed, but no code reads it (gone from the \
                 code, or read in a way e2e/tests/docs/env_reads.rs does not know)",
                lines[0]
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The anchors of each Markdown file, read once.
#[derive(Default)]
struct AnchorCache(HashMap<PathBuf, Vec<String>>);

impl AnchorCache {
    fn of(&mut self, root: &Path, document: &Path) -> &[String] {
        self.0
            .entry(document.to_path_buf())
            .or_insert_with(|| markdown::anchors(&read(root, document)))
    }
}

/// Checks one link of `document`: external links pass (they are not checked); a
/// relative one must lead to something in the repository, and its anchor to a heading.
fn resolve(
    root: &Path,
    document: &Path,
    destination: &str,
    anchors: &mut AnchorCache,
) -> Result<(), String> {
    if is_external(destination) {
        return Ok(());
    }
    let (path, anchor) =
        target(document, destination).ok_or_else(|| "leads outside the repository".to_owned())?;
    let full = root.join(&path);
    if !full.exists() {
        return Err(format!("no such file: {}", path.display()));
    }
    let Some(anchor) = anchor.filter(|anchor| !anchor.is_empty()) else {
        return Ok(());
    };
    if full.is_dir() {
        return Err(format!(
            "#{anchor} points into a folder ({})",
            path.display()
        ));
    }
    if has_extension(&path, "md") {
        if anchors.of(root, &path).contains(&anchor) {
            return Ok(());
        }
        return Err(format!(
            "no heading of {} has the anchor #{anchor}",
            path.display()
        ));
    }
    if LINE_ANCHOR.is_match(&anchor) {
        Ok(())
    } else {
        Err(format!(
            "#{anchor}: {} is not Markdown, only #L<line> anchors work there",
            path.display()
        ))
    }
}

/// `https:`, `mailto:` and the like, and `//host/...`.
fn is_external(destination: &str) -> bool {
    SCHEME.is_match(destination) || destination.starts_with("//")
}

/// Where a relative link of `document` leads: the file's path from the repository root
/// (`/x` counts from the root, as on GitHub; an empty path is the document itself) and
/// the anchor, both percent-decoded. `None` when it climbs out of the repository.
fn target(document: &Path, destination: &str) -> Option<(PathBuf, Option<String>)> {
    let (path, anchor) = match destination.split_once('#') {
        Some((path, anchor)) => (path, Some(percent_decoded(anchor))),
        None => (destination, None),
    };
    let path = path.split('?').next().unwrap_or_default();
    let path = percent_decoded(path);
    let joined = if path.is_empty() {
        document.to_path_buf()
    } else if let Some(from_root) = path.strip_prefix('/') {
        PathBuf::from(from_root)
    } else {
        document.parent().unwrap_or(Path::new("")).join(path)
    };
    normalized(&joined).map(|path| (path, anchor))
}

/// `%20` and the like turned back into the characters they stand for.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every variable named in the first cell of a table row of `docs/configuration.md`,
/// with the lines it is listed on.
fn listed_variables(root: &Path) -> BTreeMap<String, Vec<usize>> {
    let text = read(root, Path::new(CONFIGURATION));
    let mut listed: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(name) = VARIABLE_ROW.captures(line) {
            listed.entry(name[1].to_owned()).or_default().push(i + 1);
        }
    }
    assert!(
        listed.len() > 10,
        "{CONFIGURATION} lists only {listed:?}: its tables are no longer read right"
    );
    listed
}

/// Every variable the code reads, with the places (`file:line`) that read it.
fn variables_read(root: &Path) -> BTreeMap<String, Vec<String>> {
    let mut reads: Vec<(PathBuf, usize, String)> = Vec::new();
    let mut scan = |path: &Path, found: Vec<(usize, String)>| {
        reads.extend(
            found
                .into_iter()
                .map(|(line, name)| (path.to_path_buf(), line, name)),
        );
    };
    let sources = source_tree::files(root, scanned);
    for path in &sources {
        if has_extension(path, "rs") {
            scan(path, env_reads::in_rust(&read(root, path)));
        } else if has_extension(path, "py") {
            scan(path, env_reads::in_python(&read(root, path)));
        } else if has_extension(path, "sh") {
            scan(path, env_reads::in_shell(&read(root, path)));
        }
    }
    // The Envoy templates: render.py fills their fields from the environment, but for
    // those it computes itself.
    let render = Path::new("envoy/render.py");
    let filled = env_reads::filled_by_python(&read(root, render));
    for path in sources
        .iter()
        .filter(|path| path.starts_with("envoy") && has_extension(path, "yaml"))
    {
        let fields = env_reads::template_fields(&read(root, path))
            .into_iter()
            .filter(|(_, name)| !filled.contains(name))
            .collect();
        scan(path, fields);
    }
    let makefile = Path::new("Makefile");
    let text = read(root, makefile);
    scan(makefile, env_reads::in_makefile(&text));
    for included in env_reads::makefile_includes(&text) {
        let path = PathBuf::from(included);
        scan(&path, env_reads::in_makefile(&read(root, &path)));
    }

    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, line, name) in reads {
        if SYSTEM_VARIABLES.contains(&name.as_str()) {
            continue;
        }
        let place = format!("{}:{line}", path.display());
        let places = by_name.entry(name).or_default();
        if !places.contains(&place) {
            places.push(place);
        }
    }
    assert!(
        by_name.contains_key("DATABASE_URL") && by_name.contains_key("KEYSYNC_GRPC_ADDR"),
        "the scan of the sources found {:?}: it no longer finds what keysync reads",
        by_name.keys().collect::<Vec<_>>()
    );
    by_name
}
