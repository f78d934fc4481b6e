//! Prior correction (post-hoc logit adjustment, Menon et al. 2021, "Long-tail learning via
//! logit adjustment"): a model trained on a skewed year mix leans towards the common
//! decades; dividing its bin probabilities by the training share of each bin raised to a
//! strength τ, and renormalising, trades some top-1 on the common decades for recall on
//! the rare ones (τ = 1 targets balanced accuracy under the training mix; 0 changes
//! nothing). The strength is chosen on posters neither the model nor its test set holds.

use super::YearBins;

/// Bins rarer than this share of a uniform mix count as this rare, so a bin with almost
/// no training posters (the 1890s) cannot swamp every answer.
const FLOOR_OF_UNIFORM: f32 = 0.5;

/// The training mix of a model's year bins and how strongly predictions are corrected
/// for it (stored in `model.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PriorCorrection {
    /// Share of the training posters in each year bin.
    pub train_share: Vec<f32>,
    /// τ: each bin's probability is divided by `train_share^τ` (floored at half of a
    /// uniform share), then the bins are renormalised; 0 leaves predictions as they are.
    pub strength: f32,
}

impl PriorCorrection {
    /// The mix of `years` over `bins`, at `strength`.
    pub fn from_years(
        years: impl IntoIterator<Item = i32>,
        bins: &YearBins,
        strength: f32,
    ) -> Self {
        let mut counts = vec![0u64; bins.count];
        for y in years {
            counts[bins.bin(y)] += 1;
        }
        let total = counts.iter().sum::<u64>().max(1) as f32;
        Self {
            train_share: counts.iter().map(|&c| c as f32 / total).collect(),
            strength,
        }
    }

    /// The same mix at another strength.
    pub fn with_strength(&self, strength: f32) -> Self {
        Self {
            train_share: self.train_share.clone(),
            strength,
        }
    }

    /// Whether it changes anything.
    pub fn is_active(&self) -> bool {
        self.strength != 0.0
    }

    /// Corrects one poster's bin probabilities in place (left alone when the bin counts
    /// differ or nothing is left to normalise).
    pub fn apply(&self, probs: &mut [f32]) {
        if !self.is_active() || probs.len() != self.train_share.len() || probs.is_empty() {
            return;
        }
        let floor = FLOOR_OF_UNIFORM / probs.len() as f32;
        for (p, &s) in probs.iter_mut().zip(&self.train_share) {
            *p /= s.max(floor).powf(self.strength);
        }
        let sum: f32 = probs.iter().sum();
        if sum.is_finite() && sum > 0.0 {
            for p in probs.iter_mut() {
                *p /= sum;
            }
        }
    }

    /// Corrects many posters' bin probabilities in place ([`Self::apply`] on each).
    pub fn apply_all(&self, probs: &mut [Vec<f32>]) {
        if self.is_active() {
            for p in probs {
                self.apply(p);
            }
        }
    }

    /// Checks a strength given by a person: finite and within 0..=2.
    pub fn check_strength(strength: f32) -> Result<f32, String> {
        if strength.is_finite() && (0.0..=2.0).contains(&strength) {
            Ok(strength)
        } else {
            Err(format!("prior strength {strength} is not within 0 and 2"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bins() -> YearBins {
        YearBins {
            first: 1900,
            width: 10,
            count: 4,
        }
    }

    #[test]
    fn shares_follow_the_training_years() {
        let p = PriorCorrection::from_years([1901, 1915, 1915, 1932, 1999], &bins(), 1.0);
        assert_eq!(p.train_share, vec![0.2, 0.4, 0.0, 0.4]);
    }

    #[test]
    fn strength_zero_changes_nothing_and_one_evens_out_the_mix() {
        let p = PriorCorrection::from_years([1901, 1911, 1911, 1911, 1921, 1931], &bins(), 0.0);
        let raw = vec![0.1, 0.6, 0.15, 0.15];
        let mut same = raw.clone();
        p.apply(&mut same);
        assert_eq!(same, raw);
        // At strength 1 a model that only repeats the training mix answers uniformly.
        let mix: Vec<f32> = p.train_share.clone();
        let mut even = mix.clone();
        p.with_strength(1.0).apply(&mut even);
        for v in &even {
            assert!((v - 0.25).abs() < 1e-6, "{even:?}");
        }
        // In between, the rare bins gain and the common one loses, and it still sums to 1.
        let mut half = raw.clone();
        p.with_strength(0.5).apply(&mut half);
        assert!((half.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(half[1] < raw[1] && half[0] > raw[0] && half[2] > raw[2]);
    }

    #[test]
    fn empty_bins_are_floored_and_bad_input_is_left_alone() {
        // Bin 2 has no training posters: it gains like a bin at half a uniform share, not
        // without bound.
        let p = PriorCorrection::from_years([1901, 1911, 1931], &bins(), 1.0);
        let mut probs = vec![0.25; 4];
        p.apply(&mut probs);
        assert!(probs.iter().all(|v| v.is_finite()));
        let floor = 0.5 / 4.0;
        let expected = (1.0 / floor) / (3.0 / (1.0 / 3.0) + 1.0 / floor);
        assert!((probs[2] - expected).abs() < 1e-6, "{probs:?}");
        let mut wrong_len = vec![0.5, 0.5];
        p.apply(&mut wrong_len);
        assert_eq!(wrong_len, vec![0.5, 0.5]);
        assert!(PriorCorrection::check_strength(f32::NAN).is_err());
        assert!(PriorCorrection::check_strength(-0.1).is_err());
        assert_eq!(PriorCorrection::check_strength(0.7), Ok(0.7));
    }
}
