//! What else the shared machine was doing while a figure was measured: its load average,
//! from /proc/loadavg, printed beside the figure.

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` has them (`4.66 2.65 1.14`).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| first_three(&text))
        .unwrap_or_else(|| "unknown".to_string())
}

fn first_three(loadavg: &str) -> String {
    loadavg
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_averages_are_kept() {
        assert_eq!(first_three("4.66 2.65 1.14 3/512 9999\n"), "4.66 2.65 1.14");
    }
}
