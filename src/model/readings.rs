//! Two readings of one poster: when the year distribution has two separated modes, the
//! poster's art points to one decade and something else in it to another. The common case
//! is an old film's later poster (DVD, Criterion or re-release art): it looks like the
//! 2010s, while posters like it are often of films from decades before; the other way
//! round it is a newer film in a retro style.

/// Least probability the second reading must hold to be worth saying.
pub const MIN_SHARE: f64 = 0.12;

/// The valley between the two modes may hold at most this share of the smaller mode's
/// peak decade: the modes are separated, not one broad hump.
pub const MAX_VALLEY: f64 = 0.6;

/// Two separated modes of a poster's decade distribution.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TwoReadings {
    /// The decade the art looks like (first year): the peak of the hump holding more of
    /// the probability.
    pub art_decade: i32,
    /// Probability of the main mode's hump (its decades up to the valley).
    pub art_share: f64,
    /// The other reading's peak decade (the smaller hump's).
    pub other_decade: i32,
    /// Probability of the other reading's hump.
    pub other_share: f64,
}

impl TwoReadings {
    /// Whether the other reading is older than the art (the re-release case).
    pub fn other_is_older(&self) -> bool {
        self.other_decade < self.art_decade
    }

    /// What Classify says, e.g. "Looks like 2010s art; posters like this are often
    /// re-releases of 1950s films (22%)".
    pub fn sentence(&self) -> String {
        let share = 100.0 * self.other_share;
        if self.other_is_older() {
            format!(
                "Looks like {}s art; posters like this are often re-releases of {}s films ({share:.0}%)",
                self.art_decade, self.other_decade
            )
        } else {
            format!(
                "Looks like {}s art; it may also be a newer film in a retro style, {}s ({share:.0}%)",
                self.art_decade, self.other_decade
            )
        }
    }
}

/// The two readings of a decade distribution (`(first year of decade, probability)` in
/// year order, as [`super::YearBins::decade_probs`] gives), or `None` when it has one mode,
/// or a second one too weak ([`MIN_SHARE`]) or not separated from the first by a valley
/// ([`MAX_VALLEY`]) at least one decade wide.
pub fn two_readings(decades: &[(i32, f64)]) -> Option<TwoReadings> {
    let p: Vec<f64> = decades.iter().map(|&(_, v)| v.max(0.0)).collect();
    let n = p.len();
    let main = (0..n).max_by(|&a, &b| p[a].total_cmp(&p[b]))?;
    let mut best: Option<TwoReadings> = None;
    for other in 0..n {
        if other.abs_diff(main) < 2 || !is_peak(&p, other) {
            continue;
        }
        let (lo, hi) = (main.min(other), main.max(other));
        let Some(valley) = (lo + 1..hi).min_by(|&a, &b| p[a].total_cmp(&p[b])) else {
            continue;
        };
        if p[valley] > MAX_VALLEY * p[other] {
            continue;
        }
        let other_share = hump(&p, other, valley);
        let art_share = hump(&p, main, valley);
        let smaller = other_share.min(art_share);
        if smaller < MIN_SHARE || best.is_some_and(|b| b.other_share >= smaller) {
            continue;
        }
        // The art reading is the hump with more of the probability (a broad hump can
        // outweigh a taller, narrower one).
        let (art, other, art_share, other_share) = if other_share > art_share {
            (other, main, other_share, art_share)
        } else {
            (main, other, art_share, other_share)
        };
        best = Some(TwoReadings {
            art_decade: decades[art].0,
            art_share,
            other_decade: decades[other].0,
            other_share,
        });
    }
    best
}

/// How strongly a poster reads two ways: the second reading's share, 0 with one reading
/// (the Gallery's sort key).
pub fn second_reading_share(decades: &[(i32, f64)]) -> f64 {
    two_readings(decades).map_or(0.0, |r| r.other_share)
}

/// A local maximum (ties count).
fn is_peak(p: &[f64], i: usize) -> bool {
    let left = i.checked_sub(1).is_none_or(|j| p[j] <= p[i]);
    let right = p.get(i + 1).is_none_or(|&v| v <= p[i]);
    left && right && p[i] > 0.0
}

/// The probability of the hump around `peak`: walking away from the peak (on the side of
/// `valley` up to, not including, the valley; on the other side while the values do not
/// rise again).
fn hump(p: &[f64], peak: usize, valley: usize) -> f64 {
    let mut sum = p[peak];
    let toward_valley_left = valley < peak;
    // Toward the valley.
    let mut i = peak;
    loop {
        let next = if toward_valley_left {
            i.checked_sub(1)
        } else {
            Some(i + 1)
        };
        match next {
            Some(j) if j != valley && j < p.len() => {
                sum += p[j];
                i = j;
            }
            _ => break,
        }
    }
    // Away from it, while falling.
    let mut i = peak;
    loop {
        let next = if toward_valley_left {
            Some(i + 1)
        } else {
            i.checked_sub(1)
        };
        match next {
            Some(j) if j < p.len() && p[j] <= p[i] => {
                sum += p[j];
                i = j;
            }
            _ => break,
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decades(values: &[f64]) -> Vec<(i32, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| (1920 + 10 * i as i32, v))
            .collect()
    }

    #[test]
    fn one_hump_is_one_reading() {
        // 1920s … 2020s: one broad mode around the 2000s–2010s.
        let d = decades(&[
            0.0, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.22, 0.25, 0.1,
        ]);
        assert_eq!(two_readings(&d), None);
        assert!(second_reading_share(&d).abs() < 1e-12);
    }

    #[test]
    fn re_release_art_reads_two_ways() {
        // Most mass on the 2010s, a separate hump on the 1950s with 22%.
        let d = decades(&[
            0.01, 0.03, 0.06, 0.12, 0.0, 0.02, 0.03, 0.07, 0.17, 0.38, 0.11,
        ]);
        let r = two_readings(&d).expect("two modes");
        assert_eq!((r.art_decade, r.other_decade), (2010, 1950));
        // 1920s–1950s (the 1960s are the valley): 0.22; the 1970s–2020s: 0.78.
        assert!((r.other_share - 0.22).abs() < 1e-9, "{r:?}");
        assert!((r.art_share - 0.78).abs() < 1e-9, "{r:?}");
        assert!(r.other_is_older());
        assert_eq!(
            r.sentence(),
            "Looks like 2010s art; posters like this are often re-releases of 1950s films (22%)"
        );
        assert!((second_reading_share(&d) - 0.22).abs() < 1e-9);
    }

    #[test]
    fn a_newer_second_mode_is_retro_art() {
        let d = decades(&[
            0.02, 0.1, 0.35, 0.2, 0.04, 0.02, 0.02, 0.05, 0.12, 0.06, 0.02,
        ]);
        let r = two_readings(&d).expect("two modes");
        assert_eq!((r.art_decade, r.other_decade), (1940, 2000));
        assert!(!r.other_is_older());
        assert!(
            r.sentence().contains("retro style, 2000s"),
            "{}",
            r.sentence()
        );
    }

    #[test]
    fn the_heavier_hump_is_the_art_reading() {
        // The 1960s peak is the tallest decade, but the broad 2000s–2010s hump holds more.
        let d = decades(&[
            0.0, 0.01, 0.04, 0.1, 0.24, 0.05, 0.02, 0.04, 0.16, 0.2, 0.14,
        ]);
        let r = two_readings(&d).expect("two modes");
        assert_eq!((r.art_decade, r.other_decade), (2010, 1960));
        assert!(r.art_share > r.other_share, "{r:?}");
        assert!(r.other_is_older());
    }

    #[test]
    fn weak_or_adjacent_modes_are_not_readings() {
        // A second mode of 6%: too weak to mention.
        let weak = decades(&[0.0, 0.0, 0.05, 0.01, 0.01, 0.02, 0.05, 0.2, 0.36, 0.3, 0.0]);
        assert_eq!(two_readings(&weak), None);
        // Two peaks side by side (no decade between them): one reading.
        let adjacent = decades(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.0]);
        assert_eq!(two_readings(&adjacent), None);
        // A decade between, but hardly a dip (0.2 against a 0.3 peak).
        let adjacent = decades(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.3, 0.2, 0.5, 0.0]);
        assert_eq!(two_readings(&adjacent), None);
        // A shallow dip (valley 0.18 against a 0.2 peak): one broad hump.
        let shallow = decades(&[0.0, 0.0, 0.0, 0.0, 0.05, 0.2, 0.18, 0.25, 0.32, 0.0, 0.0]);
        assert_eq!(two_readings(&shallow), None);
        assert_eq!(two_readings(&[]), None);
    }
}
