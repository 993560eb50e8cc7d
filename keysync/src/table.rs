//! Plain-text tables for the operator commands: left-aligned columns separated by two
//! spaces, readable in a terminal and easy to cut with `awk`.

/// Renders a header row and data rows. Widths count characters, not bytes, so names
/// with accents stay aligned.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (index, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if index > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let padding = width.saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', padding));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_and_lines_not_padded_at_the_end() {
        let text = render(
            &["ID", "NAME", "CREATED"],
            &[
                vec!["1".into(), "Ünïcode Org".into(), "2025".into()],
                vec!["22".into(), "b".into(), "2026".into()],
            ],
        );
        assert_eq!(
            text,
            "ID  NAME         CREATED\n\
             1   Ünïcode Org  2025\n\
             22  b            2026\n"
        );
    }

    #[test]
    fn empty_table_is_just_the_header() {
        assert_eq!(render(&["ID", "NAME"], &[]), "ID  NAME\n");
    }
}
