//! The frozen part of the backbone on the CPU as fused, channels-last kernels: the same
//! network and weights as [`EfficientNet`]'s Burn layers, for passes that need no
//! gradient (the feature pass, its cache of stage inputs, the benchmark). Burn's CPU
//! backend makes a pass over memory and a fresh buffer for every operation (convolution,
//! bias, each clamp of ReLU6, the residual add) and converts layouts around its 1×1
//! convolutions; here each poster runs on one thread through reused buffers, a 1×1
//! convolution is one matrix product over row tiles whose bias, residual and ReLU6 are
//! applied while the tile is in cache, and the depthwise convolution reads contiguous
//! channels. Tested equal to the Burn layers (`tests` below and `tests/model.rs`).

use std::sync::{Arc, Mutex, PoisonError};

use burn::nn::conv::Conv2d;
use burn::prelude::*;
use rayon::prelude::*;

use super::{BANDS, EfficientNet, MID_STAGES, MbConv, band_rows};
use crate::model::{ModelError, Result};

/// Defines method `$name`, which runs `$portable` compiled for AVX-512F, else AVX2,
/// else as it is, whichever the CPU has (checked at run time; `$portable` must be
/// `#[inline(always)]`, and so must what it calls, to be compiled for each).
macro_rules! multiversion {
    (
        $(#[$doc:meta])*
        fn $name:ident / $avx512:ident / $avx2:ident => $portable:ident(
            $($arg:ident: $ty:ty),* $(,)?
        ) $(-> $ret:ty)?
    ) => {
        $(#[$doc])*
        #[allow(unsafe_code)]
        fn $name(&self, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    return unsafe { self.$avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2 (checked just above).
                    return unsafe { self.$avx2($($arg),*) };
                }
            }
            self.$portable($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        fn $avx512(&self, $($arg: $ty),*) $(-> $ret)? {
            self.$portable($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        fn $avx2(&self, $($arg: $ty),*) $(-> $ret)? {
            self.$portable($($arg),*)
        }
    };
}

/// Output rows of a 1×1 convolution computed as one tile (its bias, residual and ReLU6
/// are applied while the tile is still in cache).
const TILE_ROWS: usize = 192;

/// A 1×1 convolution: weights `[cin][cout]`.
#[derive(Debug)]
struct Pointwise {
    cin: usize,
    cout: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

/// Depthwise convolutions with fewer channels than this (and stride 1) run each tap over
/// a whole row at once; with more, pixel by pixel over the channels.
const CONTIGUOUS_BELOW: usize = 96;

/// A depthwise convolution with TensorFlow "same" padding: weights `[k·k][c]`.
#[derive(Debug)]
struct Depthwise {
    c: usize,
    k: usize,
    stride: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

/// The stem: a 3×3, stride-2 convolution of the RGB input, as a product of the image's
/// patches and the weights `[ky][kx][ci][cout]`.
#[derive(Debug)]
struct Stem {
    conv: Pointwise,
}

#[derive(Debug)]
struct Block {
    expand: Option<Pointwise>,
    depthwise: Depthwise,
    project: Pointwise,
    residual: bool,
    ends_stage: bool,
}

/// The weights of the stem and the first blocks of an [`EfficientNet`], laid out for
/// the fused kernels.
#[derive(Debug)]
pub struct FusedBackbone {
    stem: Stem,
    blocks: Vec<Block>,
    head: Option<Pointwise>,
    stages: usize,
}

/// The last [`FusedBackbone`] built from a network, with what it was built from: kept
/// with the network (shared by its copies), rebuilt when the weights it read change.
#[derive(Clone, Debug, Default)]
pub struct Cache(Arc<Mutex<Option<Cached>>>);

/// A built [`FusedBackbone`] and what it was built from.
type Cached = (CacheKey, Arc<FusedBackbone>);

/// What a cached [`FusedBackbone`] was built from: the blocks, the head conv, and a
/// fingerprint of the weights (each convolution's bias and first weights), which any
/// update of a layer (an optimiser step, loaded fine-tuned weights) changes.
#[derive(Debug, PartialEq)]
struct CacheKey {
    blocks: usize,
    head: bool,
    fingerprint: Vec<u64>,
}

impl Cache {
    /// The fused weights of `net`'s stem and blocks `..blocks` (and head conv), built
    /// once per weights.
    pub fn get(&self, net: &EfficientNet, blocks: usize, head: bool) -> Result<Arc<FusedBackbone>> {
        let key = CacheKey {
            blocks,
            head,
            fingerprint: fingerprint(net, blocks, head)?,
        };
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((k, fused)) = slot.as_ref()
            && *k == key
        {
            return Ok(fused.clone());
        }
        let fused = Arc::new(FusedBackbone::of(net, blocks, head)?);
        *slot = Some((key, fused.clone()));
        Ok(fused)
    }
}

/// Bits of the sum of each used convolution's bias and of its first weights.
fn fingerprint(net: &EfficientNet, blocks: usize, head: bool) -> Result<Vec<u64>> {
    let mut convs = vec![&net.stem];
    for b in net.blocks.iter().take(blocks) {
        convs.extend(b.expand.iter());
        convs.push(&b.depthwise);
        convs.push(&b.project);
    }
    if head {
        convs.push(&net.head);
    }
    let mut out = Vec::with_capacity(2 * convs.len());
    for conv in convs {
        let weight = conv.weight.val();
        let n: usize = weight.dims().iter().product();
        let first = values(weight.reshape([n]).slice(0..n.min(64)), "weights")?;
        out.push(first.iter().map(|&v| f64::from(v)).sum::<f64>().to_bits());
        if let Some(bias) = &conv.bias {
            let b = values(bias.val(), "a bias")?;
            out.push(b.iter().map(|&v| f64::from(v)).sum::<f64>().to_bits());
        }
    }
    Ok(out)
}

/// What one poster's pass gives back.
pub struct FusedOutput {
    /// The last map, channels first (`[c, h, w]` flattened): the input of the first block
    /// not run, or with the head conv, its output.
    pub map: Vec<f32>,
    /// Its `[c, h, w]`.
    pub shape: [usize; 3],
    /// The layout summary of the stages run (empty unless asked for).
    pub layout: Vec<f32>,
}

fn values(t: Tensor<1>, what: &str) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Inference(format!("reading {what}: {e:?}")))
}

fn conv_parts(conv: &Conv2d) -> Result<(Vec<f32>, Vec<f32>, [usize; 4])> {
    let weight = conv.weight.val();
    let dims = weight.dims();
    let n: usize = dims.iter().product();
    let w = values(weight.reshape([n]), "a convolution's weights")?;
    let b = match &conv.bias {
        Some(bias) => values(bias.val(), "a convolution's bias")?,
        None => vec![0.0; dims[0]],
    };
    Ok((w, b, dims))
}

impl Pointwise {
    fn of(conv: &Conv2d) -> Result<Self> {
        let (w, b, [cout, cin, _, _]) = conv_parts(conv)?;
        // [cout][cin] → [cin][cout]
        let mut t = vec![0.0; cin * cout];
        for o in 0..cout {
            for i in 0..cin {
                t[i * cout + o] = w[o * cin + i];
            }
        }
        Ok(Self { cin, cout, w: t, b })
    }

    /// `out[rows × cout] = relu6?(input[rows × cin] · w + b (+ residual))`.
    #[inline(always)]
    fn run(
        &self,
        input: &[f32],
        rows: usize,
        residual: Option<&[f32]>,
        relu: bool,
        out: &mut [f32],
    ) {
        self.run_tiled(input, rows, residual, relu, out, TILE_ROWS);
    }

    /// [`Self::run`] in tiles of `tile_rows` rows.
    #[inline(always)]
    fn run_tiled(
        &self,
        input: &[f32],
        rows: usize,
        residual: Option<&[f32]>,
        relu: bool,
        out: &mut [f32],
        tile_rows: usize,
    ) {
        let (cin, cout) = (self.cin, self.cout);
        for start in (0..rows).step_by(tile_rows.max(1)) {
            let m = tile_rows.min(rows - start);
            let dst = &mut out[start * cout..(start + m) * cout];
            match residual {
                Some(r) => {
                    let r = &r[start * cout..(start + m) * cout];
                    for (d, r) in dst.chunks_exact_mut(cout).zip(r.chunks_exact(cout)) {
                        for ((d, r), b) in d.iter_mut().zip(r).zip(&self.b) {
                            *d = r + b;
                        }
                    }
                }
                None => {
                    for d in dst.chunks_exact_mut(cout) {
                        d.copy_from_slice(&self.b);
                    }
                }
            }
            matmul_add(
                dst,
                &input[start * cin..(start + m) * cin],
                &self.w,
                m,
                cin,
                cout,
            );
            if relu {
                relu6(dst);
            }
        }
    }
}

impl Pointwise {
    /// [`Self::run`] over the pixels of many posters, tiles in parallel.
    fn run_batched(
        &self,
        input: &[f32],
        rows: usize,
        residual: Option<&[f32]>,
        relu: bool,
        out: &mut [f32],
    ) {
        let threads = rayon::current_num_threads().max(1);
        let tile = (rows / (2 * threads)).clamp(32, 512);
        let (cin, cout) = (self.cin, self.cout);
        let tiles = out[..rows * cout]
            .par_chunks_mut(tile * cout)
            .zip(input[..rows * cin].par_chunks(tile * cin));
        match residual {
            Some(r) => tiles
                .zip(r[..rows * cout].par_chunks(tile * cout))
                .for_each(|((o, i), r)| self.run_tiled(i, o.len() / cout, Some(r), relu, o, tile)),
            None => tiles.for_each(|(o, i)| self.run_tiled(i, o.len() / cout, None, relu, o, tile)),
        }
    }
}

/// `dst[m × n] += lhs[m × k] · rhs[k × n]`, all row-major, on this thread (gemm's
/// kernels, chosen for the CPU at run time).
#[allow(unsafe_code)]
fn matmul_add(dst: &mut [f32], lhs: &[f32], rhs: &[f32], m: usize, k: usize, n: usize) {
    assert!(
        dst.len() == m * n && lhs.len() == m * k && rhs.len() == k * n,
        "matrix sizes"
    );
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    // SAFETY: the three slices hold exactly m×n, m×k and k×n values (checked above), the
    // strides describe row-major matrices of those shapes within them, and `dst` is a
    // unique borrow that cannot overlap the shared ones.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            true,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[inline(always)]
fn relu6(v: &mut [f32]) {
    for x in v {
        *x = x.clamp(0.0, 6.0);
    }
}

/// Output size and padding before the first row of TensorFlow's "same" padding (the odd
/// pixel of padding goes after: ONNX's `SAME_UPPER`).
fn same(size: usize, k: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + k).saturating_sub(size);
    (out, total / 2)
}

impl Depthwise {
    fn of(conv: &Conv2d, stride: usize) -> Result<Self> {
        let (w, b, [c, _, k, _]) = conv_parts(conv)?;
        // [c][1][ky][kx] → [ky·k + kx][c]
        let mut t = vec![0.0; k * k * c];
        for ch in 0..c {
            for tap in 0..k * k {
                t[tap * c + ch] = w[ch * k * k + tap];
            }
        }
        Ok(Self {
            c,
            k,
            stride,
            w: t,
            b,
        })
    }

    /// `out = relu6(depthwise(input) + b)`, channels last; the output's height and width.
    #[inline(always)]
    fn run(&self, input: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let (c, k, s) = (self.c, self.k, self.stride);
        let (oh, pad_t) = same(h, k, s);
        let (ow, pad_l) = same(w, k, s);
        debug_assert_eq!(out.len(), oh * ow * c);
        for pixel in out.chunks_exact_mut(c) {
            pixel.copy_from_slice(&self.b);
        }
        // With stride 1 and few channels a tap reads a contiguous run of each input row:
        // one long loop against the tap's weights repeated along the row.
        let contiguous = s == 1 && c < CONTIGUOUS_BELOW;
        let repeated: Vec<f32> = if contiguous {
            (0..k * k)
                .flat_map(|tap| self.w[tap * c..(tap + 1) * c].repeat(ow))
                .collect()
        } else {
            Vec::new()
        };
        for (oy, out_row) in out.chunks_exact_mut(ow * c).enumerate() {
            for ky in 0..k {
                let Some(iy) = (oy * s + ky).checked_sub(pad_t).filter(|&y| y < h) else {
                    continue;
                };
                let in_row = &input[iy * w * c..(iy + 1) * w * c];
                for kx in 0..k {
                    // Output columns whose input column ox·s + kx − pad_l lies in the row.
                    let first = pad_l.saturating_sub(kx).div_ceil(s);
                    let Some(last) = (w + pad_l).checked_sub(kx + 1).map(|v| v / s + 1) else {
                        continue;
                    };
                    let end = last.min(ow);
                    if first >= end {
                        continue;
                    }
                    let ix = first * s + kx - pad_l;
                    let tap = ky * k + kx;
                    if contiguous {
                        let n = (end - first) * c;
                        let o = &mut out_row[first * c..first * c + n];
                        let i = &in_row[ix * c..ix * c + n];
                        let t = &repeated[tap * ow * c..tap * ow * c + n];
                        for ((o, i), t) in o.iter_mut().zip(i).zip(t) {
                            *o += i * t;
                        }
                    } else {
                        let t = &self.w[tap * c..(tap + 1) * c];
                        let pixels = in_row[ix * c..].chunks_exact(c).step_by(s);
                        for (o, i) in out_row[first * c..end * c].chunks_exact_mut(c).zip(pixels) {
                            for ((o, i), t) in o.iter_mut().zip(i).zip(t) {
                                *o += i * t;
                            }
                        }
                    }
                }
            }
            relu6(out_row);
        }
    }

    /// The output's height and width for an input `h` × `w`.
    fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        (
            same(h, self.k, self.stride).0,
            same(w, self.k, self.stride).0,
        )
    }

    multiversion! {
        /// [`Self::run`] compiled for the widest vector instructions the CPU has.
        fn run_simd / run_avx512 / run_avx2 => run(input: &[f32], h: usize, w: usize, out: &mut [f32])
    }
}

impl Stem {
    fn of(conv: &Conv2d) -> Result<Self> {
        let (w, b, [cout, cin, k, _]) = conv_parts(conv)?;
        // [cout][ci][ky][kx] → [ky][kx][ci][cout]: a [k·k·cin][cout] matrix.
        let mut t = vec![0.0; k * k * cin * cout];
        for o in 0..cout {
            for ci in 0..cin {
                for ky in 0..k {
                    for kx in 0..k {
                        t[((ky * k + kx) * cin + ci) * cout + o] =
                            w[((o * cin + ci) * k + ky) * k + kx];
                    }
                }
            }
        }
        Ok(Self {
            conv: Pointwise {
                cin: k * k * cin,
                cout,
                w: t,
                b,
            },
        })
    }

    /// `relu6(conv(image) + b)` of a `[3, h, w]` image, channels last: each output
    /// pixel's 3×3×3 patch (zero outside the image) as a row, times the weights.
    #[inline(always)]
    fn run(
        &self,
        image: &[f32],
        h: usize,
        w: usize,
        patches: &mut Vec<f32>,
        out: &mut Vec<f32>,
    ) -> (usize, usize) {
        const K: usize = 3;
        let cin = 3;
        let (oh, pad_t) = same(h, K, 2);
        let (ow, pad_l) = same(w, K, 2);
        patches.clear();
        patches.resize(oh * ow * K * K * cin, 0.0);
        for (p, patch) in patches.chunks_exact_mut(K * K * cin).enumerate() {
            let (oy, ox) = (p / ow, p % ow);
            for ky in 0..K {
                let Some(iy) = (oy * 2 + ky).checked_sub(pad_t).filter(|&y| y < h) else {
                    continue;
                };
                for kx in 0..K {
                    let Some(ix) = (ox * 2 + kx).checked_sub(pad_l).filter(|&x| x < w) else {
                        continue;
                    };
                    for ci in 0..cin {
                        patch[(ky * K + kx) * cin + ci] = image[(ci * h + iy) * w + ix];
                    }
                }
            }
        }
        out.clear();
        out.resize(oh * ow * self.conv.cout, 0.0);
        self.conv.run(patches, oh * ow, None, true, out);
        (oh, ow)
    }
}

/// Buffers one thread reuses from poster to poster.
#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    next: Vec<f32>,
    expanded: Vec<f32>,
    depthwise: Vec<f32>,
    patches: Vec<f32>,
}

/// Maps with at most this many pixels per poster run batched: the 1×1 convolutions of
/// all posters as one product (their weights, large in the last stages, are then packed
/// once per tile of many posters' pixels instead of once per poster).
const BATCHED_PIXELS: usize = 256;

/// One poster after the blocks run poster by poster: its map (channels last), size and
/// stage statistics so far.
struct Early {
    x: Vec<f32>,
    hwc: (usize, usize, usize),
    stats: Vec<StageStats>,
}

/// The layout summary's parts of one stage output (channels last): channel means,
/// deviations and, for the last stages, band means.
struct StageStats {
    means: Vec<f32>,
    stds: Vec<f32>,
    bands: Option<[Vec<f32>; BANDS]>,
}

#[inline(always)]
fn stage_stats(x: &[f32], h: usize, w: usize, c: usize, banded: bool) -> StageStats {
    let mut sum = vec![0f64; c];
    let mut square = vec![0f64; c];
    let mut band_sums: [Vec<f64>; BANDS] = std::array::from_fn(|_| vec![0f64; c]);
    for y in 0..h {
        let row = &x[y * w * c..(y + 1) * w * c];
        let mut row_sum = vec![0f64; c];
        for pixel in row.chunks_exact(c) {
            for ((s, q), &v) in row_sum.iter_mut().zip(square.iter_mut()).zip(pixel) {
                *s += f64::from(v);
                *q += f64::from(v) * f64::from(v);
            }
        }
        for (s, r) in sum.iter_mut().zip(&row_sum) {
            *s += r;
        }
        if banded {
            for (band, acc) in band_sums.iter_mut().enumerate() {
                let (top, bottom) = band_rows(h, band);
                if (top..bottom).contains(&y) {
                    for (a, r) in acc.iter_mut().zip(&row_sum) {
                        *a += r;
                    }
                }
            }
        }
    }
    let n = (h * w).max(1) as f64;
    let means: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
    let stds = square
        .iter()
        .zip(&sum)
        .map(|(q, s)| {
            let m = s / n;
            ((q / n - m * m).max(0.0) as f32 + 1e-6).sqrt()
        })
        .collect();
    let bands = banded.then(|| {
        let mut k = 0;
        band_sums.map(|acc| {
            let (top, bottom) = band_rows(h, k);
            k += 1;
            let n = ((bottom - top) * w).max(1) as f64;
            acc.iter().map(|s| (s / n) as f32).collect()
        })
    });
    StageStats { means, stds, bands }
}

impl FusedBackbone {
    /// The stem and blocks `..blocks` of `net` (with `head`, also the head conv, when all
    /// blocks run).
    pub fn of(net: &EfficientNet, blocks: usize, head: bool) -> Result<Self> {
        let count = blocks.min(net.blocks.len());
        let mut out = Vec::with_capacity(count);
        for (i, b) in net.blocks.iter().take(count).enumerate() {
            out.push(Self::block(b, net.stage_ends_at(i))?);
        }
        Ok(Self {
            stem: Stem::of(&net.stem)?,
            blocks: out,
            head: (head && count == net.blocks.len())
                .then(|| Pointwise::of(&net.head))
                .transpose()?,
            stages: net.stage_count(),
        })
    }

    fn block(b: &MbConv, ends_stage: bool) -> Result<Block> {
        Ok(Block {
            expand: b.expand.as_ref().map(Pointwise::of).transpose()?,
            depthwise: Depthwise::of(&b.depthwise, b.depthwise.stride[0])?,
            project: Pointwise::of(&b.project)?,
            residual: b.residual,
            ends_stage,
        })
    }

    /// Runs a batch `[n, 3, h, w]` (on any device; computed on the CPU): each poster's
    /// last map and, with `layout`, the layout summary of the stages run. While maps are
    /// large each poster runs on one thread; from [`BATCHED_PIXELS`] on, the posters run
    /// together.
    pub fn run(&self, images: Tensor<4>, layout: bool) -> Result<Vec<FusedOutput>> {
        let [n, _, h, w] = images.dims();
        let pixels = images
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| ModelError::Inference(format!("reading the input: {e:?}")))?;
        if pixels.len() != n * 3 * h * w {
            return Err(ModelError::Inference(format!(
                "the fused pass takes RGB images; got {} values for {n} images of {w}×{h}",
                pixels.len()
            )));
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let split = self.batched_from(h, w);
        let early: Vec<Early> = pixels
            .par_chunks(3 * h * w)
            .map_init(Scratch::default, |scratch, image| {
                self.early(image, h, w, split, layout, scratch)
            })
            .collect();
        let (mut h, mut w, mut c) = early[0].hwc;
        let mut stats: Vec<Vec<StageStats>> = Vec::with_capacity(n);
        let mut x = Vec::with_capacity(n * h * w * c);
        for e in early {
            x.extend(e.x);
            stats.push(e.stats);
        }
        let banded_from = self.stages.saturating_sub(MID_STAGES);
        let mut expanded = Vec::new();
        let mut depthwise = Vec::new();
        let mut next = Vec::new();
        for block in &self.blocks[split..] {
            let source = match &block.expand {
                Some(e) => {
                    expanded.resize(n * h * w * e.cout, 0.0);
                    e.run_batched(&x, n * h * w, None, true, &mut expanded);
                    &expanded
                }
                None => &x,
            };
            let mid = block.depthwise.c;
            let (oh, ow) = block.depthwise.out_size(h, w);
            depthwise.resize(n * oh * ow * mid, 0.0);
            depthwise
                .par_chunks_mut(oh * ow * mid)
                .zip(source.par_chunks(h * w * mid))
                .for_each(|(out, input)| block.depthwise.run_simd(input, h, w, out));
            let cout = block.project.cout;
            next.resize(n * oh * ow * cout, 0.0);
            let residual = block.residual.then_some(&x[..]);
            block
                .project
                .run_batched(&depthwise, n * oh * ow, residual, false, &mut next);
            std::mem::swap(&mut x, &mut next);
            (h, w, c) = (oh, ow, cout);
            if layout && block.ends_stage {
                let more: Vec<StageStats> = x
                    .par_chunks(h * w * c)
                    .zip(stats.par_iter())
                    .map(|(one, st)| stage_stats(one, h, w, c, st.len() >= banded_from))
                    .collect();
                for (st, m) in stats.iter_mut().zip(more) {
                    st.push(m);
                }
            }
        }
        if let Some(head) = &self.head {
            next.resize(n * h * w * head.cout, 0.0);
            head.run_batched(&x, n * h * w, None, true, &mut next);
            std::mem::swap(&mut x, &mut next);
            c = head.cout;
        }
        Ok(x.par_chunks(h * w * c)
            .zip(stats.par_iter())
            .map(|(one, st)| FusedOutput {
                map: channels_first(one, c),
                shape: [c, h, w],
                layout: if layout { summary(st) } else { Vec::new() },
            })
            .collect())
    }

    /// The first block that runs batched on an `h` × `w` input.
    fn batched_from(&self, h: usize, w: usize) -> usize {
        let (mut h, mut w) = (same(h, 3, 2).0, same(w, 3, 2).0);
        for (i, b) in self.blocks.iter().enumerate() {
            if h * w <= BATCHED_PIXELS {
                return i;
            }
            (h, w) = b.depthwise.out_size(h, w);
        }
        self.blocks.len()
    }

    multiversion! {
        /// The stem and blocks `..split` of one poster, compiled for the widest vector
        /// instructions the CPU has (the kernels are plain loops over contiguous channels,
        /// which the compiler vectorises for each).
        fn early / early_avx512 / early_avx2 => early_portable(
            image: &[f32],
            h: usize,
            w: usize,
            split: usize,
            layout: bool,
            s: &mut Scratch
        ) -> Early
    }

    #[inline(always)]
    fn early_portable(
        &self,
        image: &[f32],
        h: usize,
        w: usize,
        split: usize,
        layout: bool,
        s: &mut Scratch,
    ) -> Early {
        let (mut h, mut w) = self.stem.run(image, h, w, &mut s.patches, &mut s.x);
        let mut c = self.stem.conv.cout;
        let mut stats = Vec::new();
        let banded_from = self.stages.saturating_sub(MID_STAGES);
        for block in &self.blocks[..split] {
            let source = match &block.expand {
                Some(e) => {
                    s.expanded.resize(h * w * e.cout, 0.0);
                    e.run(&s.x, h * w, None, true, &mut s.expanded);
                    &s.expanded
                }
                None => &s.x,
            };
            let (oh, ow) = block.depthwise.out_size(h, w);
            s.depthwise.resize(oh * ow * block.depthwise.c, 0.0);
            block.depthwise.run(source, h, w, &mut s.depthwise);
            let cout = block.project.cout;
            s.next.resize(oh * ow * cout, 0.0);
            let residual = block.residual.then_some(&s.x[..]);
            block
                .project
                .run(&s.depthwise, oh * ow, residual, false, &mut s.next);
            std::mem::swap(&mut s.x, &mut s.next);
            (h, w, c) = (oh, ow, cout);
            if layout && block.ends_stage {
                let banded = stats.len() >= banded_from;
                stats.push(stage_stats(&s.x, h, w, c, banded));
            }
        }
        Early {
            x: s.x[..h * w * c].to_vec(),
            hwc: (h, w, c),
            stats,
        }
    }
}

/// A channels-last map `[h·w][c]` channels first `[c][h·w]`.
fn channels_first(x: &[f32], c: usize) -> Vec<f32> {
    let hw = x.len() / c.max(1);
    let mut map = vec![0.0; x.len()];
    for (p, pixel) in x.chunks_exact(c).enumerate() {
        for (ch, &v) in pixel.iter().enumerate() {
            map[ch * hw + p] = v;
        }
    }
    map
}

/// The layout summary from the stages' statistics: all means, all deviations, then band
/// by band the band means of the banded stages.
fn summary(stats: &[StageStats]) -> Vec<f32> {
    let mut out = Vec::new();
    for st in stats {
        out.extend_from_slice(&st.means);
    }
    for st in stats {
        out.extend_from_slice(&st.stds);
    }
    for band in 0..BANDS {
        for st in stats {
            if let Some(b) = &st.bands {
                out.extend_from_slice(&b[band]);
            }
        }
    }
    out
}
