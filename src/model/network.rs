//! The era network: a feature extractor, global average pooling, an optional hidden layer,
//! dropout and a linear layer onto the year bins.
//!
//! The extractor is either the small CNN trained from scratch (conv blocks of 3×3 conv,
//! batch norm, ReLU; a 2×2 max-pool after each stage of `stage_depth` blocks but the
//! last; sized for posters downscaled to 64×96) or a pretrained
//! [`EfficientNet`](super::backbone::EfficientNet) backbone. Its last feature map is what
//! Grad-CAM looks at; the same network serves training, inference and saliency.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig};
use burn::nn::{PaddingConfig2d, Relu};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use super::backbone::{self, Arch, EfficientNet};

/// Shape of the network.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetworkConfig {
    /// Input width in pixels.
    pub input_width: usize,
    /// Input height in pixels.
    pub input_height: usize,
    /// Channels of each conv block.
    pub widths: Vec<usize>,
    /// Output classes (year bins).
    pub classes: usize,
    /// Dropout before the classifier.
    pub dropout: f64,
    /// Conv blocks per stage: a 2×2 max-pool follows every `stage_depth`-th block (never
    /// the last). 1 (the default, and the shipped model's shape) pools after each block.
    #[serde(default = "one")]
    pub stage_depth: usize,
    /// Feature extractor: the scratch CNN (`widths`) or a pretrained backbone.
    #[serde(default)]
    pub arch: Arch,
    /// With a backbone: how many of its last blocks are trained (0: the backbone stays
    /// frozen and only the head learns, on cached features).
    #[serde(default)]
    pub finetune_blocks: usize,
    /// Units of a hidden layer (ReLU) before the classifier; 0 for a linear head.
    #[serde(default)]
    pub hidden: usize,
    /// With a backbone: which of its features the head reads.
    #[serde(default)]
    pub levels: FeatureLevels,
    /// Heads on the same features, each trained on its own (own initialisation, batches
    /// and dropout), whose bin probabilities are averaged: an ensemble at the cost of one
    /// backbone pass. 1 (the default) is a single head.
    #[serde(default = "one")]
    pub heads: usize,
}

/// Which backbone features the head reads.
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
pub enum FeatureLevels {
    /// The last feature map (1280 channels after the head conv), averaged.
    #[default]
    Final,
    /// Mid-level: the outputs of the last three stages, each averaged (624 for Lite0).
    Mid,
    /// Both, side by side.
    Multi,
    /// The last feature map, averaged, and the style statistics of the last five stages:
    /// the mean and standard deviation of each channel (2 × 744 for Lite0).
    Style,
    /// The last feature map, averaged, the style statistics of every stage and the
    /// mid-level features of the top, middle and bottom third of the poster
    /// ([`backbone::Summary::Layout`]; 1280 + 3440 for Lite0).
    Layout,
}

impl FeatureLevels {
    /// Whether the final features are read.
    pub fn final_features(self) -> bool {
        self != Self::Mid
    }

    /// Whether the mid-level features are read.
    pub fn mid_features(self) -> bool {
        self != Self::Final
    }

    /// What the backbone summarises besides the last map, if anything.
    pub fn summary(self) -> Option<backbone::Summary> {
        match self {
            Self::Final => None,
            Self::Mid | Self::Multi => Some(backbone::Summary::Mid),
            Self::Style => Some(backbone::Summary::Style),
            Self::Layout => Some(backbone::Summary::Layout),
        }
    }
}

fn one() -> usize {
    1
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            input_width: 64,
            input_height: 96,
            widths: vec![32, 64, 128, 192],
            classes: super::YearBins::default().count,
            dropout: 0.3,
            stage_depth: 1,
            arch: Arch::Scratch,
            finetune_blocks: 0,
            hidden: 0,
            levels: FeatureLevels::Final,
            heads: 1,
        }
    }
}

impl NetworkConfig {
    /// The default shape for a pretrained backbone (the shipped model's recipe): 160×240
    /// input (about the w154 posters' own size, 154×231), the last feature map with the
    /// layout features, an MLP head of 512 units with dropout 0.5.
    pub fn pretrained(arch: Arch) -> Self {
        Self {
            input_width: 160,
            input_height: 240,
            widths: Vec::new(),
            dropout: 0.5,
            arch,
            hidden: 512,
            levels: FeatureLevels::Layout,
            ..Self::default()
        }
    }

    /// Channels of the pooled features the head reads.
    pub fn feature_channels(&self) -> usize {
        if self.arch == Arch::Scratch {
            return self.widths.last().copied().unwrap_or(3);
        }
        let mut c = 0;
        if self.levels.final_features() {
            c += backbone::FEATURES;
        }
        c + match self.levels.summary() {
            None => 0,
            Some(backbone::Summary::Mid) => self.arch.mid_channels(),
            Some(backbone::Summary::Style) => self.arch.style_channels(),
            Some(backbone::Summary::Layout) => self.arch.layout_channels(),
        }
    }

    /// Backbone blocks kept frozen in training.
    pub fn frozen_blocks(&self) -> usize {
        let total = self.arch.block_count();
        if self.finetune_blocks == 0 {
            total + 1
        } else {
            total.saturating_sub(self.finetune_blocks)
        }
    }
}

/// The part after pooling: optional hidden layer, dropout, classifier. Trained alone on
/// cached backbone features, then placed into an [`EraNet`]. With
/// [`NetworkConfig::heads`] above 1 it is an ensemble: `more` holds the other members
/// (each with an empty `more`), and [`EraHead::forward`] gives the logits of their
/// averaged bin probabilities.
#[derive(Module, Debug)]
pub struct EraHead {
    /// Hidden layer (ReLU after it).
    pub hidden: Option<Linear>,
    /// Dropout before the classifier.
    pub dropout: Dropout,
    /// The classifier onto the year bins.
    pub head: Linear,
    /// The ensemble's other members (empty for a single head).
    pub more: Vec<EraHead>,
}

impl EraHead {
    /// A freshly initialised head for `config` (with its [`NetworkConfig::heads`]
    /// members, each initialised on its own).
    pub fn new(config: &NetworkConfig, device: &Device) -> Self {
        let mut head = Self::member(config, device);
        head.more = (1..config.heads.max(1))
            .map(|_| Self::member(config, device))
            .collect();
        head
    }

    fn member(config: &NetworkConfig, device: &Device) -> Self {
        let c = config.feature_channels();
        let (hidden, last) = if config.hidden > 0 {
            (
                Some(LinearConfig::new(c, config.hidden).init(device)),
                config.hidden,
            )
        } else {
            (None, c)
        };
        Self {
            hidden,
            dropout: DropoutConfig::new(config.dropout).init(),
            head: LinearConfig::new(last, config.classes).init(device),
            more: Vec::new(),
        }
    }

    /// Members of the ensemble (1 for a single head).
    pub fn members(&self) -> usize {
        1 + self.more.len()
    }

    /// Logits of member `k` alone (0 is this head's own layers), for training each
    /// member on its own loss.
    pub fn forward_member(&self, k: usize, pooled: Tensor<2>) -> Tensor<2> {
        match k.checked_sub(1).and_then(|i| self.more.get(i)) {
            Some(m) => m.member_logits(pooled),
            None => self.member_logits(pooled),
        }
    }

    fn member_logits(&self, pooled: Tensor<2>) -> Tensor<2> {
        let x = match &self.hidden {
            Some(h) => burn::tensor::activation::relu(h.forward(pooled)),
            None => pooled,
        };
        self.head.forward(self.dropout.forward(x))
    }

    /// This head with an input standardisation `(x − mean) / sd` folded into its first
    /// layer, so that a head trained on standardised features reads raw ones (and with
    /// `inverse`, taken back out again). Parameter ids are kept (optimiser state applies).
    pub fn fold_scaling(&self, mean: &[f32], sd: &[f32], inverse: bool) -> Self {
        let mut out = self.clone();
        out.more = self
            .more
            .iter()
            .map(|m| m.fold_scaling(mean, sd, inverse))
            .collect();
        let first = match &mut out.hidden {
            Some(h) => h,
            None => &mut out.head,
        };
        let w = first.weight.val().detach();
        let [n, d_out] = w.dims();
        if mean.len() != n || sd.len() != n {
            return self.clone();
        }
        let device = w.device();
        let s_col: Tensor<2> = Tensor::from_data(TensorData::new(sd.to_vec(), [n, 1]), &device);
        let m_row: Tensor<2> = Tensor::from_data(TensorData::new(mean.to_vec(), [1, n]), &device);
        // W' = W / s and b' = b − mᵀW'; inversely W = W'·s and b = b' + mᵀW'.
        let scaled = if inverse {
            w.clone()
        } else {
            w.clone() / s_col.clone()
        };
        let shift = m_row.matmul(scaled).reshape([d_out]);
        first.weight = first.weight.clone().map(|w| {
            let w = w.detach();
            if inverse {
                w * s_col.clone()
            } else {
                w / s_col.clone()
            }
        });
        first.bias = first.bias.clone().map(|b| {
            b.map(|b| {
                let b = b.detach();
                if inverse {
                    b + shift.clone()
                } else {
                    b - shift.clone()
                }
            })
        });
        out
    }

    /// Logits from pooled features `[batch, channels]`: a single head's own, or for an
    /// ensemble the logarithm of its members' mean bin probabilities (whose softmax is
    /// that mean).
    pub fn forward(&self, pooled: Tensor<2>) -> Tensor<2> {
        if self.more.is_empty() {
            return self.member_logits(pooled);
        }
        let first = softmax(self.member_logits(pooled.clone()), 1);
        let sum = self.more.iter().fold(first, |sum, m| {
            sum + softmax(m.member_logits(pooled.clone()), 1)
        });
        // Probabilities below 1e-12 are floored so that the logarithm stays finite.
        (sum / self.members() as f32).clamp_min(1e-12).log()
    }
}

/// A part of the era network trained alone on cached inputs `[batch, values]`: the head
/// on pooled backbone features, or the backbone's last blocks and the head on the cached
/// input map of the first of those blocks.
pub trait CachedPart: Module {
    /// Logits for a batch of cached inputs.
    fn forward_cached(&self, x: Tensor<2>) -> Tensor<2>;
    /// Members trained each on its own batches and loss (an ensemble of heads).
    fn members(&self) -> usize {
        1
    }
    /// Logits of member `k` alone.
    fn forward_member(&self, _k: usize, x: Tensor<2>) -> Tensor<2> {
        self.forward_cached(x)
    }
    /// `net` with this part's weights in place.
    fn install(&self, net: EraNet) -> EraNet;
    /// Whether it trains on standardised inputs (see [`EraHead::fold_scaling`]).
    fn standardises_inputs(&self) -> bool {
        false
    }
    /// This part with the input standardisation folded in (or out, with `inverse`).
    fn fold_scaling(&self, _mean: &[f32], _sd: &[f32], _inverse: bool) -> Self {
        self.clone()
    }
}

impl CachedPart for EraHead {
    fn forward_cached(&self, x: Tensor<2>) -> Tensor<2> {
        self.forward(x)
    }

    fn members(&self) -> usize {
        EraHead::members(self)
    }

    fn forward_member(&self, k: usize, x: Tensor<2>) -> Tensor<2> {
        EraHead::forward_member(self, k, x)
    }

    fn install(&self, net: EraNet) -> EraNet {
        net.with_head(self.clone())
    }

    fn standardises_inputs(&self) -> bool {
        true
    }

    fn fold_scaling(&self, mean: &[f32], sd: &[f32], inverse: bool) -> Self {
        EraHead::fold_scaling(self, mean, sd, inverse)
    }
}

/// The backbone's blocks from `start` on, its head conv and the era head: what fine-tunes
/// on cached block inputs (flattened `[channels, height, width]` maps). With the layout
/// features each cached row also holds, after the map, the frozen stages' part of the
/// layout summary (`earlier` values), and the tail recomputes the trained stages' part.
#[derive(Module, Debug)]
pub struct EraTail {
    backbone: EfficientNet,
    head: EraHead,
    start: usize,
    channels: usize,
    height: usize,
    width: usize,
    /// Values of the frozen stages' layout summary after each map (0: the head reads the
    /// pooled last map only).
    earlier: usize,
}

impl EraTail {
    /// The tail of `net` from block `start` on, reading maps of `shape` (`[c, h, w]`)
    /// followed by `earlier` values of the frozen stages' layout summary (0 for a head on
    /// the last map alone).
    pub fn new(
        net: &EraNet,
        start: usize,
        shape: [usize; 3],
        earlier: usize,
    ) -> super::Result<Self> {
        let backbone = net
            .backbone()
            .cloned()
            .ok_or_else(|| super::ModelError::Data("the network has no backbone".into()))?;
        let [channels, height, width] = shape;
        Ok(Self {
            backbone,
            head: net.head(),
            start,
            channels,
            height,
            width,
            earlier,
        })
    }

    /// The tail that `network` (fine-tuning its last blocks from cached inputs) trains and
    /// reads: from its first trainable block on, on that block's cached input maps, with
    /// the frozen stages' layout summary after each map when it reads the layout features.
    pub fn on_cached_inputs(
        net: &EraNet,
        network: &NetworkConfig,
        device: &Device,
    ) -> super::Result<Self> {
        let start = network.frozen_blocks();
        let probe: Tensor<4> =
            Tensor::zeros([1, 3, network.input_height, network.input_width], device);
        let backbone = net
            .backbone()
            .ok_or_else(|| super::ModelError::Data("the network has no backbone".into()))?;
        match network.levels {
            FeatureLevels::Final => {
                let [_, c, h, w] = backbone.forward_until(probe, start).dims();
                Self::new(net, start, [c, h, w], 0)
            }
            FeatureLevels::Layout => {
                let (map, earlier) = backbone.forward_until_layout(probe, start);
                let [_, c, h, w] = map.dims();
                Self::new(net, start, [c, h, w], earlier.dims()[1])
            }
            _ => Err(super::ModelError::Data(
                "fine-tuning from cached block inputs reads the last feature map \
                 (--levels final) or the layout features (--levels layout)"
                    .into(),
            )),
        }
    }
}

impl CachedPart for EraTail {
    fn forward_cached(&self, x: Tensor<2>) -> Tensor<2> {
        let shape = [self.channels, self.height, self.width];
        let features = self
            .backbone
            .features_from_cached(x, self.start, shape, self.earlier);
        self.head.forward(features)
    }

    fn install(&self, net: EraNet) -> EraNet {
        net.with_backbone(self.backbone.clone())
            .with_head(self.head.clone())
    }
}

/// One conv block.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    norm: BatchNorm,
    relu: Relu,
}

impl ConvBlock {
    fn new(channels_in: usize, channels_out: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([channels_in, channels_out], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .with_bias(false)
                .init(device),
            norm: BatchNormConfig::new(channels_out).init(device),
            relu: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.relu.forward(self.norm.forward(self.conv.forward(x)))
    }
}

/// The era network.
#[derive(Module, Debug)]
pub struct EraNet {
    blocks: Vec<ConvBlock>,
    backbone: Option<EfficientNet>,
    pool: MaxPool2d,
    hidden: Option<Linear>,
    dropout: Dropout,
    head: Linear,
    /// The other members of an ensemble of heads ([`EraHead::more`]).
    more_heads: Vec<EraHead>,
    stage_depth: usize,
    frozen_blocks: usize,
    final_features: bool,
    mid_features: bool,
    style_features: bool,
    layout_features: bool,
}

/// What a forward pass gives: logits, and the last conv block's activations (for Grad-CAM).
pub struct ForwardOutput {
    /// `[batch, classes]` logits.
    pub logits: Tensor<2>,
    /// `[batch, channels, h, w]` activations of the last block.
    pub features: Tensor<4>,
    /// Mid-level backbone features `[batch, channels]` when the head reads them.
    pub mid: Option<Tensor<2>>,
}

impl EraNet {
    /// A new network: the scratch CNN freshly initialised, or the pretrained backbone
    /// with a fresh head.
    pub fn new(config: &NetworkConfig, device: &Device) -> super::Result<Self> {
        let mut blocks = Vec::new();
        let mut channels = 3;
        let backbone = if config.arch == Arch::Scratch {
            for &w in &config.widths {
                blocks.push(ConvBlock::new(channels, w, device));
                channels = w;
            }
            None
        } else {
            Some(backbone::pretrained(config.arch, false, device)?)
        };
        let head = EraHead::new(config, device);
        Ok(Self {
            blocks,
            backbone,
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            hidden: head.hidden,
            dropout: head.dropout,
            head: head.head,
            more_heads: head.more,
            stage_depth: config.stage_depth.max(1),
            frozen_blocks: config.frozen_blocks(),
            final_features: config.arch == Arch::Scratch || config.levels.final_features(),
            mid_features: config.arch != Arch::Scratch && config.levels.mid_features(),
            style_features: config.arch != Arch::Scratch && config.levels == FeatureLevels::Style,
            layout_features: config.arch != Arch::Scratch && config.levels == FeatureLevels::Layout,
        })
    }

    /// The head (hidden layer, dropout, classifier) as its own module.
    pub fn head(&self) -> EraHead {
        EraHead {
            hidden: self.hidden.clone(),
            dropout: self.dropout.clone(),
            head: self.head.clone(),
            more: self.more_heads.clone(),
        }
    }

    /// Puts `head` in place of this network's head.
    pub fn with_head(mut self, head: EraHead) -> Self {
        self.hidden = head.hidden;
        self.dropout = head.dropout;
        self.head = head.head;
        self.more_heads = head.more;
        self
    }

    /// The pretrained backbone, if this network has one.
    pub fn backbone(&self) -> Option<&EfficientNet> {
        self.backbone.as_ref()
    }

    /// Takes `other`'s backbone (if it has one) in place of this network's.
    pub fn with_loaded_backbone(self, other: EraNet) -> Self {
        match other.backbone {
            Some(b) => self.with_backbone(b),
            None => self,
        }
    }

    /// Replaces the backbone (e.g. with fine-tuned weights).
    pub fn with_backbone(mut self, backbone: EfficientNet) -> Self {
        self.backbone = Some(backbone);
        self
    }

    fn extract(&self, images: Tensor<4>, frozen: usize) -> (Tensor<4>, Option<Tensor<2>>) {
        if let Some(b) = &self.backbone {
            if self.mid_features {
                let summary = if self.layout_features {
                    backbone::Summary::Layout
                } else if self.style_features {
                    backbone::Summary::Style
                } else {
                    backbone::Summary::Mid
                };
                let (map, mid) = b.forward_levels(images, frozen, summary);
                return (map, Some(mid));
            }
            return (b.forward_frozen(images, frozen), None);
        }
        let n = self.blocks.len();
        let mut x = images;
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(x);
            if i + 1 < n && (i + 1) % self.stage_depth == 0 {
                x = self.pool.forward(x);
            }
        }
        (x, None)
    }

    /// Logits and last feature map for normalised images `[batch, 3, h, w]`, every layer
    /// differentiable (inference and saliency).
    pub fn forward_full(&self, images: Tensor<4>) -> ForwardOutput {
        self.forward_with(images, 0)
    }

    /// Like [`Self::forward_full`] but nothing differentiable (inference without
    /// saliency, the feature pass): the backbone runs detached, as fused kernels on the
    /// CPU. The same values.
    pub fn forward_detached(&self, images: Tensor<4>) -> ForwardOutput {
        self.forward_with(images, usize::MAX)
    }

    /// Logits, last feature map and mid-level features with the backbone's first
    /// `frozen` blocks detached ([`Self::extract`]).
    fn forward_with(&self, images: Tensor<4>, frozen: usize) -> ForwardOutput {
        let (features, mid) = self.extract(images, frozen);
        let logits = self.head_from_features(features.clone(), mid.clone());
        ForwardOutput {
            logits,
            features,
            mid,
        }
    }

    /// Logits for normalised images, nothing differentiable ([`Self::forward_detached`]).
    pub fn predict(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_detached(images).logits
    }

    /// Logits for training: a backbone's frozen blocks run detached, so only the blocks
    /// being fine-tuned and the head get gradients.
    pub fn forward_train(&self, images: Tensor<4>) -> Tensor<2> {
        let (features, mid) = self.extract(images, self.frozen_blocks);
        self.head_from_features(features, mid)
    }

    /// Logits for normalised images.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_full(images).logits
    }

    /// The head's input `[batch, channels]`: the pooled last feature map and, when the
    /// head reads them, the mid-level features. The poster's embedding (what the
    /// classifier sees), for maps of the catalog.
    pub fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        let out = self.forward_full(images);
        self.pooled(out.features, out.mid)
    }

    /// What the head reads, from the last feature map and the mid-level features.
    pub fn pooled(&self, features: Tensor<4>, mid: Option<Tensor<2>>) -> Tensor<2> {
        let [b, c, _, _] = features.dims();
        let last = features.mean_dim(3).mean_dim(2).reshape([b, c]);
        match mid {
            Some(m) if self.final_features => Tensor::cat(vec![last, m], 1),
            Some(m) => m,
            None => last,
        }
    }

    /// Logits from last-block features and the mid-level features the head reads (the
    /// part after Grad-CAM's layer).
    pub fn head_from_features(&self, features: Tensor<4>, mid: Option<Tensor<2>>) -> Tensor<2> {
        self.head().forward(self.pooled(features, mid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_scaling_reads_raw_features_like_the_head_read_standardised_ones() {
        let device = Device::flex();
        for hidden in [0, 8] {
            let config = NetworkConfig {
                hidden,
                dropout: 0.0,
                ..NetworkConfig::pretrained(Arch::EfficientnetLite0)
            };
            let c = config.feature_channels();
            let head = EraHead::new(&config, &device);
            let mean: Vec<f32> = (0..c).map(|i| (i % 7) as f32 - 3.0).collect();
            let sd: Vec<f32> = (0..c).map(|i| 0.5 + (i % 5) as f32).collect();
            let raw: Vec<f32> = (0..2 * c).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
            let z: Vec<f32> = raw
                .iter()
                .enumerate()
                .map(|(i, x)| (x - mean[i % c]) / sd[i % c])
                .collect();
            let t = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [2, c]), &device);
            let want = head
                .forward(t(z.clone()))
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let folded = head.fold_scaling(&mean, &sd, false);
            let got = folded
                .forward(t(raw))
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let back = folded.fold_scaling(&mean, &sd, true);
            let again = back.forward(t(z)).into_data().try_to_vec::<f32>().unwrap();
            for ((a, b), c) in want.iter().zip(&got).zip(&again) {
                assert!((a - b).abs() < 1e-3 * (1.0 + a.abs()), "{a} vs {b}");
                assert!((a - c).abs() < 1e-3 * (1.0 + a.abs()), "{a} vs {c}");
            }
        }
    }

    #[test]
    fn an_ensemble_of_heads_averages_its_members_probabilities() {
        let device = Device::flex();
        let config = NetworkConfig {
            hidden: 4,
            dropout: 0.0,
            heads: 3,
            classes: 6,
            ..NetworkConfig::pretrained(Arch::EfficientnetLite0)
        };
        let c = config.feature_channels();
        let head = EraHead::new(&config, &device);
        assert_eq!(head.members(), 3);
        let x: Vec<f32> = (0..2 * c).map(|i| ((i * 13) % 7) as f32 - 3.0).collect();
        let x = Tensor::<2>::from_data(TensorData::new(x, [2, c]), &device);
        let probs = |t: Tensor<2>| softmax(t, 1).into_data().try_to_vec::<f32>().unwrap();
        let members: Vec<Vec<f32>> = (0..3)
            .map(|k| probs(head.forward_member(k, x.clone())))
            .collect();
        // Members are initialised on their own, so they disagree.
        assert!(
            members[0]
                .iter()
                .zip(&members[1])
                .any(|(a, b)| (a - b).abs() > 1e-4)
        );
        let got = probs(head.forward(x.clone()));
        for (i, g) in got.iter().enumerate() {
            let want = members.iter().map(|m| m[i]).sum::<f32>() / 3.0;
            assert!((g - want).abs() < 1e-5, "{g} vs {want}");
        }
        // A network keeps every member through with_head and head.
        let net = EraNet::new(&config, &device)
            .unwrap()
            .with_head(head.clone());
        assert_eq!(net.head().members(), 3);
        let pooled = net.head().forward(x);
        assert_eq!(probs(pooled), got);
    }

    fn feature_dims(stage_depth: usize) -> [usize; 4] {
        let device = Device::flex();
        let config = NetworkConfig {
            input_width: 32,
            input_height: 48,
            widths: vec![4, 4, 8, 8],
            classes: 5,
            dropout: 0.0,
            stage_depth,
            ..NetworkConfig::default()
        };
        let net = EraNet::new(&config, &device).unwrap();
        let out = net.forward_full(Tensor::zeros([2, 3, 48, 32], &device));
        assert_eq!(out.logits.dims(), [2, 5]);
        out.features.dims()
    }

    #[test]
    fn stage_depth_sets_where_the_network_pools() {
        // One block per stage: pools after blocks 1, 2 and 3 (48x32 -> 6x4).
        assert_eq!(feature_dims(1), [2, 8, 6, 4]);
        // Two blocks per stage: pools once, after block 2 (48x32 -> 24x16).
        assert_eq!(feature_dims(2), [2, 8, 24, 16]);
    }

    #[test]
    fn configs_without_stage_depth_or_heads_read_as_one_of_each() {
        let json =
            r#"{"input_width":48,"input_height":72,"widths":[16,32],"classes":28,"dropout":0.3}"#;
        let config: NetworkConfig = serde_json::from_str(json).expect("old config parses");
        assert_eq!(config.stage_depth, 1);
        assert_eq!(config.heads, 1);
        assert_eq!(EraHead::new(&config, &Device::flex()).members(), 1);
    }
}
