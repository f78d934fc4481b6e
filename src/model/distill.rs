//! Distillation: teacher models' bin probabilities on the training posters, mixed into
//! the soft year targets a student trains on (Hinton et al. 2015), so that a small model
//! learns what an ensemble of larger ones says, and keeps its own latency.
//!
//! Teachers read a pretrained backbone's cached features (a head on frozen features, or
//! a model fine-tuned from cached block inputs): their probabilities come from the same
//! feature cache the student trains on, so a teacher costs a head pass per poster once
//! its features are cached.

use std::path::{Path, PathBuf};

use burn::prelude::*;

use super::data::{self, Sample};
use super::features::{self, FeatureCache, PosterFeatures};
use super::inference::EraModel;
use super::network::EraTail;
use super::training::head_probs;
use super::{ModelError, Result, YearBins};

/// The averaged bin probabilities of `teachers` (model directories) on each of `samples`
/// (averaged with its mirror image), `None` where a teacher has no features for a poster.
/// `progress(done, total)` follows each teacher's feature lookups; `cancelled()` stops
/// between batches.
#[allow(clippy::too_many_arguments)]
pub fn teacher_probs(
    teachers: &[PathBuf],
    samples: &[Sample],
    bins: &YearBins,
    cache: &mut FeatureCache,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
    cancelled: impl Fn() -> bool,
) -> Result<Vec<Option<Vec<f32>>>> {
    let mut sums: Vec<Option<Vec<f32>>> = vec![Some(vec![0.0; bins.count]); samples.len()];
    for dir in teachers {
        let probs = one_teacher(dir, samples, bins, cache, device, &mut progress, &cancelled)?;
        for (sum, p) in sums.iter_mut().zip(probs) {
            match (sum.as_mut(), p) {
                (Some(s), Some(p)) => s.iter_mut().zip(p).for_each(|(s, p)| *s += p),
                _ => *sum = None,
            }
        }
    }
    let k = teachers.len().max(1) as f32;
    for s in sums.iter_mut().flatten() {
        s.iter_mut().for_each(|v| *v /= k);
    }
    Ok(sums)
}

fn one_teacher(
    dir: &Path,
    samples: &[Sample],
    bins: &YearBins,
    cache: &mut FeatureCache,
    device: &Device,
    progress: impl FnMut(usize, usize),
    cancelled: impl Fn() -> bool,
) -> Result<Vec<Option<Vec<f32>>>> {
    let bad = |why: &str| ModelError::Data(format!("teacher {}: {why}", dir.display()));
    let model = EraModel::load(dir, device)?;
    let network = &model.config.network;
    if model.config.bins != *bins {
        return Err(bad("its year bins differ from this run's"));
    }
    if !model.members.is_empty() {
        return Err(bad(
            "it combines several networks; name its member folders as teachers of their own",
        ));
    }
    if network.arch == super::backbone::Arch::Scratch {
        return Err(bad(
            "a teacher must read a pretrained backbone's cached features (a head, or a \
             model fine-tuned from cached block inputs)",
        ));
    }
    let (feats, _unreadable) = features::features_for(
        false,
        samples,
        &model.net,
        network,
        &model.config.normalisation,
        cache,
        device,
        16,
        progress,
        cancelled,
    )?;
    let present: Vec<(usize, &PosterFeatures)> = feats
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.as_ref().map(|f| (i, f)))
        .collect();
    let refs: Vec<&PosterFeatures> = present.iter().map(|(_, f)| *f).collect();
    let probs = if network.finetune_blocks == 0 {
        head_probs(&model.net.head(), &refs, device)?
    } else {
        let tail = EraTail::on_cached_inputs(&model.net, network, device)?;
        head_probs(&tail, &refs, device)?
    };
    let mut out = vec![None; samples.len()];
    for ((i, _), p) in present.iter().zip(probs) {
        out[*i] = Some(p);
    }
    Ok(out)
}

/// The target of a training poster: its soft year target, mixed with weight `weight`
/// with the teachers' probabilities where there are some.
pub fn target(
    year: i32,
    bins: &YearBins,
    sigma: f64,
    teacher: Option<&[f32]>,
    weight: f64,
) -> Vec<f32> {
    let truth = data::soft_target(year, bins, sigma);
    match teacher {
        Some(t) if weight > 0.0 && t.len() == truth.len() => {
            let w = weight.clamp(0.0, 1.0) as f32;
            truth
                .iter()
                .zip(t)
                .map(|(a, b)| (1.0 - w) * a + w * b)
                .collect()
        }
        _ => truth,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_mix_the_truth_with_the_teachers() {
        let bins = YearBins::default();
        let truth = data::soft_target(1955, &bins, 4.0);
        let mut teacher = vec![0f32; bins.count];
        teacher[bins.bin(2012)] = 1.0;
        assert_eq!(target(1955, &bins, 4.0, None, 0.7), truth);
        assert_eq!(target(1955, &bins, 4.0, Some(&teacher), 0.0), truth);
        assert_eq!(target(1955, &bins, 4.0, Some(&teacher), 1.0), teacher);
        let half = target(1955, &bins, 4.0, Some(&teacher), 0.5);
        assert!((half.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!((half[bins.bin(2012)] - 0.5).abs() < 1e-5);
        assert!((half[bins.bin(1955)] - truth[bins.bin(1955)] / 2.0).abs() < 1e-6);
        // A teacher with other bins is ignored.
        assert_eq!(target(1955, &bins, 4.0, Some(&[1.0]), 0.5), truth);
    }
}
