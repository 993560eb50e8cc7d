//! What a fault case reports: named figures, printed as the rows of a Markdown table so
//! that a run's output can go into RELIABILITY.md as it is, and printed before the case
//! checks its promises, so a failing run still says what it saw.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::Duration;

/// The figures of one case, in the order they were added.
pub struct Figures {
    case: String,
    rows: Vec<(String, String)>,
}

impl Figures {
    pub fn new(case: &str) -> Figures {
        Figures {
            case: case.to_string(),
            rows: Vec::new(),
        }
    }

    pub fn add(&mut self, name: &str, value: impl Display) {
        self.rows.push((name.to_string(), value.to_string()));
    }

    /// Prints the case's table on stdout.
    pub fn print(&self) {
        let mut text = format!(
            "\n#### {}\n\n| figure | value |\n| --- | --- |\n",
            self.case
        );
        for (name, value) in &self.rows {
            text.push_str(&format!("| {name} | {value} |\n"));
        }
        println!("{text}");
    }
}

/// The promises a case checks, all of them: a failing case says every promise it
/// broke, not only the first.
#[derive(Default)]
pub struct Verdict {
    broken: Vec<String>,
}

impl Verdict {
    pub fn new() -> Verdict {
        Verdict::default()
    }

    /// Notes `promise` as broken unless `kept`; `detail` says what was seen.
    pub fn check(&mut self, kept: bool, promise: &str, detail: impl FnOnce() -> String) {
        if !kept {
            self.broken.push(format!("BROKEN: {promise}\n{}", detail()));
        }
    }

    /// Panics with every broken promise, if any.
    pub fn finish(self, case: &str) {
        assert!(
            self.broken.is_empty(),
            "{case}: {} promise(s) broken:\n\n{}",
            self.broken.len(),
            self.broken.join("\n\n")
        );
    }
}

/// A duration for a table: milliseconds below 10 s, else seconds.
pub fn duration(value: Duration) -> String {
    if value < Duration::from_secs(10) {
        format!("{:.1} ms", value.as_secs_f64() * 1000.0)
    } else {
        format!("{:.1} s", value.as_secs_f64())
    }
}

/// Latency samples, summarised by nearest-rank percentiles.
#[derive(Default)]
pub struct Latencies {
    samples: Vec<Duration>,
}

impl Latencies {
    pub fn new() -> Latencies {
        Latencies::default()
    }

    pub fn push(&mut self, sample: Duration) {
        self.samples.push(sample);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The `p`-th percentile (0 to 100); zero without samples.
    pub fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        let Some(last) = sorted.len().checked_sub(1) else {
            return Duration::ZERO;
        };
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.saturating_sub(1).min(last)]
    }

    pub fn max(&self) -> Duration {
        self.samples.iter().copied().max().unwrap_or_default()
    }

    /// `n=…, p50 …, p99 …, max …`.
    pub fn summary(&self) -> String {
        format!(
            "n={}, p50 {}, p90 {}, p99 {}, max {}",
            self.samples.len(),
            duration(self.percentile(50.0)),
            duration(self.percentile(90.0)),
            duration(self.percentile(99.0)),
            duration(self.max()),
        )
    }
}

/// Counts of statuses (`None`: no answer), as `200: 1042, 403: 7, none: 1`.
pub fn statuses(seen: impl IntoIterator<Item = Option<u16>>) -> String {
    let mut counts: BTreeMap<Option<u16>, usize> = BTreeMap::new();
    for status in seen {
        *counts.entry(status).or_default() += 1;
    }
    if counts.is_empty() {
        return "none sent".to_string();
    }
    counts
        .iter()
        .map(|(status, count)| match status {
            Some(status) => format!("{status}: {count}"),
            None => format!("no answer: {count}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut latencies = Latencies::new();
        for ms in 1..=100 {
            latencies.push(Duration::from_millis(ms));
        }
        assert_eq!(latencies.percentile(50.0), Duration::from_millis(50));
        assert_eq!(latencies.percentile(99.0), Duration::from_millis(99));
        assert_eq!(latencies.max(), Duration::from_millis(100));
        assert_eq!(Latencies::new().percentile(99.0), Duration::ZERO);
    }

    #[test]
    fn statuses_are_counted_in_order() {
        assert_eq!(
            statuses([Some(403), Some(200), None, Some(200)]),
            "no answer: 1, 200: 2, 403: 1"
        );
        assert_eq!(statuses([]), "none sent");
    }
}
