//! Repeated measurements and their summary (min / median / max).
//!
//! The machine is shared and noisy, so no figure is a single number: each is a set of repeated
//! runs, and what the report compares is the median (robust against the odd slow run that a
//! neighbour's fsync or a fuzzer causes), with min and max shown so the spread is visible.

use std::time::Duration;

/// Repeated measurements of one quantity, in one unit (milliseconds or megabytes).
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<f64>,
}

impl Samples {
    /// No samples yet.
    pub fn new() -> Self {
        Samples { values: Vec::new() }
    }

    /// Adds one value.
    pub fn push(&mut self, v: f64) {
        self.values.push(v);
    }

    /// Adds a duration, in milliseconds.
    pub fn push_ms(&mut self, d: Duration) {
        self.values.push(d.as_secs_f64() * 1e3);
    }

    /// How many values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// No values at all.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The smallest value (NaN when empty, which prints as "n/a").
    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    /// The largest value.
    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    /// The median (mean of the two middle values for an even count).
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// The raw values, in the order measured (for the JSON results).
    pub fn values(&self) -> &[f64] {
        &self.values
    }
}

/// Formats a value with a precision that suits its size.
pub fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "n/a".to_owned()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// `min / median / max`.
pub fn fmt_triple(s: &Samples) -> String {
    if s.is_empty() {
        return "n/a".to_owned();
    }
    format!(
        "{} / {} / {}",
        fmt_value(s.min()),
        fmt_value(s.median()),
        fmt_value(s.max())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let mut s = Samples::new();
        for v in [5.0, 1.0, 3.0] {
            s.push(v);
        }
        assert_eq!((s.min(), s.median(), s.max()), (1.0, 3.0, 5.0));
        s.push(7.0);
        assert_eq!(s.median(), 4.0);
        assert!(Samples::new().median().is_nan());
        assert_eq!(fmt_triple(&Samples::new()), "n/a");
    }
}
