//! `--limit` of the listings that print rows rather than pages (`keysync audit`,
//! `keysync alerts`): how many of the newest to print.

use super::CommandError;

/// Rows listed when `--limit` is not given.
pub const DEFAULT_LIMIT: u32 = 100;
/// The most rows one command lists.
pub const MAX_LIMIT: u32 = 10_000;

/// `--limit`: 1 to [`MAX_LIMIT`]; taken as text so a bad value is one line.
pub fn parse_limit(value: &str) -> Result<u32, CommandError> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
        .ok_or_else(|| CommandError::InvalidListLimit {
            value: value.to_owned(),
            max: MAX_LIMIT,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_run_from_one_to_ten_thousand() {
        assert_eq!(parse_limit("1").unwrap(), 1);
        assert_eq!(parse_limit(" 10000 ").unwrap(), 10_000);
        for bad in ["0", "10001", "-1", "many", ""] {
            let message = parse_limit(bad).unwrap_err().to_string();
            assert_eq!(
                message,
                format!("invalid --limit '{bad}': expected a whole number from 1 to 10000")
            );
        }
    }
}
