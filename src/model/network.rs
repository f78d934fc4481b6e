//! The CNN: conv blocks (3×3 conv, batch norm, ReLU; a 2×2 max-pool after each stage of
//! `stage_depth` blocks but the last),
//! global average pooling, dropout and a linear layer onto the year bins. Sized for
//! posters downscaled to 64×96; the last conv block is what Grad-CAM looks at.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig};
use burn::nn::{PaddingConfig2d, Relu};
use burn::prelude::*;

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
        }
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
    pool: MaxPool2d,
    dropout: Dropout,
    head: Linear,
    stage_depth: usize,
}

/// What a forward pass gives: logits, and the last conv block's activations (for Grad-CAM).
pub struct ForwardOutput {
    /// `[batch, classes]` logits.
    pub logits: Tensor<2>,
    /// `[batch, channels, h, w]` activations of the last block.
    pub features: Tensor<4>,
}

impl EraNet {
    /// A freshly initialised network.
    pub fn new(config: &NetworkConfig, device: &Device) -> Self {
        let mut blocks = Vec::new();
        let mut channels = 3;
        for &w in &config.widths {
            blocks.push(ConvBlock::new(channels, w, device));
            channels = w;
        }
        Self {
            blocks,
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            dropout: DropoutConfig::new(config.dropout).init(),
            head: LinearConfig::new(channels, config.classes).init(device),
            stage_depth: config.stage_depth.max(1),
        }
    }

    /// Logits and last-block features for normalised images `[batch, 3, h, w]`.
    pub fn forward_full(&self, images: Tensor<4>) -> ForwardOutput {
        let n = self.blocks.len();
        let mut x = images;
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(x);
            if i + 1 < n && (i + 1) % self.stage_depth == 0 {
                x = self.pool.forward(x);
            }
        }
        let features = x.clone();
        let [b, c, _, _] = x.dims();
        let pooled = x.mean_dim(3).mean_dim(2).reshape([b, c]);
        let logits = self.head.forward(self.dropout.forward(pooled));
        ForwardOutput { logits, features }
    }

    /// Logits for normalised images.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_full(images).logits
    }

    /// Pooled last-block features `[batch, channels]`: the poster's embedding (what the
    /// classifier sees), for maps of the catalog.
    pub fn embed(&self, images: Tensor<4>) -> Tensor<2> {
        let features = self.forward_full(images).features;
        let [b, c, _, _] = features.dims();
        features.mean_dim(3).mean_dim(2).reshape([b, c])
    }

    /// Logits from last-block features (the part after Grad-CAM's layer).
    pub fn head_from_features(&self, features: Tensor<4>) -> Tensor<2> {
        let [b, c, _, _] = features.dims();
        let pooled = features.mean_dim(3).mean_dim(2).reshape([b, c]);
        self.head.forward(self.dropout.forward(pooled))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feature_dims(stage_depth: usize) -> [usize; 4] {
        let device = Device::flex();
        let config = NetworkConfig {
            input_width: 32,
            input_height: 48,
            widths: vec![4, 4, 8, 8],
            classes: 5,
            dropout: 0.0,
            stage_depth,
        };
        let net = EraNet::new(&config, &device);
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
    fn configs_without_stage_depth_read_as_one() {
        let json =
            r#"{"input_width":48,"input_height":72,"widths":[16,32],"classes":28,"dropout":0.3}"#;
        let config: NetworkConfig = serde_json::from_str(json).expect("old config parses");
        assert_eq!(config.stage_depth, 1);
    }
}
