//! The median of a few rounds: one round disturbed by the shared machine does not move it.

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|x, y| x.total_cmp(y));
    values[values.len() / 2]
}
