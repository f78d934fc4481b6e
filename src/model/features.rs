//! Pooled backbone features per poster, cached so that a head trains in seconds.
//!
//! The cache is a SQLite file (`features.sqlite` in the data directory) keyed by the
//! backbone and input size ([`cache_key`]) and the poster's SHA-256: a poster is run
//! through the backbone once, as itself and mirrored, whatever model is trained next.
//! Writes are one `BEGIN IMMEDIATE` transaction per batch.

use std::collections::HashMap;
use std::path::Path;

use burn::prelude::*;
use image::RgbImage;
use rusqlite::{Connection, OptionalExtension, params};

use super::network::{EraNet, FeatureLevels, NetworkConfig};
use super::{ModelError, Normalisation, Result, backbone, data};

/// Features of one poster: as it is and mirrored left–right.
#[derive(Debug, Clone, PartialEq)]
pub struct PosterFeatures {
    /// Pooled features of the poster.
    pub plain: Vec<f32>,
    /// Pooled features of its mirror image.
    pub flipped: Vec<f32>,
}

/// What identifies the features a network config produces: backbone id, input size and
/// a format number (bumped when extraction changes). `v1` holds the pooled last feature
/// map; `v2-levels` the same followed by the mid-level features (a head reading either
/// or both takes its part with [`head_input`]); `v3-style` the same followed by the style
/// statistics; `v4-layout` the last map followed by the layout features.
///
/// A network that fine-tunes its last blocks from cached inputs stores instead the input
/// map of its first trainable block (`map{block}`), flattened; with the layout features
/// (`map{block}+layout`) followed by the frozen stages' part of the layout summary
/// ([`backbone::EfficientNet::forward_until_layout`]).
pub fn cache_key(net: &NetworkConfig) -> Option<String> {
    let format = if net.finetune_blocks > 0 {
        if net.levels == FeatureLevels::Layout {
            format!("map{}+layout/v1", net.frozen_blocks())
        } else {
            format!("map{}/v1", net.frozen_blocks())
        }
    } else {
        match net.levels {
            FeatureLevels::Final => "v1",
            FeatureLevels::Mid | FeatureLevels::Multi => "v2-levels",
            FeatureLevels::Style => "v3-style",
            FeatureLevels::Layout => "v4-layout",
        }
        .to_owned()
    };
    net.arch
        .backbone_id()
        .map(|id| format!("{id}@{}x{}/{format}", net.input_width, net.input_height))
}

/// The part of cached features that `net`'s head reads.
pub fn head_input(net: &NetworkConfig, stored: PosterFeatures) -> PosterFeatures {
    if net.levels != FeatureLevels::Mid {
        return stored;
    }
    let skip = |v: Vec<f32>| {
        v.get(backbone::FEATURES..)
            .map(<[f32]>::to_vec)
            .unwrap_or_default()
    };
    PosterFeatures {
        plain: skip(stored.plain),
        flipped: skip(stored.flipped),
    }
}

/// The feature cache.
pub struct FeatureCache {
    conn: Connection,
}

fn db_err(path: &str) -> impl Fn(rusqlite::Error) -> ModelError + '_ {
    move |e| ModelError::Data(format!("feature cache {path}: {e}"))
}

fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_blob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl FeatureCache {
    /// Opens (creating) the cache at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(db_err(&name))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(db_err(&name))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE IF NOT EXISTS features (
                 model TEXT NOT NULL,
                 sha256 TEXT NOT NULL,
                 plain BLOB NOT NULL,
                 flipped BLOB NOT NULL,
                 PRIMARY KEY (model, sha256)
             );",
        )
        .map_err(db_err(&name))?;
        Ok(Self { conn })
    }

    /// Cached features of `sha256` under `key`.
    pub fn get(&self, key: &str, sha256: &str) -> Result<Option<PosterFeatures>> {
        self.conn
            .query_row(
                "SELECT plain, flipped FROM features WHERE model = ?1 AND sha256 = ?2",
                params![key, sha256],
                |r| {
                    Ok(PosterFeatures {
                        plain: from_blob(&r.get::<_, Vec<u8>>(0)?),
                        flipped: from_blob(&r.get::<_, Vec<u8>>(1)?),
                    })
                },
            )
            .optional()
            .map_err(db_err("get"))
    }

    /// Stores features, all in one transaction.
    pub fn put_many(&mut self, key: &str, items: &[(String, PosterFeatures)]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_err("put"))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO features (model, sha256, plain, flipped)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(db_err("put"))?;
            for (sha, f) in items {
                stmt.execute(params![key, sha, to_blob(&f.plain), to_blob(&f.flipped)])
                    .map_err(db_err("put"))?;
            }
        }
        tx.commit().map_err(db_err("put"))
    }
}

/// Runs `posters` through `net`'s feature extractor (as they are and mirrored): the
/// pooled last feature map, followed by the mid-level features when `net` reads them
/// (what [`cache_key`] stores).
pub fn extract(
    net: &EraNet,
    config: &NetworkConfig,
    norm: &Normalisation,
    posters: &[RgbImage],
    device: &Device,
) -> Result<Vec<PosterFeatures>> {
    if posters.is_empty() {
        return Ok(Vec::new());
    }
    let n = posters.len();
    let mut values = Vec::with_capacity(n * 3 * config.input_width * config.input_height);
    for p in posters {
        values.extend(data::input_values(p, config, norm));
    }
    let x: Tensor<4> = Tensor::from_data(
        TensorData::new(values, [n, 3, config.input_height, config.input_width]),
        device,
    );
    let both = Tensor::cat(vec![x.clone(), x.flip([3])], 0);
    if config.finetune_blocks > 0 {
        let backbone = net
            .backbone()
            .ok_or_else(|| ModelError::Data("the network has no backbone".into()))?;
        if config.levels == FeatureLevels::Layout {
            let (maps, earlier) = backbone.forward_until_layout(both, config.frozen_blocks());
            let [b, c, h, w] = maps.dims();
            return split_pairs(
                Tensor::cat(vec![maps.reshape([b, c * h * w]), earlier], 1),
                n,
            );
        }
        let maps = backbone.forward_until(both, config.frozen_blocks());
        let [b, c, h, w] = maps.dims();
        return split_pairs(maps.reshape([b, c * h * w]), n);
    }
    let out = net.forward_detached(both);
    let [b, c, _, _] = out.features.dims();
    let last = out.features.mean_dim(3).mean_dim(2).reshape([b, c]);
    let all = match out.mid {
        Some(mid) => Tensor::cat(vec![last, mid], 1),
        None => last,
    };
    split_pairs(all, n)
}

/// Rows `[2n, c]` (posters, then their mirror images) as per-poster pairs.
fn split_pairs(all: Tensor<2>, n: usize) -> Result<Vec<PosterFeatures>> {
    let c = all.dims()[1];
    let pooled: Vec<f32> = all
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Inference(format!("reading features: {e:?}")))?;
    if pooled.len() != 2 * n * c {
        return Err(ModelError::Inference("unexpected feature size".into()));
    }
    let (plain, flipped) = pooled.split_at(n * c);
    Ok(plain
        .chunks(c)
        .zip(flipped.chunks(c))
        .map(|(p, f)| PosterFeatures {
            plain: p.to_vec(),
            flipped: f.to_vec(),
        })
        .collect())
}

/// Features per sample (`None` where unreadable) and `(file, reason)` of the unreadable.
pub type FeaturesFor = (Vec<Option<PosterFeatures>>, Vec<(String, String)>);

/// Features for every sample, from the cache where present, else extracted in batches of
/// `batch` (decoding in parallel) and stored. `progress(done, total)` is called after
/// each batch; `cancelled()` stops between batches. Posters that cannot be read come back
/// as `None` with the reason in the second list. With `low_quality`, each poster is first
/// shrunk and re-encoded as JPEG ([`data::low_quality_change`] with seed 0, the same
/// change whatever the split) and cached under the key with `+low` appended: training
/// copies that teach a head what small, compressed posters look like.
#[allow(clippy::too_many_arguments)]
pub fn features_for(
    low_quality: bool,
    samples: &[data::Sample],
    net: &EraNet,
    config: &NetworkConfig,
    norm: &Normalisation,
    cache: &mut FeatureCache,
    device: &Device,
    batch: usize,
    mut progress: impl FnMut(usize, usize),
    cancelled: impl Fn() -> bool,
) -> Result<FeaturesFor> {
    use rayon::prelude::*;
    let mut key = cache_key(config)
        .ok_or_else(|| ModelError::Data("the scratch network caches no features".into()))?;
    if low_quality {
        key.push_str("+low");
    }
    let mut out: Vec<Option<PosterFeatures>> = Vec::with_capacity(samples.len());
    let mut missing = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let hit = cache.get(&key, &s.key)?;
        if hit.is_none() {
            missing.push(i);
        }
        out.push(hit.map(|f| head_input(config, f)));
    }
    let total = samples.len();
    let mut done = total - missing.len();
    progress(done, total);
    // Layout features complete cheaply from a fine-tuning cache of the same posters.
    let derivable = config.finetune_blocks == 0 && config.levels == FeatureLevels::Layout;
    if derivable && let Some(backbone) = net.backbone() {
        let mut left = Vec::new();
        // Stage-input shapes, probed once per run.
        let mut shapes = HashMap::new();
        for chunk in missing.chunks(4 * batch.max(1)) {
            if cancelled() {
                return Err(ModelError::Data("cancelled".into()));
            }
            let derived = from_stage_inputs(
                low_quality,
                samples,
                chunk,
                backbone,
                config,
                cache,
                device,
                &mut shapes,
            )?;
            let mut to_store = Vec::new();
            for (&i, f) in chunk.iter().zip(derived) {
                match f {
                    Some(f) => {
                        to_store.push((samples[i].key.clone(), f.clone()));
                        out[i] = Some(head_input(config, f));
                    }
                    None => left.push(i),
                }
            }
            cache.put_many(&key, &to_store)?;
            done += to_store.len();
            progress(done, total);
        }
        missing = left;
    }
    let limits = crate::imaging::ImageLimits::default();
    let mut failed = Vec::new();
    let mut pending: HashMap<usize, PosterFeatures> = HashMap::new();
    for chunk in missing.chunks(batch.max(1)) {
        if cancelled() {
            return Err(ModelError::Data("cancelled".into()));
        }
        let decoded: Vec<(usize, std::result::Result<RgbImage, String>)> = chunk
            .par_iter()
            .map(|&i| {
                let r = crate::imaging::decode_poster_file(&samples[i].path, &limits)
                    .map(|d| d.rgb)
                    .map_err(|e| e.to_string())
                    .and_then(|rgb| {
                        if low_quality {
                            data::low_quality_change(&samples[i].key, 0).apply(rgb)
                        } else {
                            Ok(rgb)
                        }
                    });
                (i, r)
            })
            .collect();
        let mut ok_idx = Vec::new();
        let mut images = Vec::new();
        for (i, r) in decoded {
            match r {
                Ok(img) => {
                    ok_idx.push(i);
                    images.push(img);
                }
                Err(why) => failed.push((samples[i].path.display().to_string(), why)),
            }
        }
        let feats = extract(net, config, norm, &images, device)?;
        let mut to_store = Vec::with_capacity(feats.len());
        for (&i, f) in ok_idx.iter().zip(feats) {
            to_store.push((samples[i].key.clone(), f.clone()));
            pending.insert(i, head_input(config, f));
        }
        cache.put_many(&key, &to_store)?;
        done += chunk.len();
        progress(done, total);
    }
    for (i, f) in pending {
        out[i] = Some(f);
    }
    Ok((out, failed))
}

/// Layout features of `chunk`'s posters (`v4-layout`, see [`cache_key`]) completed from a
/// fine-tuning cache of the same backbone, input size and copy (`map{block}+layout`: the
/// input of a stage and the earlier stages' summary): only the later stages and the head
/// conv run. `None` where no such cache entry exists. `shapes` keeps each stage's input
/// shape once probed.
#[allow(clippy::too_many_arguments)]
fn from_stage_inputs(
    low_quality: bool,
    samples: &[data::Sample],
    chunk: &[usize],
    backbone: &backbone::EfficientNet,
    config: &NetworkConfig,
    cache: &FeatureCache,
    device: &Device,
    shapes: &mut HashMap<usize, [usize; 3]>,
) -> Result<Vec<Option<PosterFeatures>>> {
    let arch = config.arch;
    let blocks = arch.block_count();
    let mut out: Vec<Option<PosterFeatures>> = vec![None; chunk.len()];
    // Latest stage first: the least left to run.
    for start in (1..blocks).rev() {
        let Some(earlier) = arch.frozen_layout_len(start) else {
            continue;
        };
        let mut source = config.clone();
        source.finetune_blocks = blocks - start;
        let Some(mut key) = cache_key(&source) else {
            continue;
        };
        if low_quality {
            key.push_str("+low");
        }
        let mut found = Vec::new();
        for (slot, &i) in chunk.iter().enumerate() {
            if out[slot].is_none()
                && let Some(f) = cache.get(&key, &samples[i].key)?
            {
                found.push((slot, f));
            }
        }
        if found.is_empty() {
            continue;
        }
        let [c, h, w] = *shapes.entry(start).or_insert_with(|| {
            let probe: Tensor<4> =
                Tensor::zeros([1, 3, config.input_height, config.input_width], device);
            let [_, c, h, w] = backbone.forward_until(probe, start).dims();
            [c, h, w]
        });
        let row = c * h * w + earlier;
        found.retain(|(_, f)| f.plain.len() == row && f.flipped.len() == row);
        let n = found.len();
        if n == 0 {
            continue;
        }
        let mut values = Vec::with_capacity(2 * n * row);
        for (_, f) in &found {
            values.extend_from_slice(&f.plain);
        }
        for (_, f) in &found {
            values.extend_from_slice(&f.flipped);
        }
        let rows: Tensor<2> = Tensor::from_data(TensorData::new(values, [2 * n, row]), device);
        let features = backbone.features_from_cached(rows, start, [c, h, w], earlier);
        let pairs = split_pairs(features, n)?;
        for ((slot, _), f) in found.iter().zip(pairs) {
            out[*slot] = Some(f);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_round_trips_and_keys_by_model() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = FeatureCache::open(&dir.path().join("f.sqlite")).unwrap();
        let f = PosterFeatures {
            plain: vec![1.0, -2.5, 3.25],
            flipped: vec![0.0, 0.5, 1e-7],
        };
        cache
            .put_many("a@1x1/v1", &[("abc".into(), f.clone())])
            .unwrap();
        assert_eq!(cache.get("a@1x1/v1", "abc").unwrap(), Some(f));
        assert_eq!(cache.get("b@1x1/v1", "abc").unwrap(), None);
        assert_eq!(cache.get("a@1x1/v1", "abd").unwrap(), None);
    }
}
