//! The statistics of an A/B run: the median round with its min–max spread, ratios
//! against a baseline, and the noise rule that says whether a difference counts.
//!
//! Pure arithmetic on numbers the harness measured; it must never measure, print or
//! decide what to run.

use serde::Serialize;

/// The rule printed in every report: how "significant" is decided.
pub const NOISE_RULE: &str = "a difference is \"significant\" only when the min–max ranges over the rounds \
     of the two subjects do not overlap (and there are at least 2 rounds); otherwise it is \"within noise\". \
     Ratios are median(subject) / median(baseline).";

/// The median and range of one figure over the rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// Median over the rounds (mean of the two middle values for an even count).
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// How many rounds it summarises.
    pub n: usize,
}

impl Spread {
    /// Summarises `values`, ignoring NaN (figures that could not be measured);
    /// `None` when nothing is left.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Spread { median: median_sorted(&v), min: v[0], max: v[v.len() - 1], n: v.len() })
    }

    /// Whether the two min–max ranges share at least one value.
    pub fn overlaps(&self, other: &Spread) -> bool {
        self.min <= other.max && other.min <= self.max
    }
}

/// The median of already sorted values.
fn median_sorted(v: &[f64]) -> f64 {
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// The median of `values` (NaN ignored); NaN when there are none.
pub fn median(values: &[f64]) -> f64 {
    Spread::of(values).map_or(f64::NAN, |s| s.median)
}

/// Whether a difference against the baseline counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The min–max ranges do not overlap.
    Significant,
    /// The ranges overlap: the difference is run-to-run noise.
    WithinNoise,
    /// Fewer than two rounds on one side: no range to judge by.
    TooFewRounds,
}

impl Verdict {
    /// The words printed in tables.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Significant => "significant",
            Verdict::WithinNoise => "within noise",
            Verdict::TooFewRounds => "1 round: not judged",
        }
    }
}

/// A subject's figure compared with the baseline's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Comparison {
    /// median(subject) / median(baseline).
    pub ratio: f64,
    /// Whether the difference counts (see [`NOISE_RULE`]).
    pub verdict: Verdict,
}

/// Compares `subject` with `baseline` under [`NOISE_RULE`]. `None` when the
/// baseline's median is zero (no ratio).
pub fn compare(subject: &Spread, baseline: &Spread) -> Option<Comparison> {
    if baseline.median == 0.0 {
        return None;
    }
    let verdict = if subject.n < 2 || baseline.n < 2 {
        Verdict::TooFewRounds
    } else if subject.overlaps(baseline) {
        Verdict::WithinNoise
    } else {
        Verdict::Significant
    };
    Some(Comparison { ratio: subject.median / baseline.median, verdict })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[7.0]), 7.0);
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[f64::NAN, 5.0, 1.0]), 3.0);
    }

    #[test]
    fn spread_has_min_and_max() {
        let s = Spread::of(&[10.0, 30.0, 20.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (20.0, 10.0, 30.0, 3));
        assert!(Spread::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn overlap_is_symmetric_and_inclusive() {
        let a = Spread::of(&[1.0, 2.0, 3.0]).unwrap();
        let b = Spread::of(&[3.0, 4.0, 5.0]).unwrap();
        let c = Spread::of(&[3.5, 4.0, 5.0]).unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c) && !c.overlaps(&a));
    }

    #[test]
    fn significance_needs_disjoint_ranges_and_two_rounds() {
        let base = Spread::of(&[100.0, 110.0, 105.0]).unwrap();
        let faster = Spread::of(&[120.0, 130.0, 125.0]).unwrap();
        let noisy = Spread::of(&[90.0, 150.0, 125.0]).unwrap();
        let c = compare(&faster, &base).unwrap();
        assert_eq!(c.verdict, Verdict::Significant);
        assert!((c.ratio - 125.0 / 105.0).abs() < 1e-12);
        assert_eq!(compare(&noisy, &base).unwrap().verdict, Verdict::WithinNoise);
        let single = Spread::of(&[200.0]).unwrap();
        assert_eq!(compare(&single, &base).unwrap().verdict, Verdict::TooFewRounds);
        let zero = Spread::of(&[0.0, 0.0]).unwrap();
        assert!(compare(&faster, &zero).is_none());
    }
}
