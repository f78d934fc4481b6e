//! Saliency: which pixels drove a prediction. Five methods on the same model, all
//! explaining the log-odds of one era (the predicted one or any other) against the rest:
//!
//! - vanilla gradient: |∂ score / ∂ input|, the largest over colour channels;
//! - SmoothGrad: the same for the mean gradient over `samples` copies with Gaussian noise;
//! - Grad-CAM: the last conv block's activations weighted by their mean gradient,
//!   rectified and upsampled;
//! - Integrated Gradients: (input − black) × the mean gradient along the straight path
//!   from a black poster, in `steps` steps;
//! - occlusion: how much the era's log-odds drop when a patch is set to the poster's
//!   mean colour.
//!
//! Gradients come from Burn's autodiff on a frozen copy of the network (batch norm and
//! dropout in inference mode). Maps are computed at the network's input size, mapped
//! back onto the poster (undoing the resize and centre crop) and scaled to 0..1.

use burn::module::Module;
use burn::prelude::*;
use image::{Rgb, RgbImage, Rgba, RgbaImage};
use rand::{Rng, SeedableRng};

use super::inference::EraModel;
use super::network::EraNet;
use super::{ModelError, Result, data};
use crate::eras::EraScheme;

/// A saliency method.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum SaliencyMethod {
    /// Vanilla input gradient.
    #[default]
    Gradient,
    /// SmoothGrad (noisy copies, averaged).
    #[value(name = "smoothgrad")]
    SmoothGrad,
    /// Grad-CAM on the last conv block.
    #[value(name = "gradcam")]
    GradCam,
    /// Integrated Gradients from a black poster.
    Ig,
    /// Occlusion with a sliding grey patch.
    Occlusion,
}

impl SaliencyMethod {
    /// All methods, in menu order.
    pub const ALL: [Self; 5] = [
        Self::Gradient,
        Self::SmoothGrad,
        Self::GradCam,
        Self::Ig,
        Self::Occlusion,
    ];

    /// Name shown to users.
    pub fn label(self) -> &'static str {
        match self {
            Self::Gradient => "Vanilla gradient",
            Self::SmoothGrad => "SmoothGrad",
            Self::GradCam => "Grad-CAM",
            Self::Ig => "Integrated Gradients",
            Self::Occlusion => "Occlusion",
        }
    }
}

/// Settings of a saliency computation.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SaliencySettings {
    /// Method.
    pub method: SaliencyMethod,
    /// SmoothGrad: noisy samples.
    pub samples: usize,
    /// SmoothGrad: noise σ as a share of the input's value range.
    pub noise: f32,
    /// Integrated Gradients: steps along the path.
    pub steps: usize,
    /// Occlusion: patch side as a share of the input width.
    pub patch: f32,
}

impl Default for SaliencySettings {
    fn default() -> Self {
        Self {
            method: SaliencyMethod::Gradient,
            samples: 16,
            noise: 0.15,
            steps: 16,
            patch: 0.25,
        }
    }
}

impl SaliencySettings {
    /// These settings with another method.
    pub fn with_method(mut self, method: SaliencyMethod) -> Self {
        self.method = method;
        self
    }
}

/// A saliency map: one value in 0..1 per pixel, row by row.
#[derive(Debug, Clone, PartialEq)]
pub struct SaliencyMap {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Values, `width × height`, in 0..1.
    pub values: Vec<f32>,
}

impl SaliencyMap {
    /// Value at `(x, y)` (0 outside).
    pub fn get(&self, x: u32, y: u32) -> f32 {
        if x >= self.width || y >= self.height {
            return 0.0;
        }
        self.values[y as usize * self.width as usize + x as usize]
    }

    /// Mean value over the rectangle `x0..x1 × y0..y1` (clipped).
    pub fn mean_in(&self, x0: u32, y0: u32, x1: u32, y1: u32) -> f32 {
        let (x1, y1) = (x1.min(self.width), y1.min(self.height));
        let mut sum = 0.0;
        let mut n = 0usize;
        for y in y0..y1 {
            for x in x0..x1 {
                sum += self.get(x, y);
                n += 1;
            }
        }
        if n == 0 { 0.0 } else { sum / n as f32 }
    }

    /// Mean value over the whole map.
    pub fn mean(&self) -> f32 {
        self.values.iter().sum::<f32>() / self.values.len().max(1) as f32
    }
}

/// How an overlay is drawn over the poster.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum OverlayMode {
    /// The whole poster tinted by the heat map's colours.
    #[default]
    Heatmap,
    /// Heat colours only where saliency is high.
    Blend,
    /// The poster darkened where saliency is low.
    Mask,
}

impl OverlayMode {
    /// All modes, in menu order.
    pub const ALL: [Self; 3] = [Self::Heatmap, Self::Blend, Self::Mask];

    /// Name shown to users.
    pub fn label(self) -> &'static str {
        match self {
            Self::Heatmap => "Heat map",
            Self::Blend => "Blend",
            Self::Mask => "Mask",
        }
    }
}

/// Which year bins (wholly or in part) belong to `era` of `scheme`: the era's share of
/// each bin's years.
fn era_mask(model: &EraModel, scheme: &EraScheme, era: usize) -> Vec<f32> {
    let bins = &model.config.bins;
    (0..bins.count)
        .map(|b| {
            let mut one_hot = vec![0f32; bins.count];
            one_hot[b] = 1.0;
            bins.era_probs(&one_hot, scheme)
                .get(era)
                .map_or(0.0, |&p| p as f32)
        })
        .collect()
}

fn read_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Inference(format!("reading a tensor: {e:?}")))
}

/// The network on the autodiff device with every layer in inference mode.
fn gradient_net(model: &EraModel) -> EraNet {
    model.net.clone().train().freeze()
}

/// Summed log-odds of the era (mask over bins) for a batch of logits:
/// `log Σ_era e^l − log Σ_other e^l`. Unlike the probability it does not saturate when
/// the model is sure, so maps stay informative for confident predictions.
fn era_score(logits: Tensor<2>, mask: &[f32], device: &Device) -> Tensor<1> {
    let k = mask.len();
    let m = Tensor::<2>::from_data(TensorData::new(mask.to_vec(), [1, k]), device);
    let rest = m.clone().neg().add_scalar(1.0);
    let top = logits.clone().detach().max_dim(1);
    let e = (logits - top).exp();
    let era = (e.clone() * m).sum_dim(1).clamp_min(1e-30).log();
    let other = (e * rest).sum_dim(1).clamp_min(1e-30).log();
    (era - other).sum()
}

/// The era's log-odds from one row of logits (as [`era_score`], in f64).
fn log_odds(logits: &[f32], mask: &[f32]) -> f64 {
    let top = logits.iter().copied().fold(f32::MIN, f32::max);
    let (mut era, mut other) = (0f64, 0f64);
    for (&l, &m) in logits.iter().zip(mask) {
        let e = f64::from(l - top).exp();
        era += e * f64::from(m);
        other += e * f64::from(1.0 - m);
    }
    era.max(1e-300).ln() - other.max(1e-300).ln()
}

/// ∂ score / ∂ input for `n` inputs of the network's size, flattened NCHW.
fn input_gradients(
    model: &EraModel,
    net: &EraNet,
    inputs: Vec<f32>,
    n: usize,
    mask: &[f32],
) -> Result<Vec<f32>> {
    let cfg = &model.config.network;
    let device = model.device.clone().autodiff();
    let x = Tensor::<4>::from_data(
        TensorData::new(inputs, [n, 3, cfg.input_height, cfg.input_width]),
        &device,
    )
    .require_grad();
    let score = era_score(net.forward(x.clone()), mask, &device);
    let grads = score.backward();
    let g = x
        .grad(&grads)
        .ok_or_else(|| ModelError::Inference("no gradient reached the input".into()))?;
    read_vec(g)
}

/// The era's log-odds for `n` inputs, in inference mode.
fn era_log_odds(model: &EraModel, inputs: Vec<f32>, n: usize, mask: &[f32]) -> Result<Vec<f64>> {
    let cfg = &model.config.network;
    let x = Tensor::<4>::from_data(
        TensorData::new(inputs, [n, 3, cfg.input_height, cfg.input_width]),
        &model.device,
    );
    let logits = read_vec(model.net.forward(x))?;
    Ok(logits
        .chunks(mask.len())
        .map(|l| log_odds(l, mask))
        .collect())
}

/// Largest absolute value over the three channels of one CHW image.
fn channel_max_abs(chw: &[f32], plane: usize) -> Vec<f32> {
    (0..plane)
        .map(|i| {
            chw[i]
                .abs()
                .max(chw[plane + i].abs())
                .max(chw[2 * plane + i].abs())
        })
        .collect()
}

/// Standard normal samples (Box–Muller) from a seeded generator.
fn gaussian(rng: &mut rand::rngs::StdRng) -> f32 {
    let u1: f32 = rng.random::<f32>().max(1e-7);
    let u2: f32 = rng.random::<f32>();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// Saliency at the network's input size (`input_width × input_height`), unscaled.
fn raw_map(
    model: &EraModel,
    input: &[f32],
    mask: &[f32],
    settings: &SaliencySettings,
) -> Result<Vec<f32>> {
    let cfg = &model.config.network;
    let (w, h) = (cfg.input_width, cfg.input_height);
    let plane = w * h;
    match settings.method {
        SaliencyMethod::Gradient => {
            let g = input_gradients(model, &gradient_net(model), input.to_vec(), 1, mask)?;
            Ok(channel_max_abs(&g, plane))
        }
        SaliencyMethod::SmoothGrad => {
            let n = settings.samples.clamp(1, 256);
            let (lo, hi) = input
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            let sigma = settings.noise.max(0.0) * (hi - lo).max(1e-6);
            let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
            let mut batch = Vec::with_capacity(n * input.len());
            for _ in 0..n {
                batch.extend(input.iter().map(|&v| v + sigma * gaussian(&mut rng)));
            }
            // The mean of the raw gradients (noise-driven parts cancel), then its size.
            let g = input_gradients(model, &gradient_net(model), batch, n, mask)?;
            let mut mean = vec![0f32; input.len()];
            for sample in g.chunks(input.len()) {
                for (m, v) in mean.iter_mut().zip(sample) {
                    *m += v / n as f32;
                }
            }
            Ok(channel_max_abs(&mean, plane))
        }
        SaliencyMethod::GradCam => grad_cam(model, input, mask),
        SaliencyMethod::Ig => {
            let steps = settings.steps.clamp(1, 256);
            let norm = &model.config.normalisation;
            let baseline: Vec<f32> = (0..3)
                .flat_map(|c| std::iter::repeat_n(-norm.mean[c] / norm.std[c], plane))
                .collect();
            let mut batch = Vec::with_capacity(steps * input.len());
            for s in 0..steps {
                let alpha = (s as f32 + 0.5) / steps as f32;
                batch.extend(
                    input
                        .iter()
                        .zip(&baseline)
                        .map(|(&x, &b)| b + alpha * (x - b)),
                );
            }
            let g = input_gradients(model, &gradient_net(model), batch, steps, mask)?;
            let mut mean_grad = vec![0f32; input.len()];
            for sample in g.chunks(input.len()) {
                for (m, v) in mean_grad.iter_mut().zip(sample) {
                    *m += v / steps as f32;
                }
            }
            Ok((0..plane)
                .map(|i| {
                    (0..3)
                        .map(|c| {
                            let j = c * plane + i;
                            (input[j] - baseline[j]) * mean_grad[j]
                        })
                        .sum::<f32>()
                        .abs()
                })
                .collect())
        }
        SaliencyMethod::Occlusion => occlusion(model, input, mask, settings.patch),
    }
}

/// Grad-CAM: rectified, gradient-weighted last-block activations, upsampled to the input.
fn grad_cam(model: &EraModel, input: &[f32], mask: &[f32]) -> Result<Vec<f32>> {
    let cfg = &model.config.network;
    let x = Tensor::<4>::from_data(
        TensorData::new(input.to_vec(), [1, 3, cfg.input_height, cfg.input_width]),
        &model.device,
    );
    let out = model.net.forward_full(x);
    let (features, mid) = (out.features, out.mid);
    let [_, c, fh, fw] = features.dims();
    let values = read_vec(features)?;
    let device = model.device.clone().autodiff();
    let f = Tensor::<4>::from_data(TensorData::new(values.clone(), [1, c, fh, fw]), &device)
        .require_grad();
    let net = gradient_net(model);
    // The mid-level features (if the head reads them) are held fixed: Grad-CAM explains
    // the last map.
    let mid = mid
        .map(|m| -> Result<Tensor<2>> {
            let dims = m.dims();
            Ok(Tensor::from_data(
                TensorData::new(read_vec(m)?, dims),
                &device,
            ))
        })
        .transpose()?;
    let score = era_score(net.head_from_features(f.clone(), mid), mask, &device);
    let grads = score.backward();
    let g = read_vec(
        f.grad(&grads)
            .ok_or_else(|| ModelError::Inference("no gradient reached the features".into()))?,
    )?;
    let cells = fh * fw;
    let mut cam = vec![0f32; cells];
    for ch in 0..c {
        let weight: f32 = g[ch * cells..(ch + 1) * cells].iter().sum::<f32>() / cells as f32;
        for (i, v) in cam.iter_mut().enumerate() {
            *v += weight * values[ch * cells + i];
        }
    }
    for v in &mut cam {
        *v = v.max(0.0);
    }
    Ok(resample(&cam, fw, fh, cfg.input_width, cfg.input_height))
}

/// Occlusion: the era log-odds' drop when a patch is set to the poster's mean colour,
/// averaged over the patches covering each pixel.
fn occlusion(model: &EraModel, input: &[f32], mask: &[f32], patch: f32) -> Result<Vec<f32>> {
    let cfg = &model.config.network;
    let (w, h) = (cfg.input_width, cfg.input_height);
    let plane = w * h;
    let side = ((w as f32 * patch.clamp(0.02, 1.0)).round() as usize).clamp(2, w.min(h));
    let stride = (side / 3).max(1);
    let starts = |len: usize| -> Vec<usize> {
        let mut v: Vec<usize> = (0..len.saturating_sub(side) + 1).step_by(stride).collect();
        if v.last().is_some_and(|&l| l + side < len) {
            v.push(len - side);
        }
        v
    };
    let patches: Vec<(usize, usize)> = starts(h)
        .into_iter()
        .flat_map(|y| starts(w).into_iter().map(move |x| (x, y)))
        .collect();
    // The poster's own mean colour: a patch of it hides what is there without adding
    // a new shape of another colour.
    let fill: Vec<f32> = (0..3)
        .map(|c| input[c * plane..(c + 1) * plane].iter().sum::<f32>() / plane as f32)
        .collect();
    let base = era_log_odds(model, input.to_vec(), 1, mask)?
        .first()
        .copied()
        .unwrap_or(0.0);
    let mut sum = vec![0f32; plane];
    let mut count = vec![0f32; plane];
    for chunk in patches.chunks(64) {
        let mut batch = Vec::with_capacity(chunk.len() * input.len());
        for &(px, py) in chunk {
            let start = batch.len();
            batch.extend_from_slice(input);
            for (c, &value) in fill.iter().enumerate() {
                for y in py..py + side {
                    let row = start + c * plane + y * w;
                    batch[row + px..row + px + side].fill(value);
                }
            }
        }
        let odds = era_log_odds(model, batch, chunk.len(), mask)?;
        for (&(px, py), p) in chunk.iter().zip(odds) {
            let drop = (base - p) as f32;
            for y in py..py + side {
                for x in px..px + side {
                    sum[y * w + x] += drop;
                    count[y * w + x] += 1.0;
                }
            }
        }
    }
    Ok(sum
        .iter()
        .zip(&count)
        .map(|(s, c)| if *c > 0.0 { (s / c).max(0.0) } else { 0.0 })
        .collect())
}

/// Bilinear resampling with pixel centres aligned, edges clamped.
fn resample(src: &[f32], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(dw * dh);
    for y in 0..dh {
        let fy = ((y as f32 + 0.5) * sh as f32 / dh as f32 - 0.5).clamp(0.0, (sh - 1) as f32);
        for x in 0..dw {
            let fx = ((x as f32 + 0.5) * sw as f32 / dw as f32 - 0.5).clamp(0.0, (sw - 1) as f32);
            out.push(bilinear(src, sw, sh, fx, fy));
        }
    }
    out
}

fn bilinear(src: &[f32], sw: usize, sh: usize, fx: f32, fy: f32) -> f32 {
    let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(sw - 1), (y0 + 1).min(sh - 1));
    let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
    let at = |x: usize, y: usize| src[y * sw + x];
    let top = at(x0, y0) * (1.0 - tx) + at(x1, y0) * tx;
    let bottom = at(x0, y1) * (1.0 - tx) + at(x1, y1) * tx;
    top * (1.0 - ty) + bottom * ty
}

/// Maps a map at the network's input size onto a `width × height` poster: the poster
/// was stretched to the working size and centre-cropped, so this undoes both. Pixels in
/// the cropped-off margin take the nearest edge value.
fn to_poster_size(model: &EraModel, small: &[f32], width: u32, height: u32) -> Vec<f32> {
    let cfg = &model.config.network;
    let (iw, ih) = (cfg.input_width, cfg.input_height);
    let (ww, wh) = data::work_size(cfg);
    let (ox, oy) = ((ww - iw) / 2, (wh - ih) / 2);
    let mut out = Vec::with_capacity(width as usize * height as usize);
    for y in 0..height {
        let wy = (y as f32 + 0.5) * wh as f32 / height as f32 - 0.5 - oy as f32;
        let fy = wy.clamp(0.0, (ih - 1) as f32);
        for x in 0..width {
            let wx = (x as f32 + 0.5) * ww as f32 / width as f32 - 0.5 - ox as f32;
            let fx = wx.clamp(0.0, (iw - 1) as f32);
            out.push(bilinear(small, iw, ih, fx, fy));
        }
    }
    out
}

/// Scales values to 0..1 by their 99th percentile (so one hot pixel does not wash the
/// rest out); an all-zero map stays zero.
fn scale_unit(values: &mut [f32]) {
    for v in values.iter_mut() {
        if !v.is_finite() {
            *v = 0.0;
        }
    }
    let mut sorted: Vec<f32> = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    let idx = ((sorted.len() as f64 * 0.99) as usize).min(sorted.len().saturating_sub(1));
    let top = sorted.get(idx).copied().unwrap_or(0.0);
    let top = if top > 0.0 {
        top
    } else {
        sorted.last().copied().unwrap_or(0.0)
    };
    if top <= 0.0 {
        values.fill(0.0);
        return;
    }
    for v in values.iter_mut() {
        *v = (*v / top).clamp(0.0, 1.0);
    }
}

/// Saliency of `era` (an index into `scheme.eras`) for a poster, at `width × height`
/// (usually the poster's own size, or the size it is shown at).
pub fn saliency_at(
    model: &EraModel,
    rgb: &RgbImage,
    scheme: &EraScheme,
    era: usize,
    settings: &SaliencySettings,
    width: u32,
    height: u32,
) -> Result<SaliencyMap> {
    if era >= scheme.eras.len() {
        return Err(ModelError::Data(format!(
            "era {era} is not in the {} scheme ({} eras)",
            scheme.name,
            scheme.eras.len()
        )));
    }
    if width == 0 || height == 0 {
        return Err(ModelError::Data(
            "a saliency map needs a non-empty size".into(),
        ));
    }
    let mask = era_mask(model, scheme, era);
    let input = model.input(rgb);
    let small = raw_map(model, &input, &mask, settings)?;
    let mut values = to_poster_size(model, &small, width, height);
    scale_unit(&mut values);
    Ok(SaliencyMap {
        width,
        height,
        values,
    })
}

/// Saliency of `era` for a poster, at the poster's own size.
pub fn saliency(
    model: &EraModel,
    rgb: &RgbImage,
    scheme: &EraScheme,
    era: usize,
    settings: &SaliencySettings,
) -> Result<SaliencyMap> {
    saliency_at(model, rgb, scheme, era, settings, rgb.width(), rgb.height())
}

/// The heat map colour of a value in 0..1 (black, purple, red, orange, pale yellow; an
/// "inferno"-like ramp that stays readable in greyscale).
pub fn heat_colour(v: f32) -> [u8; 3] {
    const STOPS: [[f32; 3]; 5] = [
        [0.0, 0.0, 4.0],
        [87.0, 16.0, 110.0],
        [188.0, 55.0, 84.0],
        [249.0, 142.0, 9.0],
        [252.0, 255.0, 164.0],
    ];
    crate::imaging::colour_ramp(&STOPS, v)
}

/// The map's values at `w`×`h` (resampled when its size differs).
fn values_at(map: &SaliencyMap, w: u32, h: u32) -> Vec<f32> {
    if (map.width, map.height) == (w, h) {
        map.values.clone()
    } else {
        resample(
            &map.values,
            map.width as usize,
            map.height as usize,
            w as usize,
            h as usize,
        )
    }
}

/// The overlay as a layer of `width`×`height` to draw over the poster with the opacity as
/// its alpha tint (how the window shows it: moving the opacity slider only changes the
/// tint). Laid over the poster at opacity `a` it gives [`render_overlay`]'s pixels:
/// heat colours, opaque (heat map); heat colours with the saliency as alpha (blend);
/// black with 1 − saliency as alpha (mask).
pub fn render_layer(map: &SaliencyMap, width: u32, height: u32, mode: OverlayMode) -> RgbaImage {
    let values = values_at(map, width, height);
    RgbaImage::from_fn(width, height, |x, y| {
        let v = values[y as usize * width as usize + x as usize].clamp(0.0, 1.0);
        let heat = heat_colour(v);
        let alpha = |k: f32| (k * 255.0).round() as u8;
        match mode {
            OverlayMode::Heatmap => Rgba([heat[0], heat[1], heat[2], 255]),
            OverlayMode::Blend => Rgba([heat[0], heat[1], heat[2], alpha(v)]),
            OverlayMode::Mask => Rgba([0, 0, 0, alpha(1.0 - v)]),
        }
    })
}

/// Draws `map` over `poster` (both the same size; the map is resampled otherwise).
/// `opacity` in 0..1 sets how strongly the overlay shows.
pub fn render_overlay(
    poster: &RgbImage,
    map: &SaliencyMap,
    mode: OverlayMode,
    opacity: f32,
) -> RgbaImage {
    let (w, h) = poster.dimensions();
    let values = values_at(map, w, h);
    let a = opacity.clamp(0.0, 1.0);
    RgbaImage::from_fn(w, h, |x, y| {
        let v = values[y as usize * w as usize + x as usize];
        let Rgb(p) = *poster.get_pixel(x, y);
        let heat = heat_colour(v);
        let mix = |k: f32| -> [u8; 3] {
            let mut o = [0u8; 3];
            for c in 0..3 {
                o[c] = (f32::from(p[c]) * (1.0 - k) + f32::from(heat[c]) * k).round() as u8;
            }
            o
        };
        let rgb = match mode {
            OverlayMode::Heatmap => mix(a),
            OverlayMode::Blend => mix(a * v),
            OverlayMode::Mask => {
                let k = 1.0 - a + a * v;
                [
                    (f32::from(p[0]) * k).round() as u8,
                    (f32::from(p[1]) * k).round() as u8,
                    (f32::from(p[2]) * k).round() as u8,
                ]
            }
        };
        Rgba([rgb[0], rgb[1], rgb[2], 255])
    })
}

/// PNG bytes of an overlay.
pub fn encode_overlay_png(overlay: &RgbaImage) -> std::result::Result<Vec<u8>, image::ImageError> {
    let mut out = Vec::new();
    overlay.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_tinted_by_opacity_gives_the_rendered_overlay() {
        let (w, h) = (12, 18);
        let poster = RgbImage::from_fn(w, h, |x, y| {
            Rgb([(x * 20) as u8, (y * 13) as u8, ((x + y) * 7) as u8])
        });
        let map = SaliencyMap {
            width: 4,
            height: 6,
            values: (0..24).map(|i| i as f32 / 23.0).collect(),
        };
        for mode in OverlayMode::ALL {
            let layer = render_layer(&map, w, h, mode);
            for opacity in [0.0, 0.3, 0.55, 1.0] {
                let want = render_overlay(&poster, &map, mode, opacity);
                for (x, y, p) in poster.enumerate_pixels() {
                    // "Over" blending with the layer's alpha times the tint.
                    let l = layer.get_pixel(x, y);
                    let k = opacity * f32::from(l[3]) / 255.0;
                    for c in 0..3 {
                        let got = f32::from(p[c]) * (1.0 - k) + f32::from(l[c]) * k;
                        let want = f32::from(want.get_pixel(x, y)[c]);
                        assert!(
                            (got - want).abs() <= 1.5,
                            "{mode:?} {opacity} ({x},{y}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn resample_keeps_constants_and_corners() {
        let src = vec![2.0; 6];
        assert!(
            resample(&src, 2, 3, 7, 5)
                .iter()
                .all(|&v| (v - 2.0).abs() < 1e-6)
        );
        let ramp = vec![0.0, 1.0];
        let up = resample(&ramp, 2, 1, 4, 1);
        assert_eq!(up.first().copied(), Some(0.0));
        assert_eq!(up.last().copied(), Some(1.0));
        assert!(up.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn scale_unit_maps_to_zero_one_and_clears_non_finite() {
        let mut v: Vec<f32> = (0..200).map(|i| i as f32).collect();
        v[5] = f32::NAN;
        v[6] = f32::INFINITY;
        scale_unit(&mut v);
        assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
        assert_eq!(v[5], 0.0);
        assert_eq!(v[199], 1.0);
        let mut zeros = vec![0.0; 10];
        scale_unit(&mut zeros);
        assert!(zeros.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn overlay_modes_follow_opacity() {
        let poster = RgbImage::from_pixel(4, 4, Rgb([100, 150, 200]));
        let map = SaliencyMap {
            width: 4,
            height: 4,
            values: (0..16).map(|i| if i < 8 { 0.0 } else { 1.0 }).collect(),
        };
        // Opacity 0 leaves the poster as it is in every mode.
        for mode in OverlayMode::ALL {
            let o = render_overlay(&poster, &map, mode, 0.0);
            assert!(o.pixels().all(|p| p.0 == [100, 150, 200, 255]), "{mode:?}");
        }
        // Mask at full opacity blacks out the cold half and keeps the hot half.
        let m = render_overlay(&poster, &map, OverlayMode::Mask, 1.0);
        assert_eq!(m.get_pixel(0, 0).0, [0, 0, 0, 255]);
        assert_eq!(m.get_pixel(0, 3).0, [100, 150, 200, 255]);
        // Blend leaves cold pixels alone and colours hot ones.
        let b = render_overlay(&poster, &map, OverlayMode::Blend, 1.0);
        assert_eq!(b.get_pixel(1, 0).0, [100, 150, 200, 255]);
        let hot = heat_colour(1.0);
        assert_eq!(b.get_pixel(1, 3).0, [hot[0], hot[1], hot[2], 255]);
        // A map of another size is resampled rather than refused.
        let small = SaliencyMap {
            width: 2,
            height: 2,
            values: vec![0.5; 4],
        };
        assert_eq!(
            render_overlay(&poster, &small, OverlayMode::Heatmap, 0.5).dimensions(),
            (4, 4)
        );
    }

    #[test]
    fn heat_colours_run_dark_to_light() {
        let lum =
            |c: [u8; 3]| 0.3 * f32::from(c[0]) + 0.59 * f32::from(c[1]) + 0.11 * f32::from(c[2]);
        let ramp: Vec<f32> = (0..=10)
            .map(|i| lum(heat_colour(i as f32 / 10.0)))
            .collect();
        assert!(ramp.windows(2).all(|w| w[0] < w[1]), "{ramp:?}");
    }
}
