//! Checks of training data before training: non-finite features, empty
//! inputs, labels out of range, and class balance.
//!
//! A model trained on a NaN feature or an out-of-range label fails late and
//! obscurely (a NaN loss at step 300, an index error deep in a kernel). These
//! checks run in one pass over the data before the first step and report every
//! problem with the row it is in.
//!
//! ```
//! use ember_runtime::data::DataCheck;
//!
//! let mut check = DataCheck::new(3);
//! check.features(0, &[0.5, 1.0]);
//! check.label(0, 2);
//! check.features(1, &[f32::NAN, 1.0]);
//! check.label(1, 5);
//! let report = check.finish();
//! assert_eq!(report.errors.len(), 2);
//! assert!(report.errors[0].contains("row 1"));
//! assert!(report.into_result().is_err());
//! ```

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::Error;

/// Most rows listed per kind of problem; the rest are counted.
const MAX_LISTED: usize = 5;

/// Accumulates what is seen in the data; [`DataCheck::finish`] turns it into
/// a [`DataReport`].
#[derive(Debug, Clone)]
pub struct DataCheck {
    num_classes: usize,
    rows: usize,
    non_finite: Vec<(usize, usize, f32)>,
    empty: Vec<usize>,
    out_of_range: Vec<(usize, i64)>,
    counts: Vec<usize>,
    imbalance_warning: f64,
}

impl DataCheck {
    /// Checks for a task with `num_classes` classes (0 for regression: no
    /// label checks).
    pub fn new(num_classes: usize) -> Self {
        Self {
            num_classes,
            rows: 0,
            non_finite: Vec::new(),
            empty: Vec::new(),
            out_of_range: Vec::new(),
            counts: vec![0; num_classes],
            imbalance_warning: 10.0,
        }
    }

    /// Warns when the largest class has more than `ratio` times the examples
    /// of the smallest (default 10).
    pub fn with_imbalance_warning(mut self, ratio: f64) -> Self {
        self.imbalance_warning = ratio;
        self
    }

    fn see(&mut self, row: usize) {
        self.rows = self.rows.max(row + 1);
    }

    /// The features of `row`: every value must be finite and there must be at
    /// least one.
    pub fn features(&mut self, row: usize, values: &[f32]) {
        self.see(row);
        if values.is_empty() {
            self.empty.push(row);
        }
        if let Some((col, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            self.non_finite.push((row, col, *v));
        }
    }

    /// The length of a variable-length input of `row` (text: characters or
    /// tokens); zero is an error.
    pub fn input_len(&mut self, row: usize, len: usize) {
        self.see(row);
        if len == 0 {
            self.empty.push(row);
        }
    }

    /// The class label of `row`.
    pub fn label(&mut self, row: usize, label: i64) {
        self.see(row);
        if self.num_classes == 0 {
            return;
        }
        match usize::try_from(label) {
            Ok(l) if l < self.num_classes => self.counts[l] += 1,
            _ => self.out_of_range.push((row, label)),
        }
    }

    /// The report.
    pub fn finish(self) -> DataReport {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        if self.rows == 0 {
            errors.push(String::from("no rows"));
        }
        let list = |n: usize, items: Vec<String>| {
            let mut s = items
                .into_iter()
                .take(MAX_LISTED)
                .collect::<Vec<_>>()
                .join(", ");
            if n > MAX_LISTED {
                s.push_str(&format!(" and {} more", n - MAX_LISTED));
            }
            s
        };
        if !self.non_finite.is_empty() {
            let n = self.non_finite.len();
            let items = self
                .non_finite
                .iter()
                .map(|(r, c, v)| format!("row {r} column {c} is {v}"))
                .collect();
            errors.push(format!(
                "{n} rows with non-finite features: {}",
                list(n, items)
            ));
        }
        if !self.empty.is_empty() {
            let n = self.empty.len();
            let items = self.empty.iter().map(|r| format!("row {r}")).collect();
            errors.push(format!("{n} empty inputs: {}", list(n, items)));
        }
        if !self.out_of_range.is_empty() {
            let n = self.out_of_range.len();
            let items = self
                .out_of_range
                .iter()
                .map(|(r, l)| format!("row {r} has label {l}"))
                .collect();
            errors.push(format!(
                "{n} labels outside 0..{}: {}",
                self.num_classes,
                list(n, items)
            ));
        }
        if self.num_classes > 0 && self.rows > 0 {
            let missing: Vec<String> = self
                .counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c == 0)
                .map(|(i, _)| format!("{i}"))
                .collect();
            if !missing.is_empty() {
                warnings.push(format!("classes without examples: {}", missing.join(", ")));
            }
            let max = self.counts.iter().copied().max().unwrap_or(0);
            let min = self
                .counts
                .iter()
                .copied()
                .filter(|c| *c > 0)
                .min()
                .unwrap_or(0);
            if min > 0 && max as f64 > self.imbalance_warning * min as f64 {
                warnings.push(format!(
                    "class imbalance: the largest class has {max} examples, the smallest {min} (more than {}×); consider class weights or resampling",
                    self.imbalance_warning
                ));
            }
        }
        DataReport {
            rows: self.rows,
            class_counts: self.counts,
            errors,
            warnings,
        }
    }
}

/// The outcome of a [`DataCheck`].
#[derive(Debug, Clone, PartialEq)]
pub struct DataReport {
    /// Rows seen.
    pub rows: usize,
    /// Examples per class.
    pub class_counts: Vec<usize>,
    /// Problems that make training meaningless (one line each).
    pub errors: Vec<String>,
    /// Problems worth knowing about.
    pub warnings: Vec<String>,
}

impl DataReport {
    /// Whether there are no errors.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// The report itself when there are no errors, otherwise [`Error::Data`]
    /// listing them.
    pub fn into_result(self) -> Result<Self, Error> {
        if self.is_ok() {
            Ok(self)
        } else {
            Err(Error::Data {
                problems: self.errors,
            })
        }
    }
}

impl fmt::Display for DataReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rows", self.rows)?;
        if !self.class_counts.is_empty() {
            let counts: Vec<String> = self.class_counts.iter().map(|c| format!("{c}")).collect();
            write!(f, ", per class [{}]", counts.join(", "))?;
        }
        for e in &self.errors {
            write!(f, "\n  error: {e}")?;
        }
        for w in &self.warnings {
            write!(f, "\n  warning: {w}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_data_passes_and_counts_classes() {
        let mut c = DataCheck::new(2);
        for r in 0..4 {
            c.features(r, &[r as f32]);
            c.label(r, (r % 2) as i64);
        }
        let report = c.finish();
        assert!(report.is_ok() && report.warnings.is_empty(), "{report}");
        assert_eq!(report.class_counts, vec![2, 2]);
    }

    #[test]
    fn every_kind_of_problem_is_named_with_its_row() {
        let mut c = DataCheck::new(3).with_imbalance_warning(2.0);
        c.features(0, &[1.0, f32::INFINITY]);
        c.label(0, 0);
        c.features(1, &[]);
        c.label(1, 0);
        c.input_len(2, 0);
        c.label(2, -1);
        for r in 3..10 {
            c.features(r, &[1.0]);
            c.label(r, 0);
        }
        c.label(10, 1);
        let report = c.finish();
        let text = format!("{report}");
        assert!(text.contains("row 0 column 1 is inf"), "{text}");
        assert!(text.contains("2 empty inputs: row 1, row 2"), "{text}");
        assert!(text.contains("row 2 has label -1"), "{text}");
        assert!(text.contains("classes without examples: 2"), "{text}");
        assert!(text.contains("class imbalance"), "{text}");
        assert!(
            matches!(report.into_result(), Err(Error::Data { problems }) if problems.len() == 3)
        );
    }

    #[test]
    fn long_lists_are_cut() {
        let mut c = DataCheck::new(0);
        for r in 0..20 {
            c.features(r, &[f32::NAN]);
        }
        let report = c.finish();
        assert!(report.errors[0].contains("and 15 more"), "{report}");
    }
}
