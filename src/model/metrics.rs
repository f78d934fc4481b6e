//! Evaluation: decade top-1, within-one-decade accuracy, year MAE, per-era accuracy and
//! macro-F1 for an era scheme, and confusion matrices.

use super::YearBins;
use crate::eras::EraScheme;

/// Figures for a set of predictions.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// Posters evaluated.
    pub count: usize,
    /// Share whose most likely decade is the true one.
    pub decade_top1: f64,
    /// Share whose most likely decade is within one decade of the true one.
    pub within_one_decade: f64,
    /// Mean absolute error of the estimated year (the median), in years.
    pub mae_years: f64,
    /// Balanced decade accuracy: the mean over decades present of the share of that
    /// decade's posters given the right decade (chance: 1 / decades present).
    #[serde(default)]
    pub balanced_decade_accuracy: f64,
    /// The baseline of always answering this set's most common decade: its decade top-1,
    /// within-one-decade share and MAE (answering the decade's middle year).
    #[serde(default)]
    pub baseline: Baseline,
    /// The era scheme of the per-era figures.
    pub scheme: String,
    /// Era names, in order.
    pub eras: Vec<String>,
    /// Share of posters whose most likely era is the true one.
    pub era_accuracy: f64,
    /// Recall per era (`None` where no poster of that era was seen).
    pub per_era_accuracy: Vec<Option<f64>>,
    /// Unweighted mean of per-era F1 over eras that occur.
    pub macro_f1: f64,
    /// `[true era][predicted era]` counts.
    pub era_confusion: Vec<Vec<u64>>,
    /// Decades (first years) of the decade confusion matrix.
    pub decades: Vec<i32>,
    /// `[true decade][predicted decade]` counts.
    pub decade_confusion: Vec<Vec<u64>>,
    /// Where the release years fell on the posters that read two ways.
    #[serde(default)]
    pub two_readings: TwoReadingsScore,
}

/// How the two readings ([`super::readings`]) fared: on the posters whose distribution has
/// two separated modes, how often the release decade was near each.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TwoReadingsScore {
    /// Posters that read two ways.
    pub shown: usize,
    /// Of those, released within one decade of the art reading (the main mode).
    pub near_art: usize,
    /// Of those, released within one decade of the second reading.
    pub near_other: usize,
}

/// What always answering the most common decade scores.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Baseline {
    /// The most common decade (first year).
    pub decade: i32,
    /// Its decade top-1.
    pub decade_top1: f64,
    /// Its within-one-decade share.
    pub within_one_decade: f64,
    /// Its MAE in years (answering the decade's middle, e.g. 2015 for the 2010s).
    pub mae_years: f64,
    /// Its balanced decade accuracy (1 / decades present).
    pub balanced_decade_accuracy: f64,
}

fn argmax(v: &[f64]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// Evaluates bin probabilities `probs[i]` against true years `years[i]`.
pub fn evaluate(
    probs: &[Vec<f32>],
    years: &[i32],
    bins: &YearBins,
    scheme: &EraScheme,
) -> Evaluation {
    let n = probs.len().min(years.len());
    let (first_decade, _) = bins.range(0);
    let first_decade = first_decade.div_euclid(10) * 10;
    let (_, last) = bins.range(bins.count - 1);
    let decades: Vec<i32> = (first_decade..=last).step_by(10).collect();
    let decade_index = |year: i32| {
        let d = year.clamp(first_decade, last).div_euclid(10) * 10;
        ((d - first_decade) / 10) as usize
    };
    let k = scheme.eras.len();
    let mut era_confusion = vec![vec![0u64; k]; k];
    let mut decade_confusion = vec![vec![0u64; decades.len()]; decades.len()];
    let (mut top1, mut within, mut abs_err) = (0usize, 0usize, 0f64);
    let mut two = TwoReadingsScore::default();
    for i in 0..n {
        let p = &probs[i];
        let year = years[i];
        let dp = bins.decade_probs(p);
        let best_decade = dp
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(first_decade, |(d, _)| *d);
        let (t, pd) = (decade_index(year), decade_index(best_decade));
        decade_confusion[t][pd] += 1;
        if t == pd {
            top1 += 1;
        }
        if t.abs_diff(pd) <= 1 {
            within += 1;
        }
        abs_err += (bins.estimated_year(p) - f64::from(year)).abs();
        if let Some(r) = super::readings::two_readings(&dp) {
            let decade = year.clamp(first_decade, last).div_euclid(10) * 10;
            two.shown += 1;
            two.near_art += usize::from((decade - r.art_decade).abs() <= 10);
            two.near_other += usize::from((decade - r.other_decade).abs() <= 10);
        }
        let te = scheme.era_index(year);
        let pe = argmax(&bins.era_probs(p, scheme));
        era_confusion[te][pe] += 1;
    }
    let mut per_era = Vec::with_capacity(k);
    let mut f1s = Vec::new();
    let mut correct = 0u64;
    for e in 0..k {
        let tp = era_confusion[e][e];
        correct += tp;
        let actual: u64 = era_confusion[e].iter().sum();
        let predicted: u64 = era_confusion.iter().map(|row| row[e]).sum();
        if actual == 0 {
            per_era.push(None);
            continue;
        }
        let recall = tp as f64 / actual as f64;
        let precision = if predicted == 0 {
            0.0
        } else {
            tp as f64 / predicted as f64
        };
        per_era.push(Some(recall));
        f1s.push(if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        });
    }
    let nf = n.max(1) as f64;
    let row_totals: Vec<u64> = decade_confusion.iter().map(|r| r.iter().sum()).collect();
    let present: Vec<usize> = (0..decades.len()).filter(|&d| row_totals[d] > 0).collect();
    let balanced = if present.is_empty() {
        0.0
    } else {
        present
            .iter()
            .map(|&d| decade_confusion[d][d] as f64 / row_totals[d] as f64)
            .sum::<f64>()
            / present.len() as f64
    };
    // The first of the most common decades.
    let common = (0..decades.len()).fold(0, |best, d| {
        if row_totals[d] > row_totals[best] {
            d
        } else {
            best
        }
    });
    let guess = f64::from(decades[common]) + 5.0;
    let baseline = Baseline {
        decade: decades[common],
        decade_top1: row_totals[common] as f64 / nf,
        within_one_decade: (0..decades.len())
            .filter(|d| d.abs_diff(common) <= 1)
            .map(|d| row_totals[d])
            .sum::<u64>() as f64
            / nf,
        mae_years: years[..n]
            .iter()
            .map(|&y| (f64::from(y) - guess).abs())
            .sum::<f64>()
            / nf,
        balanced_decade_accuracy: 1.0 / present.len().max(1) as f64,
    };
    Evaluation {
        count: n,
        decade_top1: top1 as f64 / nf,
        within_one_decade: within as f64 / nf,
        mae_years: abs_err / nf,
        balanced_decade_accuracy: balanced,
        baseline,
        scheme: scheme.name.clone(),
        eras: scheme.eras.iter().map(|e| e.name.clone()).collect(),
        era_accuracy: correct as f64 / nf,
        per_era_accuracy: per_era,
        macro_f1: if f1s.is_empty() {
            0.0
        } else {
            f1s.iter().sum::<f64>() / f1s.len() as f64
        },
        era_confusion,
        decades,
        decade_confusion,
        two_readings: two,
    }
}

/// 3×5 pixel glyphs of the digits 0–9, one row per 3 bits (for labels in PNGs without a
/// font rasteriser).
const DIGITS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b010, 0b010, 0b010],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

/// Draws the decimal `n` centred at `(cx, cy)` with `scale`-pixel dots.
fn draw_number(img: &mut image::RgbImage, n: u64, cx: u32, cy: u32, scale: u32, colour: [u8; 3]) {
    let text = n.to_string();
    let w = text.len() as u32 * 4 * scale - scale;
    let (x0, y0) = (cx.saturating_sub(w / 2), cy.saturating_sub(5 * scale / 2));
    for (k, ch) in text.bytes().enumerate() {
        let glyph = DIGITS[usize::from(ch - b'0')];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..3u32 {
                if bits & (0b100 >> col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let x = x0 + k as u32 * 4 * scale + col * scale + dx;
                            let y = y0 + row as u32 * scale + dy;
                            if x < img.width() && y < img.height() {
                                img.put_pixel(x, y, image::Rgb(colour));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A confusion matrix as an image: rows are true classes (numbered from 1 down the left),
/// columns predicted classes (numbered across the top); each cell shows its count on a
/// heat colour of the row's share.
pub fn confusion_image(matrix: &[Vec<u64>]) -> image::RgbImage {
    let n = matrix.len() as u32;
    let (cw, ch, head) = (64u32, 40u32, 36u32);
    let mut img = image::RgbImage::from_pixel(
        head + n * cw + 1,
        head + n * ch + 1,
        image::Rgb([255, 255, 255]),
    );
    for i in 0..n {
        draw_number(
            &mut img,
            u64::from(i + 1),
            head + i * cw + cw / 2,
            head / 2,
            3,
            [40, 40, 40],
        );
        draw_number(
            &mut img,
            u64::from(i + 1),
            head / 2,
            head + i * ch + ch / 2,
            3,
            [40, 40, 40],
        );
    }
    for (r, row) in matrix.iter().enumerate() {
        let total: u64 = row.iter().sum::<u64>().max(1);
        for (c, &count) in row.iter().enumerate() {
            let share = count as f32 / total as f32;
            let colour = super::saliency::heat_colour(share.sqrt());
            let (x0, y0) = (head + c as u32 * cw, head + r as u32 * ch);
            for y in y0 + 1..y0 + ch {
                for x in x0 + 1..x0 + cw {
                    img.put_pixel(x, y, image::Rgb(colour));
                }
            }
            let lum = 0.299 * f32::from(colour[0])
                + 0.587 * f32::from(colour[1])
                + 0.114 * f32::from(colour[2]);
            let ink = if lum > 140.0 {
                [0, 0, 0]
            } else {
                [255, 255, 255]
            };
            draw_number(&mut img, count, x0 + cw / 2, y0 + ch / 2, 2, ink);
        }
    }
    img
}

impl Evaluation {
    /// A plain-text report.
    pub fn report(&self) -> String {
        let b = &self.baseline;
        let mut s = format!(
            "{} posters: decade top-1 {:.1}%, balanced {:.1}%, within one decade {:.1}%, MAE {:.1} years\n\
             always {}s: decade top-1 {:.1}%, balanced {:.1}%, within one decade {:.1}%, MAE {:.1} years\n\
             {} eras: accuracy {:.1}%, macro-F1 {:.3}\n",
            self.count,
            100.0 * self.decade_top1,
            100.0 * self.balanced_decade_accuracy,
            100.0 * self.within_one_decade,
            self.mae_years,
            b.decade,
            100.0 * b.decade_top1,
            100.0 * b.balanced_decade_accuracy,
            100.0 * b.within_one_decade,
            b.mae_years,
            self.scheme,
            100.0 * self.era_accuracy,
            self.macro_f1
        );
        let t = &self.two_readings;
        if t.shown > 0 {
            let share = |k: usize| 100.0 * k as f64 / t.shown as f64;
            s.push_str(&format!(
                "two readings on {} posters ({:.1}%): released within one decade of the art reading {:.1}%, of the second reading {:.1}%\n",
                t.shown,
                100.0 * t.shown as f64 / self.count.max(1) as f64,
                share(t.near_art),
                share(t.near_other)
            ));
        }
        for (name, acc) in self.eras.iter().zip(&self.per_era_accuracy) {
            match acc {
                Some(a) => s.push_str(&format!("  {name:<24} {:5.1}%\n", 100.0 * a)),
                None => s.push_str(&format!("  {name:<24}     -\n")),
            }
        }
        s.push_str("confusion (rows: true era, columns: predicted):\n");
        for row in &self.era_confusion {
            let cells: Vec<String> = row.iter().map(|c| format!("{c:5}")).collect();
            s.push_str(&cells.join(""));
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eras::EraSchemes;

    fn one_hot(bins: &YearBins, year: i32) -> Vec<f32> {
        let mut p = vec![0.0; bins.count];
        p[bins.bin(year)] = 1.0;
        p
    }

    #[test]
    fn two_readings_are_scored_where_the_release_year_fell() {
        let bins = YearBins::default();
        let schemes = EraSchemes::builtin();
        let h = schemes.get("hollywood").unwrap();
        // 60% on 2012 and 30% on 1952, 10% spread: a re-release look.
        let mut two = vec![0.1 / bins.count as f32; bins.count];
        two[bins.bin(2012)] += 0.6;
        two[bins.bin(1952)] += 0.3;
        let probs = vec![two.clone(), two, one_hot(&bins, 1990)];
        let e = evaluate(&probs, &[1955, 2015, 1990], &bins, h);
        assert_eq!(
            e.two_readings,
            TwoReadingsScore {
                shown: 2,
                near_art: 1,
                near_other: 1
            }
        );
        assert!(e.report().contains("two readings on 2 posters (66.7%)"));
    }

    #[test]
    fn metrics_on_hand_made_predictions() {
        let bins = YearBins::default();
        let schemes = EraSchemes::builtin();
        let h = schemes.get("hollywood").unwrap();
        // True years and predictions (all mass in one bin):
        // 1952 -> 1952 (exact), 1977 -> 1987 (one decade off, Blockbuster vs New Hollywood),
        // 2012 -> 1952 (far off), 1947 -> 1942 (same decade 1940s, Golden Age).
        let years = [1952, 1977, 2012, 1947];
        let probs = vec![
            one_hot(&bins, 1952),
            one_hot(&bins, 1987),
            one_hot(&bins, 1952),
            one_hot(&bins, 1942),
        ];
        let e = evaluate(&probs, &years, &bins, h);
        assert_eq!(e.count, 4);
        assert!((e.decade_top1 - 0.5).abs() < 1e-9); // 1952, 1947
        assert!((e.within_one_decade - 0.75).abs() < 1e-9);
        // Expected years are bin centres: 1952, 1987, 1952, 1942.
        let mae = (0.0 + 10.0 + 60.0 + 5.0) / 4.0;
        assert!((e.mae_years - mae).abs() < 1e-9, "{}", e.mae_years);
        // Eras: Golden Age (1) twice right; New Hollywood (3) predicted Blockbuster (4);
        // Franchise (6) predicted Golden Age.
        assert_eq!(e.era_confusion[1][1], 2);
        assert_eq!(e.era_confusion[3][4], 1);
        assert_eq!(e.era_confusion[6][1], 1);
        assert!((e.era_accuracy - 0.5).abs() < 1e-9);
        assert_eq!(e.per_era_accuracy[1], Some(1.0));
        assert_eq!(e.per_era_accuracy[3], Some(0.0));
        assert_eq!(e.per_era_accuracy[0], None);
        // F1: Golden Age p = 2/3, r = 1 -> 0.8; New Hollywood 0; Franchise 0.
        assert!((e.macro_f1 - 0.8 / 3.0).abs() < 1e-9, "{}", e.macro_f1);
        assert!(e.report().contains("decade top-1 50.0%"));
        // Decades present: 1950s (1 of 1 right), 1970s (0 of 1), 2010s (0 of 1), 1940s
        // (1 of 1): balanced (1 + 0 + 0 + 1) / 4.
        assert!((e.balanced_decade_accuracy - 0.5).abs() < 1e-9);
        // Every decade occurs once: the first, the 1940s, is the "most common"; answering
        // 1945 gets one right, 1940s/1950s within one (2 of 4), MAE (7+32+67+2)/4.
        assert_eq!(e.baseline.decade, 1940);
        assert!((e.baseline.decade_top1 - 0.25).abs() < 1e-9);
        assert!((e.baseline.within_one_decade - 0.5).abs() < 1e-9);
        assert!((e.baseline.mae_years - 27.0).abs() < 1e-9);
        assert!((e.baseline.balanced_decade_accuracy - 0.25).abs() < 1e-9);
    }

    #[test]
    fn confusion_image_has_a_cell_per_pair() {
        let img = confusion_image(&[vec![5, 0], vec![1, 12]]);
        assert_eq!(img.dimensions(), (36 + 2 * 64 + 1, 36 + 2 * 40 + 1));
        // The diagonal (all of row 0) is hotter than the empty cell beside it.
        let hot = img.get_pixel(36 + 5, 36 + 5).0;
        let cold = img.get_pixel(36 + 64 + 5, 36 + 5).0;
        let lum = |c: [u8; 3]| u32::from(c[0]) + u32::from(c[1]) + u32::from(c[2]);
        assert!(lum(hot) > lum(cold));
    }
}
