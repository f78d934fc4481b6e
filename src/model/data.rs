//! Training data from the catalog: posters with a known year, split by movie with a fixed
//! seed, decoded once into small RGB arrays, then batched with augmentation, class-balanced
//! sampling and the training set's normalisation.

use std::path::PathBuf;

use burn::prelude::*;
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use super::network::NetworkConfig;
use super::{ModelError, Normalisation, Result, YearBins};
use crate::catalog::{Catalog, PosterStatus};
use crate::imaging::{self, ImageLimits};
use crate::paths::DataDir;

/// A poster with its year.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Image file.
    pub path: PathBuf,
    /// Release year.
    pub year: i32,
    /// What identifies the movie for the split (poster SHA-256, so identical posters
    /// always land on the same side).
    pub key: String,
    /// Title, for reports.
    pub title: String,
    /// Key that decides the split when it differs from `key`: shared by near-duplicate
    /// posters ([`group_near_duplicates`]).
    pub split_key: Option<String>,
}

/// Posters with status `ok` and a year, from the catalog.
pub fn samples_from_catalog(catalog: &Catalog, data_dir: &DataDir) -> Result<Vec<Sample>> {
    Ok(catalog
        .movies()?
        .into_iter()
        .filter(|m| m.status == Some(PosterStatus::Ok))
        .filter_map(|m| {
            let file = m.poster_file?;
            let year = m.year?;
            Some(Sample {
                path: data_dir.poster_path(&file),
                year,
                key: m.poster_sha256.unwrap_or_else(|| format!("movie:{}", m.id)),
                title: m.title,
                split_key: None,
            })
        })
        .collect())
}

/// Deterministic 64-bit hash of `key` under `seed` (FNV-1a, then a mix).
fn keyed_hash(key: &str, seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// Splits by movie key: a fixed share goes to validation, decided by a seeded hash of
/// the key, so the split never changes as the catalog grows.
pub fn split(samples: Vec<Sample>, val_share: f64, seed: u64) -> (Vec<Sample>, Vec<Sample>) {
    let cut = (val_share.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
    samples
        .into_iter()
        .partition(|s| keyed_hash(s.split_key.as_ref().unwrap_or(&s.key), seed) >= cut)
}

/// 64-bit difference hash of a poster (9×8 grey thumbnail, one bit per horizontal
/// neighbour pair): the same art at another size or JPEG quality hashes within a few bits.
pub fn dhash(rgb: &RgbImage) -> u64 {
    let small = imaging::area_resize(rgb, 9, 8);
    let grey = |x: u32, y: u32| {
        let p = small.get_pixel(x, y).0;
        u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114
    };
    let mut h = 0u64;
    for y in 0..8 {
        for x in 0..8 {
            h = (h << 1) | u64::from(grey(x, y) > grey(x + 1, y));
        }
    }
    h
}

/// Hamming distance within which two posters count as the same art.
pub const NEAR_DUPLICATE_BITS: u32 = 4;

/// Gives near-duplicate posters (dHashes within [`NEAR_DUPLICATE_BITS`]) one split key,
/// so the same art in another encoding or size never sits on both sides of a split.
/// Posters that cannot be decoded keep their key. Returns how many posters share a key
/// with another one.
pub fn group_near_duplicates(samples: &mut [Sample]) -> usize {
    let limits = ImageLimits::default();
    let hashes: Vec<Option<u64>> = samples
        .par_iter()
        .map(|s| {
            imaging::decode_poster_file(&s.path, &limits)
                .ok()
                .map(|d| dhash(&d.rgb))
        })
        .collect();
    let n = samples.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for (i, a) in hashes.iter().enumerate() {
        let Some(a) = *a else { continue };
        for (j, b) in hashes.iter().enumerate().skip(i + 1) {
            if let Some(b) = *b
                && (a ^ b).count_ones() <= NEAR_DUPLICATE_BITS
            {
                let (ri, rj) = (find(&mut parent, i), find(&mut parent, j));
                if ri != rj {
                    parent[ri.max(rj)] = ri.min(rj);
                }
            }
        }
    }
    let mut group_key: std::collections::HashMap<usize, (String, usize)> =
        std::collections::HashMap::new();
    for (i, sample) in samples.iter().enumerate() {
        let r = find(&mut parent, i);
        let e = group_key
            .entry(r)
            .or_insert_with(|| (sample.key.clone(), 0));
        if sample.key < e.0 {
            e.0.clone_from(&sample.key);
        }
        e.1 += 1;
    }
    let mut grouped = 0;
    for (i, sample) in samples.iter_mut().enumerate() {
        let r = find(&mut parent, i);
        if let Some((key, size)) = group_key.get(&r)
            && *size > 1
        {
            sample.split_key = Some(key.clone());
            grouped += 1;
        }
    }
    grouped
}

/// A decoded poster at the working size (a margin larger than the network input, for
/// random crops), RGB bytes row by row.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// RGB bytes, `work_width × work_height × 3`.
    pub pixels: Vec<u8>,
    /// The same poster re-sampled from a shrunken, re-compressed copy (same layout as
    /// `pixels`), for [`Augment::rescale`]; empty when not prepared.
    pub low: Vec<u8>,
    /// Release year.
    pub year: i32,
}

/// The working size for a network input size: 1/8 larger each way.
pub fn work_size(net: &NetworkConfig) -> (usize, usize) {
    (
        net.input_width + net.input_width / 8,
        net.input_height + net.input_height / 8,
    )
}

/// Resizes a poster to the working size (aspect ratio is not kept: posters are close to
/// 2:3 and the network sees them the same way at training and prediction time).
pub fn to_work_size(rgb: &RgbImage, net: &NetworkConfig) -> Vec<u8> {
    let (w, h) = work_size(net);
    imaging::area_resize(rgb, w as u32, h as u32).into_raw()
}

/// Decodes and resizes samples in parallel; returns what worked and what failed (with
/// the reason).
pub fn prepare(samples: &[Sample], net: &NetworkConfig) -> (Vec<Prepared>, Vec<(PathBuf, String)>) {
    prepare_inner(samples, net, &Reencode::default(), None)
}

/// [`prepare`] plus, in [`Prepared::low`], a copy of each poster shrunk to 35–75% of its
/// size and re-encoded as JPEG at quality 40–90 before going to the working size (factor
/// and quality drawn per poster from `seed`): what a smaller TMDB size such as `w92`, or
/// a poster from elsewhere, looks like to the network.
pub fn prepare_for_training(
    samples: &[Sample],
    net: &NetworkConfig,
    seed: u64,
) -> (Vec<Prepared>, Vec<(PathBuf, String)>) {
    prepare_inner(samples, net, &Reencode::default(), Some(seed))
}

/// The shrink-and-compress change [`prepare_for_training`] applies to the poster `key`.
pub fn low_quality_change(key: &str, seed: u64) -> Reencode {
    let h = keyed_hash(key, seed ^ 0x5eed_1e55);
    let scale = 0.35 + 0.40 * ((h & 0xffff) as f32 / 65535.0);
    let quality = 40 + ((h >> 16) % 51) as u8;
    Reencode {
        scale,
        jpeg_quality: Some(quality),
    }
}

/// A change applied to posters before they reach the model, to check how predictions
/// hold up for posters of other sizes and compression than the training set's.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reencode {
    /// Scale factor of both sides (1 or 0 keeps the size).
    pub scale: f32,
    /// Re-encode as JPEG at this quality (1–100).
    pub jpeg_quality: Option<u8>,
}

impl Reencode {
    /// Applies the change (scale, then JPEG round trip).
    pub fn apply(&self, rgb: RgbImage) -> std::result::Result<RgbImage, String> {
        let rgb = if self.scale > 0.0 && (self.scale - 1.0).abs() > 1e-6 {
            let w = ((rgb.width() as f32 * self.scale).round() as u32).max(1);
            let h = ((rgb.height() as f32 * self.scale).round() as u32).max(1);
            imaging::area_resize(&rgb, w, h)
        } else {
            rgb
        };
        match self.jpeg_quality {
            Some(q) => {
                let bytes =
                    imaging::encode_jpeg(&rgb, q.clamp(1, 100)).map_err(|e| e.to_string())?;
                imaging::decode_poster(&bytes, &ImageLimits::default())
                    .map(|d| d.rgb)
                    .map_err(|e| e.to_string())
            }
            None => Ok(rgb),
        }
    }
}

/// [`prepare`] with posters changed by `reencode` first.
pub fn prepare_with(
    samples: &[Sample],
    net: &NetworkConfig,
    reencode: &Reencode,
) -> (Vec<Prepared>, Vec<(PathBuf, String)>) {
    prepare_inner(samples, net, reencode, None)
}

fn prepare_inner(
    samples: &[Sample],
    net: &NetworkConfig,
    reencode: &Reencode,
    low_seed: Option<u64>,
) -> (Vec<Prepared>, Vec<(PathBuf, String)>) {
    let limits = ImageLimits::default();
    let results: Vec<std::result::Result<Prepared, (PathBuf, String)>> = samples
        .par_iter()
        .map(|s| {
            let decoded = imaging::decode_poster_file(&s.path, &limits)
                .map_err(|e| (s.path.clone(), e.to_string()))?;
            let rgb = reencode
                .apply(decoded.rgb)
                .map_err(|e| (s.path.clone(), e))?;
            let low = match low_seed {
                Some(seed) => low_quality_change(&s.key, seed)
                    .apply(rgb.clone())
                    .map(|small| to_work_size(&small, net))
                    .map_err(|e| (s.path.clone(), e))?,
                None => Vec::new(),
            };
            Ok(Prepared {
                pixels: to_work_size(&rgb, net),
                low,
                year: s.year,
            })
        })
        .collect();
    let mut ok = Vec::with_capacity(results.len());
    let mut failed = Vec::new();
    for r in results {
        match r {
            Ok(p) => ok.push(p),
            Err(e) => failed.push(e),
        }
    }
    (ok, failed)
}

/// Channel means and standard deviations of the centre crops of `images`.
pub fn normalisation(images: &[Prepared], net: &NetworkConfig) -> Normalisation {
    let (ww, wh) = work_size(net);
    let (x0, y0) = ((ww - net.input_width) / 2, (wh - net.input_height) / 2);
    let mut sum = [0f64; 3];
    let mut sq = [0f64; 3];
    let mut n = 0f64;
    for img in images {
        for y in y0..y0 + net.input_height {
            let row = &img.pixels[(y * ww + x0) * 3..(y * ww + x0 + net.input_width) * 3];
            for px in row.chunks_exact(3) {
                for c in 0..3 {
                    let v = f64::from(px[c]) / 255.0;
                    sum[c] += v;
                    sq[c] += v * v;
                }
            }
            n += net.input_width as f64;
        }
    }
    if n == 0.0 {
        return Normalisation::default();
    }
    let mean = sum.map(|s| s / n);
    let std: Vec<f64> = (0..3)
        .map(|c| (sq[c] / n - mean[c] * mean[c]).max(1e-6).sqrt())
        .collect();
    Normalisation {
        mean: mean.map(|m| m as f32),
        std: [std[0] as f32, std[1] as f32, std[2] as f32],
    }
}

/// Augmentation settings. Colour changes are kept mild: colour is an era cue.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// Random crops within the working margin.
    pub crop: bool,
    /// Horizontal flip probability.
    pub flip: f32,
    /// Brightness, contrast and saturation each scaled by a factor in `1 ± jitter`.
    pub jitter: f32,
    /// Probability that a step sees the poster's shrunken, re-compressed copy
    /// ([`prepare_for_training`]) instead of the poster itself.
    #[serde(default)]
    pub rescale: f32,
}

impl Default for Augment {
    fn default() -> Self {
        Self {
            crop: true,
            flip: 0.5,
            jitter: 0.1,
            rescale: 0.0,
        }
    }
}

/// Writes one image into `out` (CHW, normalised), cropped at `(x0, y0)`.
#[allow(clippy::too_many_arguments)]
fn write_chw(
    pixels: &[u8],
    net: &NetworkConfig,
    x0: usize,
    y0: usize,
    flip: bool,
    colour: [f32; 3],
    norm: &Normalisation,
    out: &mut [f32],
) {
    let (ww, _) = work_size(net);
    let (w, h) = (net.input_width, net.input_height);
    let [brightness, contrast, saturation] = colour;
    for y in 0..h {
        for x in 0..w {
            let sx = if flip { x0 + w - 1 - x } else { x0 + x };
            let i = ((y0 + y) * ww + sx) * 3;
            let mut rgb = [0f32; 3];
            for (v, &p) in rgb.iter_mut().zip(&pixels[i..i + 3]) {
                *v = f32::from(p) / 255.0;
            }
            if colour != [1.0; 3] {
                let grey = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
                for v in &mut rgb {
                    *v = grey + (*v - grey) * saturation;
                    *v = 0.5 + (*v - 0.5) * contrast;
                    *v = (*v * brightness).clamp(0.0, 1.0);
                }
            }
            for c in 0..3 {
                out[c * w * h + y * w + x] = (rgb[c] - norm.mean[c]) / norm.std[c];
            }
        }
    }
}

/// Input values (CHW, normalised) for a poster, as at prediction time: resized to the
/// working size and centre-cropped.
pub fn input_values(rgb: &RgbImage, net: &NetworkConfig, norm: &Normalisation) -> Vec<f32> {
    let pixels = to_work_size(rgb, net);
    let (ww, wh) = work_size(net);
    let mut out = vec![0f32; 3 * net.input_width * net.input_height];
    write_chw(
        &pixels,
        net,
        (ww - net.input_width) / 2,
        (wh - net.input_height) / 2,
        false,
        [1.0; 3],
        norm,
        &mut out,
    );
    out
}

/// Soft targets: a Gaussian (σ = `sigma` years) over bin centres around the true year,
/// so neighbouring bins are near misses rather than plain errors.
pub fn soft_target(year: i32, bins: &YearBins, sigma: f64) -> Vec<f32> {
    let y = f64::from(year).clamp(bins.centre(0), bins.centre(bins.count.saturating_sub(1)));
    let mut t: Vec<f64> = (0..bins.count)
        .map(|b| {
            let d = bins.centre(b) - y;
            (-d * d / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let s: f64 = t.iter().sum();
    for v in &mut t {
        *v /= s;
    }
    t.into_iter().map(|v| v as f32).collect()
}

/// A batch ready for the network.
pub struct Batch {
    /// `[n, 3, h, w]` inputs.
    pub images: Tensor<4>,
    /// `[n, bins]` soft targets.
    pub targets: Tensor<2>,
    /// True years.
    pub years: Vec<i32>,
}

/// Builds a batch from `items`; with `rng` it augments.
pub fn make_batch(
    items: &[&Prepared],
    net: &NetworkConfig,
    bins: &YearBins,
    norm: &Normalisation,
    augment: Option<(&Augment, &mut rand::rngs::StdRng)>,
    sigma: f64,
    device: &Device,
) -> Batch {
    let (ww, wh) = work_size(net);
    let per = 3 * net.input_width * net.input_height;
    let mut values = vec![0f32; items.len() * per];
    let mut targets = Vec::with_capacity(items.len() * bins.count);
    let mut years = Vec::with_capacity(items.len());
    let (mx, my) = (ww - net.input_width, wh - net.input_height);
    let mut augment = augment;
    for (i, img) in items.iter().enumerate() {
        let mut pixels = &img.pixels;
        let (x0, y0, flip, colour) = match augment.as_mut() {
            Some((a, rng)) => {
                let (x0, y0) = if a.crop {
                    (rng.random_range(0..=mx), rng.random_range(0..=my))
                } else {
                    (mx / 2, my / 2)
                };
                let flip = rng.random::<f32>() < a.flip;
                let j = a.jitter;
                let mut f = || 1.0 + (rng.random::<f32>() * 2.0 - 1.0) * j;
                let colour = [f(), f(), f()];
                // Drawn only when enabled, so runs without it keep their random stream.
                if a.rescale > 0.0 && !img.low.is_empty() && rng.random::<f32>() < a.rescale {
                    pixels = &img.low;
                }
                (x0, y0, flip, colour)
            }
            None => (mx / 2, my / 2, false, [1.0; 3]),
        };
        write_chw(
            pixels,
            net,
            x0,
            y0,
            flip,
            colour,
            norm,
            &mut values[i * per..(i + 1) * per],
        );
        targets.extend(soft_target(img.year, bins, sigma));
        years.push(img.year);
    }
    let n = items.len();
    Batch {
        images: Tensor::from_data(
            TensorData::new(values, [n, 3, net.input_height, net.input_width]),
            device,
        ),
        targets: Tensor::from_data(TensorData::new(targets, [n, bins.count]), device),
        years,
    }
}

/// Sampling weights that balance bins: each image weighs `count(bin)^-power` (1 = fully
/// balanced, 0 = natural frequencies).
pub fn balanced_weights(images: &[Prepared], bins: &YearBins, power: f64) -> Vec<f64> {
    let mut counts = vec![0usize; bins.count];
    for img in images {
        counts[bins.bin(img.year)] += 1;
    }
    images
        .iter()
        .map(|img| (counts[bins.bin(img.year)].max(1) as f64).powf(-power))
        .collect()
}

/// Draws `n` indices with the given weights (with replacement), reproducibly.
pub fn weighted_order(weights: &[f64], n: usize, rng: &mut rand::rngs::StdRng) -> Vec<usize> {
    let mut cumulative = Vec::with_capacity(weights.len());
    let mut acc = 0.0;
    for &w in weights {
        acc += w;
        cumulative.push(acc);
    }
    if acc <= 0.0 {
        return Vec::new();
    }
    (0..n)
        .map(|_| {
            let r = rng.random::<f64>() * acc;
            cumulative
                .partition_point(|&c| c < r)
                .min(weights.len() - 1)
        })
        .collect()
}

/// A seeded RNG.
pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// Fails with a clear message when there is too little data.
pub fn require(train: usize, val: usize) -> Result<()> {
    if train < 2 {
        return Err(ModelError::Data(format!(
            "only {train} training posters with a year in the catalog; import or harvest some first"
        )));
    }
    if val == 0 {
        return Err(ModelError::Data(
            "the validation split is empty; use a larger catalog or --val-share".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reencode_scales_and_round_trips_jpeg() {
        let img = RgbImage::from_fn(40, 60, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 4) as u8, 90])
        });
        let same = Reencode::default().apply(img.clone()).unwrap();
        assert_eq!(same, img);
        let half = Reencode {
            scale: 0.5,
            jpeg_quality: None,
        }
        .apply(img.clone())
        .unwrap();
        assert_eq!(half.dimensions(), (20, 30));
        let jpeg = Reencode {
            scale: 1.0,
            jpeg_quality: Some(20),
        }
        .apply(img.clone())
        .unwrap();
        assert_eq!(jpeg.dimensions(), (40, 60));
        assert_ne!(jpeg, img, "a quality-20 JPEG changes pixels");
        let diff: u64 = jpeg
            .as_raw()
            .iter()
            .zip(img.as_raw())
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .sum();
        assert!(diff / (40 * 60 * 3) < 20, "but not beyond recognition");
    }

    #[test]
    fn low_quality_change_is_seeded_and_in_range() {
        let changes: Vec<Reencode> = (0..200)
            .map(|i| low_quality_change(&format!("poster-{i}"), 7))
            .collect();
        for c in &changes {
            assert!((0.35..=0.75).contains(&c.scale), "{c:?}");
            assert!(matches!(c.jpeg_quality, Some(40..=90)), "{c:?}");
        }
        assert_eq!(changes[3], low_quality_change("poster-3", 7));
        assert_ne!(changes[3], low_quality_change("poster-3", 8));
        let small = changes.iter().filter(|c| c.scale < 0.55).count();
        assert!(
            (60..140).contains(&small),
            "factors spread over the range: {small}"
        );
    }

    #[test]
    fn rescale_augmentation_swaps_in_the_low_copy() {
        let net = NetworkConfig {
            input_width: 16,
            input_height: 24,
            ..NetworkConfig::default()
        };
        let (ww, wh) = work_size(&net);
        let img = Prepared {
            pixels: vec![0; ww * wh * 3],
            low: vec![255; ww * wh * 3],
            year: 1950,
        };
        let norm = Normalisation {
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        let bins = YearBins::default();
        let device = Device::flex();
        let mean_of = |rescale: f32| {
            let a = Augment {
                crop: true,
                flip: 0.5,
                jitter: 0.0,
                rescale,
            };
            let mut r = rng(3);
            let items = vec![&img; 8];
            let b = make_batch(&items, &net, &bins, &norm, Some((&a, &mut r)), 4.0, &device);
            b.images.mean().into_scalar::<f32>()
        };
        assert!(mean_of(0.0).abs() < 1e-6, "never the low copy");
        assert!((mean_of(1.0) - 1.0).abs() < 1e-6, "always the low copy");
        let half = mean_of(0.5);
        assert!(half > 0.0 && half < 1.0, "{half}");
        // Prediction-time inputs never see it.
        let b = make_batch(&[&img], &net, &bins, &norm, None, 4.0, &device);
        assert!(b.images.mean().into_scalar::<f32>().abs() < 1e-6);
    }

    fn sample(key: &str) -> Sample {
        Sample {
            path: PathBuf::from(key),
            year: 1950,
            key: key.into(),
            title: String::new(),
            split_key: None,
        }
    }

    #[test]
    fn split_is_stable_and_by_key() {
        let all: Vec<Sample> = (0..1000).map(|i| sample(&format!("k{i}"))).collect();
        let (t1, v1) = split(all.clone(), 0.2, 7);
        let (t2, v2) = split(all[..500].to_vec(), 0.2, 7);
        assert!((150..250).contains(&v1.len()), "{}", v1.len());
        assert_eq!(t1.len() + v1.len(), 1000);
        // A smaller catalog splits its movies the same way.
        let v1_keys: std::collections::HashSet<_> = v1.iter().map(|s| s.key.clone()).collect();
        assert!(v2.iter().all(|s| v1_keys.contains(&s.key)));
        assert!(t2.iter().all(|s| !v1_keys.contains(&s.key)));
        let (_, v3) = split(all, 0.2, 8);
        assert_ne!(
            v1.iter().map(|s| &s.key).collect::<Vec<_>>(),
            v3.iter().map(|s| &s.key).collect::<Vec<_>>()
        );
    }

    #[test]
    fn soft_targets_peak_at_the_year() {
        let bins = YearBins::default();
        let t = soft_target(1977, &bins, 4.0);
        assert!((t.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        let best = t
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i);
        assert_eq!(best, Some(bins.bin(1977)));
    }

    #[test]
    fn balanced_sampling_evens_out_bins() {
        let bins = YearBins::default();
        let mut imgs: Vec<Prepared> = (0..90)
            .map(|_| Prepared {
                pixels: vec![],
                low: vec![],
                year: 2010,
            })
            .collect();
        imgs.extend((0..10).map(|_| Prepared {
            pixels: vec![],
            low: vec![],
            year: 1950,
        }));
        let w = balanced_weights(&imgs, &bins, 1.0);
        let order = weighted_order(&w, 10_000, &mut rng(1));
        let rare = order.iter().filter(|&&i| i >= 90).count();
        assert!((4000..6000).contains(&rare), "{rare}");
    }
}
