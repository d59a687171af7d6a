//! The result table: one row per figure, our measurement next to its baseline from the same
//! run, their ratio, the target and whether it is met; printed as text, and written as
//! Markdown (pasted into BENCHMARKS.md) and JSON (every raw value, for comparing runs).

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::stats::{Samples, fmt_triple, fmt_value};

/// What a row must achieve. Every check compares medians: the spread is shown, not judged.
#[derive(Debug, Clone)]
pub enum Target {
    /// Our median at most this many times the baseline's.
    RatioAtMost(f64),
    /// Our median below the baseline's.
    FasterThanBaseline,
    /// Our median at most the baseline's.
    NotSlower,
    /// The median of the per-run excess over the baseline (same runs, paired) at most this.
    ExcessAtMost(f64),
    /// Our median below this absolute value (in the row's unit).
    Below(f64),
    /// No target: the row is there to explain another.
    Info,
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// "1", "2", "4 (1000)": the figure number.
    pub figure: String,
    /// What is measured, in a few words.
    pub what: String,
    /// Unit of `ours` and `baseline`: "ms" or "MB".
    pub unit: &'static str,
    /// Our samples.
    pub ours: Samples,
    /// What the baseline is.
    pub baseline_name: String,
    /// The baseline's samples, measured in the same run.
    pub baseline: Samples,
    /// Per-run `ours - baseline` when the two are paired (figure 2), for [`Target::ExcessAtMost`].
    pub excess: Option<Samples>,
    /// The target.
    pub target: Target,
    /// The measurement of ours could not be made at all (the reason): the target is missed.
    pub failure: Option<String>,
    /// A short remark (counts, conditions).
    pub note: String,
}

impl Row {
    /// Median of ours over median of the baseline.
    pub fn ratio(&self) -> f64 {
        self.ours.median() / self.baseline.median()
    }

    /// The target in words.
    pub fn target_text(&self) -> String {
        match &self.target {
            Target::RatioAtMost(r) => format!("<= {r}x baseline"),
            Target::FasterThanBaseline => "faster than baseline".to_owned(),
            Target::NotSlower => "no slower than baseline".to_owned(),
            Target::ExcessAtMost(x) => format!("<= baseline + {x} {}", self.unit),
            Target::Below(x) => format!("< {x} {}", self.unit),
            Target::Info => "-".to_owned(),
        }
    }

    /// `Some(true)` met, `Some(false)` missed, `None` no target (or nothing measured).
    pub fn met(&self) -> Option<bool> {
        if self.failure.is_some() && !matches!(self.target, Target::Info) {
            return Some(false);
        }
        let ours = self.ours.median();
        let base = self.baseline.median();
        let met = match &self.target {
            Target::RatioAtMost(r) => ours / base <= *r,
            Target::FasterThanBaseline => ours < base,
            Target::NotSlower => ours <= base,
            Target::ExcessAtMost(x) => match &self.excess {
                Some(e) => e.median() <= *x,
                None => ours - base <= *x,
            },
            Target::Below(x) => ours < *x,
            Target::Info => return None,
        };
        if ours.is_nan() { None } else { Some(met) }
    }

    fn met_text(&self) -> &'static str {
        match (&self.target, self.met()) {
            (Target::Info, _) => "-",
            (_, None) => "n/a",
            (_, Some(true)) => "yes",
            (_, Some(false)) => "NO",
        }
    }

    fn cells(&self) -> [String; 9] {
        [
            self.figure.clone(),
            self.what.clone(),
            match &self.failure {
                Some(_) => "FAILED".to_owned(),
                None => format!("{} {}", fmt_triple(&self.ours), self.unit),
            },
            self.baseline_name.clone(),
            if self.baseline.is_empty() {
                "-".to_owned()
            } else {
                format!("{} {}", fmt_triple(&self.baseline), self.unit)
            },
            if self.baseline.is_empty() || self.ours.is_empty() {
                "-".to_owned()
            } else {
                format!("{}x", fmt_value(self.ratio()))
            },
            self.target_text(),
            self.met_text().to_owned(),
            match &self.failure {
                Some(why) => format!("failed: {why}; {}", self.note),
                None => self.note.clone(),
            },
        ]
    }

    fn to_json(&self) -> Value {
        json!({
            "figure": self.figure,
            "what": self.what,
            "unit": self.unit,
            "ours": self.ours.values(),
            "baselineName": self.baseline_name,
            "baseline": self.baseline.values(),
            "excess": self.excess.as_ref().map(|e| e.values().to_vec()),
            "ratio": self.ratio(),
            "target": self.target_text(),
            "met": self.met(),
            "failure": self.failure,
            "note": self.note,
        })
    }
}

const HEADER: [&str; 9] = [
    "fig",
    "measure",
    "ours min / median / max",
    "baseline",
    "baseline min / median / max",
    "ratio",
    "target",
    "met?",
    "note",
];

/// The table as aligned plain text for the terminal.
pub fn text_table(rows: &[Row]) -> String {
    let cells: Vec<[String; 9]> = rows.iter().map(Row::cells).collect();
    let mut widths: Vec<usize> = HEADER.iter().map(|h| h.len()).collect();
    for r in &cells {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cols: &[String]| {
        let parts: Vec<String> = cols
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", parts.join(" | ").trim_end());
    };
    line(
        &mut out,
        &HEADER.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
    );
    let _ = writeln!(
        out,
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
    );
    for r in &cells {
        line(&mut out, r);
    }
    out
}

/// The table in Markdown, for BENCHMARKS.md.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut out = format!("| {} |\n", HEADER.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(HEADER.len()));
    for r in rows {
        let cells = r.cells().map(|c| c.replace('|', "\\|"));
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// Every row with its raw values.
pub fn json_rows(rows: &[Row]) -> Value {
    Value::Array(rows.iter().map(Row::to_json).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(v: &[f64]) -> Samples {
        let mut s = Samples::new();
        for x in v {
            s.push(*x);
        }
        s
    }

    fn row(ours: &[f64], base: &[f64], target: Target) -> Row {
        Row {
            figure: "1".into(),
            what: "x".into(),
            unit: "ms",
            ours: samples(ours),
            baseline_name: "b".into(),
            baseline: samples(base),
            excess: None,
            target,
            failure: None,
            note: String::new(),
        }
    }

    #[test]
    fn targets_compare_medians() {
        assert_eq!(
            row(&[1.0, 3.0, 100.0], &[2.0], Target::RatioAtMost(1.5)).met(),
            Some(true)
        );
        assert_eq!(
            row(&[4.0], &[2.0], Target::RatioAtMost(1.5)).met(),
            Some(false)
        );
        assert_eq!(
            row(&[2.0], &[2.0], Target::FasterThanBaseline).met(),
            Some(false)
        );
        assert_eq!(row(&[2.0], &[2.0], Target::NotSlower).met(), Some(true));
        assert_eq!(
            row(&[2.5], &[2.0], Target::ExcessAtMost(1.0)).met(),
            Some(true)
        );
        assert_eq!(row(&[60.0], &[], Target::Below(50.0)).met(), Some(false));
        assert_eq!(row(&[60.0], &[], Target::Info).met(), None);
        assert_eq!(row(&[], &[1.0], Target::NotSlower).met(), None);
        let mut failed = row(&[], &[1.0], Target::Below(50.0));
        failed.failure = Some("too big".into());
        assert_eq!(failed.met(), Some(false));
        assert!(markdown_table(&[failed]).contains("FAILED"));
    }

    #[test]
    fn tables_have_one_line_per_row() {
        let rows = vec![row(&[1.0], &[2.0], Target::NotSlower)];
        assert_eq!(text_table(&rows).lines().count(), 3);
        assert_eq!(markdown_table(&rows).lines().count(), 3);
    }
}
