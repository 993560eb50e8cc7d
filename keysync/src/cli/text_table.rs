//! Plain-text tables for the operator commands: left-aligned columns separated by two
//! spaces, readable in a terminal and easy to cut with `awk`.

/// One column of a table of `T`s: its header and how a row shows in it, together so a
/// header and its cells cannot drift apart.
pub struct Column<T> {
    header: &'static str,
    cell: fn(&T) -> String,
}

impl<T> Column<T> {
    pub const fn new(header: &'static str, cell: fn(&T) -> String) -> Self {
        Column { header, cell }
    }
}

/// A table with one row per item.
pub fn table<T>(columns: &[Column<T>], items: &[T]) -> String {
    let headers: Vec<&str> = columns.iter().map(|column| column.header).collect();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| columns.iter().map(|column| (column.cell)(item)).collect())
        .collect();
    render(&headers, &rows)
}

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

    #[test]
    fn columns_turn_items_into_rows() {
        let columns: [Column<u32>; 2] = [
            Column::new("N", |n| n.to_string()),
            Column::new("SQUARE", |n| (n * n).to_string()),
        ];
        assert_eq!(table(&columns, &[3, 12]), "N   SQUARE\n3   9\n12  144\n");
    }
}
