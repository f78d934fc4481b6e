//! The Map's layouts of the model's poster features: the first two principal components
//! ([`super::pca_2d`]), or t-SNE, which keeps each poster near the posters the model sees
//! as alike and so shows groups a linear projection blurs into one blob.
//!
//! t-SNE comes from the `bhtsne` crate (MIT, pure Rust, parallel Barnes-Hut on rayon):
//! it reports each epoch (the progress bar), takes a starting layout (here the seeded PCA
//! layout, which makes a run deterministic) and needs no BLAS, unlike `linfa-tsne` (which
//! wraps it) or the UMAP crates. Features are first projected to [`REDUCED_DIMS`]
//! dimensions by a seeded random projection (distances are nearly kept, and the
//! neighbour search gets 20 times cheaper than on 1,280 values).

use rayon::prelude::*;

/// Dimensions the features are projected to before t-SNE.
pub const REDUCED_DIMS: usize = 48;
/// t-SNE epochs (the first 250 with early exaggeration).
pub const TSNE_EPOCHS: usize = 600;
/// t-SNE perplexity (about how many neighbours each poster keeps close).
pub const PERPLEXITY: f32 = 30.0;

/// How the Map lays posters out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum MapLayout {
    /// First two principal components (immediate).
    #[default]
    Pca,
    /// t-SNE (computed once per model and catalog, then cached).
    Tsne,
}

/// A seeded xorshift stream of values in -1..1.
fn noise(seed: u64) -> impl FnMut() -> f32 {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Rows of `dim` values projected to `k` dimensions by a seeded random (±1) matrix.
fn random_projection(features: &[f32], dim: usize, k: usize, seed: u64) -> Vec<f32> {
    let mut next = noise(seed);
    let matrix: Vec<f32> = (0..dim * k)
        .map(|_| if next() >= 0.0 { 1.0 } else { -1.0 })
        .collect();
    let scale = 1.0 / (k as f32).sqrt();
    features
        .par_chunks(dim)
        .flat_map_iter(|row| {
            let m = &matrix;
            (0..k).map(move |j| {
                row.iter()
                    .enumerate()
                    .map(|(i, v)| v * m[i * k + j])
                    .sum::<f32>()
                    * scale
            })
        })
        .collect()
}

/// A t-SNE layout of feature rows (`dim` values each): one `[x, y]` per row.
/// `progress(epoch, epochs)` follows the fit. Fewer than eight rows get the PCA layout.
///
/// The start is seeded, but the fit sums forces on all cores, in an order that varies
/// from run to run, so two runs differ in the last digits and then a little more. With
/// `reproducible` it runs on one thread and gives the same layout for the same features
/// and seed every time (about twice as slow here); the window instead computes a layout
/// once per model and catalog and caches it.
pub fn tsne_2d(
    features: &[f32],
    dim: usize,
    seed: u64,
    reproducible: bool,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Vec<[f32; 2]> {
    let one_thread = reproducible
        .then(|| rayon::ThreadPoolBuilder::new().num_threads(1).build().ok())
        .flatten();
    match one_thread {
        Some(pool) => pool.install(|| fit(features, dim, seed, progress)),
        None => fit(features, dim, seed, progress),
    }
}

fn fit(
    features: &[f32],
    dim: usize,
    seed: u64,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Vec<[f32; 2]> {
    let n = features.len().checked_div(dim).unwrap_or(0);
    let start = super::pca_2d(features, dim);
    if n < 8 {
        return start;
    }
    let k = REDUCED_DIMS.min(dim);
    let reduced = if dim > k {
        random_projection(&features[..n * dim], dim, k, seed)
    } else {
        features[..n * dim].to_vec()
    };
    let samples: Vec<&[f32]> = reduced.chunks(k).collect();
    // The PCA layout, scaled to a deviation of 1e-4 (the usual t-SNE start), with a
    // seeded nudge so that coinciding posters do not stay on one point.
    let sd = (start
        .iter()
        .map(|p| f64::from(p[0]).powi(2) + f64::from(p[1]).powi(2))
        .sum::<f64>()
        / (2 * n) as f64)
        .sqrt()
        .max(1e-12) as f32;
    let mut jitter = noise(seed.wrapping_add(1));
    let init: Vec<f32> = start
        .iter()
        .flat_map(|p| [p[0], p[1]])
        .map(|v| v / sd * 1e-4 + jitter() * 1e-6)
        .collect();
    let perplexity = PERPLEXITY.min(((n - 1) as f32 / 3.0).max(2.0));
    let mut tsne = bhtsne::tSNE::<f32, &[f32], 2>::new(&samples);
    tsne.perplexity(perplexity)
        .epochs(TSNE_EPOCHS)
        .initial_embedding(init)
        .epoch_callback(|epoch, _| progress(epoch + 1, TSNE_EPOCHS))
        .barnes_hut(0.5, |a, b| {
            a.iter()
                .zip(b.iter())
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
                .sqrt()
        });
    let flat = tsne.embedding();
    flat.chunks(2)
        .map(|p| [p[0], p.get(1).copied().unwrap_or(0.0)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Six clusters of 40 points in 64 dimensions, each a random centre plus noise.
    fn clusters() -> (Vec<f32>, usize) {
        let dim = 64;
        let mut next = noise(7);
        let centres: Vec<Vec<f32>> = (0..6)
            .map(|_| (0..dim).map(|_| next() * 4.0).collect())
            .collect();
        let mut rows = Vec::new();
        for i in 0..240 {
            for v in &centres[i % 6] {
                rows.push(v + next() * 0.5);
            }
        }
        (rows, dim)
    }

    fn nearest(points: &[Vec<f32>], i: usize, k: usize) -> Vec<usize> {
        let d =
            |a: &[f32], b: &[f32]| -> f32 { a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum() };
        let mut order: Vec<usize> = (0..points.len()).filter(|&j| j != i).collect();
        order.sort_by(|&a, &b| d(&points[i], &points[a]).total_cmp(&d(&points[i], &points[b])));
        order.truncate(k);
        order
    }

    #[test]
    fn the_same_seed_gives_the_same_layout() {
        let (rows, dim) = clusters();
        let a = tsne_2d(&rows, dim, 3, true, &mut |_, _| {});
        let b = tsne_2d(&rows, dim, 3, true, &mut |_, _| {});
        assert_eq!(a, b);
        assert_eq!(a.len(), 240);
    }

    #[test]
    fn neighbours_in_feature_space_stay_neighbours() {
        let (rows, dim) = clusters();
        let mut epochs = 0;
        let layout = tsne_2d(&rows, dim, 1, false, &mut |e, total| {
            epochs = e;
            assert_eq!(total, TSNE_EPOCHS);
        });
        assert_eq!(epochs, TSNE_EPOCHS, "progress follows every epoch");
        // Each point's nearest neighbours in feature space are the points of its own
        // cluster; on the map its 10 nearest are too.
        let features: Vec<Vec<f32>> = rows.chunks(dim).map(<[f32]>::to_vec).collect();
        let placed: Vec<Vec<f32>> = layout.iter().map(|p| p.to_vec()).collect();
        let mut kept = 0usize;
        for i in 0..features.len() {
            assert!(nearest(&features, i, 10).iter().all(|j| j % 6 == i % 6));
            kept += nearest(&placed, i, 10)
                .iter()
                .filter(|j| *j % 6 == i % 6)
                .count();
        }
        let share = kept as f64 / (10 * features.len()) as f64;
        assert!(share > 0.95, "{share}");
    }
}
