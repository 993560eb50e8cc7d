//! Markdown as GitHub renders it, as far as links need: the anchors a file's headings
//! give it, and the links it makes, each with its line. Code (fenced blocks and inline
//! spans) is text, so a link written there is no link.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("a valid pattern")
}

/// An ATX heading (`## Text`, optionally closed by `#`s); group 1 is its text.
static ATX: LazyLock<Regex> =
    LazyLock::new(|| regex(r"^ {0,3}#{1,6}(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$"));
/// The underline of a setext heading.
static SETEXT: LazyLock<Regex> = LazyLock::new(|| regex(r"^ {0,3}(?:=+|-+)[ \t]*$"));
static LIST_ITEM: LazyLock<Regex> = LazyLock::new(|| regex(r"^(?:[-*+]|\d+[.)])(?:\s|$)"));
/// An inline link or image, whose text is group 1.
static INLINE_LINK: LazyLock<Regex> = LazyLock::new(|| regex(r"!?\[([^\]]*)\]\([^)]*\)"));
static HTML_TAG: LazyLock<Regex> = LazyLock::new(|| regex(r"<[^>]+>"));
/// An HTML element's `id` or `name`: an anchor.
static HTML_ANCHOR: LazyLock<Regex> =
    LazyLock::new(|| regex(r#"<[a-zA-Z][^>]*\s(?:id|name)\s*=\s*"([^"]+)""#));
/// A reference definition, `[label]: destination`.
static DEFINITION: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?m)^ {0,3}\[[^\]]+\]:[ \t]*<?([^\s>]+)>?"));
/// An HTML element's `href` or `src`: a link.
static HTML_LINK: LazyLock<Regex> =
    LazyLock::new(|| regex(r#"<[a-zA-Z][^>]*\s(?:href|src)\s*=\s*"([^"]+)""#));

/// A link's destination as written (`../docs/x.md#part`), and the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub line: usize,
    pub destination: String,
}

/// The anchors GitHub gives a file: one per heading (its slug; a repeated slug gets
/// `-1`, `-2`, ...), and the `id`s and `name`s of HTML elements.
pub fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = Vec::new();
    for heading in headings(text) {
        let base = slug(&heading);
        let count = seen.entry(base.clone()).or_insert(0);
        anchors.push(if *count == 0 {
            base
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    let prose = without_code(text);
    anchors.extend(HTML_ANCHOR.captures_iter(&prose).map(|c| c[1].to_owned()));
    anchors
}

/// GitHub's anchor for a heading's text: lower case, spaces to `-`, every character
/// that is not a letter, a digit, `-` or `_` dropped (github-slugger's rules).
pub fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The text of every heading, as rendered (code spans, links and emphasis reduced to
/// their text), in order.
fn headings(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let in_code = fenced_lines(&lines);
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if in_code[i] {
            continue;
        }
        if let Some(heading) = ATX.captures(line) {
            found.push(rendered(heading.get(1).map_or("", |m| m.as_str())));
        } else if SETEXT.is_match(line) && i > 0 && !in_code[i - 1] && is_paragraph(lines[i - 1]) {
            found.push(rendered(lines[i - 1]));
        }
    }
    found
}

/// Whether a line can be the text of a setext heading: a paragraph's line, not a list
/// item, a table row, a quote or another heading.
fn is_paragraph(line: &str) -> bool {
    let trimmed = line.trim_start();
    !trimmed.is_empty()
        && !trimmed.starts_with(['#', '|', '>'])
        && !LIST_ITEM.is_match(trimmed)
        && line.len() - trimmed.len() < 4
}

/// A heading's text as GitHub renders it: `code` and `[text](link)` become their text,
/// HTML tags and emphasis markers go.
fn rendered(heading: &str) -> String {
    let text = INLINE_LINK.replace_all(heading, "$1");
    let text = HTML_TAG.replace_all(&text, "");
    text.replace(['`', '*'], "")
}

/// Which lines are inside fenced code blocks (the fences included).
fn fenced_lines(lines: &[&str]) -> Vec<bool> {
    let mut inside: Vec<bool> = Vec::with_capacity(lines.len());
    let mut open: Option<(char, usize)> = None;
    for line in lines {
        let trimmed = line.trim_start();
        let fence = trimmed
            .chars()
            .next()
            .filter(|c| *c == '`' || *c == '~')
            .map(|c| (c, trimmed.chars().take_while(|d| *d == c).count()))
            .filter(|(_, length)| *length >= 3);
        match (open, fence) {
            (None, Some(fence)) => {
                open = Some(fence);
                inside.push(true);
            }
            (Some((c, length)), Some((d, closing)))
                if c == d && closing >= length && trimmed.trim_end().chars().all(|e| e == d) =>
            {
                open = None;
                inside.push(true);
            }
            (Some(_), _) => inside.push(true),
            (None, None) => inside.push(false),
        }
    }
    inside
}

/// The text with fenced blocks and inline code spans blanked out (newlines kept, so
/// offsets still give the right line).
fn without_code(text: &str) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    let in_code = fenced_lines(&lines);
    let prose: Vec<String> = lines
        .iter()
        .zip(in_code)
        .map(|(line, code)| {
            if code {
                String::new()
            } else {
                (*line).to_owned()
            }
        })
        .collect();
    blank_code_spans(&prose.join("\n"))
}

/// Replaces each inline code span (a run of backticks up to the next run of the same
/// length, within one paragraph) by spaces.
fn blank_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = chars.clone();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|c| **c == '`').count();
        let mut j = i + run;
        let mut closed = None;
        while j < chars.len() {
            if chars[j] == '\n' && paragraph_ends_at(&chars, j) {
                break;
            }
            if chars[j] == '`' {
                let other = chars[j..].iter().take_while(|c| **c == '`').count();
                if other == run {
                    closed = Some(j + run);
                    break;
                }
                j += other;
            } else {
                j += 1;
            }
        }
        match closed {
            Some(end) => {
                for c in out.iter_mut().take(end).skip(i) {
                    if *c != '\n' {
                        *c = ' ';
                    }
                }
                i = end;
            }
            None => i += run,
        }
    }
    out.into_iter().collect()
}

/// Whether the line after the newline at `at` is blank (a paragraph ends there).
fn paragraph_ends_at(chars: &[char], at: usize) -> bool {
    chars[at + 1..]
        .iter()
        .take_while(|c| **c != '\n')
        .all(|c| c.is_whitespace())
}

/// Every link the file makes: inline links and images (`[text](destination)`),
/// reference definitions (`[label]: destination`) and HTML `href`/`src` attributes.
pub fn links(text: &str) -> Vec<Link> {
    let prose = without_code(text);
    let line_of = |offset: usize| prose[..offset].matches('\n').count() + 1;
    let mut found = Vec::new();
    for (offset, _) in prose.match_indices("](") {
        if let Some(destination) = inline_destination(&prose[offset + 2..]) {
            found.push(Link {
                line: line_of(offset),
                destination,
            });
        }
    }
    for pattern in [&*DEFINITION, &*HTML_LINK] {
        for capture in pattern.captures_iter(&prose) {
            let whole = capture.get(1).expect("group 1 is not optional");
            found.push(Link {
                line: line_of(whole.start()),
                destination: whole.as_str().to_owned(),
            });
        }
    }
    found.sort_by_key(|link| link.line);
    found
}

/// The destination of an inline link, from just after its `(`: `<...>`, or up to the
/// first space or the `)` that closes the link (parentheses inside must balance).
fn inline_destination(rest: &str) -> Option<String> {
    let rest = rest.trim_start_matches([' ', '\t']);
    if let Some(bracketed) = rest.strip_prefix('<') {
        return bracketed.find('>').map(|end| bracketed[..end].to_owned());
    }
    let mut depth = 0usize;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(rest[..i].to_owned()),
            ')' => depth -= 1,
            c if c.is_whitespace() => return Some(rest[..i].to_owned()),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_githubs_rules() {
        assert_eq!(slug("Two commands"), "two-commands");
        assert_eq!(slug("ext_authz mode (no wasm)"), "ext_authz-mode-no-wasm");
        assert_eq!(
            slug("Rate limits: local or global"),
            "rate-limits-local-or-global"
        );
        assert_eq!(
            slug("What it costs, and where the filter reads a route's scopes"),
            "what-it-costs-and-where-the-filter-reads-a-routes-scopes"
        );
        assert_eq!(
            slug("Environment (make run, keysync, envoy/render.py)"),
            "environment-make-run-keysync-envoyrenderpy"
        );
        assert_eq!(slug("A  B"), "a--b", "every space becomes a hyphen");
    }

    #[test]
    fn repeated_headings_are_numbered_and_code_is_not_a_heading() {
        let text = "# Title\n\n## Part\n\n```sh\n# a comment\n```\n\n## Part\n\n## Part\n\
                    \nSetext\n------\n\n## `keysync` [links](x.md)\n<a id=\"here\"></a>\n";
        assert_eq!(
            anchors(text),
            [
                "title",
                "part",
                "part-1",
                "part-2",
                "setext",
                "keysync-links",
                "here"
            ]
        );
    }

    #[test]
    fn links_are_found_with_their_lines_outside_code() {
        let text = "See [a](docs/a.md#x) and ![i](img.png \"title\").\n\
                    `[not](code.md)` and\n\
                    ```\n[not](fenced.md)\n```\n\
                    [ref]: ../b.md\n\
                    <a href=\"c.md\">c</a> [p](wiki/A_(b)) [s](<with space.md>)\n";
        let found: Vec<(usize, String)> = links(text)
            .into_iter()
            .map(|link| (link.line, link.destination))
            .collect();
        let expected = [
            (1, "docs/a.md#x"),
            (1, "img.png"),
            (6, "../b.md"),
            (7, "wiki/A_(b)"),
            (7, "with space.md"),
            (7, "c.md"),
        ]
        .map(|(line, destination)| (line, destination.to_owned()));
        assert_eq!(found, expected);
    }

    #[test]
    fn a_code_span_may_cross_a_line_but_not_a_paragraph() {
        let text = "`a\n[not](x.md)` then\n\n` lone backtick\n\n[yes](y.md)\n";
        let destinations: Vec<String> = links(text).into_iter().map(|l| l.destination).collect();
        assert_eq!(destinations, ["y.md"]);
    }
}
