//! The median of a few rounds: one round disturbed by the shared machine does not move it.

/// The middle value of `values` once sorted (the upper one of the two middle values when
/// there is an even number), or `None` when there are none. Sorts `values` in place;
/// NaN sorts above every number.
pub fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(|x, y| x.total_cmp(y));
    values.get(values.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_values_have_no_median() {
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn the_middle_value_once_sorted() {
        assert_eq!(median(&mut [7.0]), Some(7.0));
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(3.0));
        assert_eq!(median(&mut [f64::NAN, 1.0, 2.0]), Some(2.0));
    }
}
