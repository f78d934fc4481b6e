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

/// A depthwise convolution with TensorFlow "same" padding: weights `[k·k][c]`.
#[derive(Debug)]
struct Depthwise {
    c: usize,
    k: usize,
    stride: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

/// Where one output pixel of a depthwise convolution reads: the input (channels last,
/// `w` pixels a row, `c` channels), the pixel's corner in it before padding, and the
/// ranges of kernel rows and columns that fall inside it.
struct Taps<'a> {
    input: &'a [f32],
    w: usize,
    c: usize,
    y0: usize,
    x0: usize,
    pad_t: usize,
    pad_l: usize,
    ky: (usize, usize),
    kx: (usize, usize),
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
    /// Buffers kept from call to call.
    scratch: Mutex<Vec<Scratch>>,
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
            matmul(
                dst,
                &input[start * cin..(start + m) * cin],
                &self.w,
                m,
                cin,
                cout,
            );
            // Bias, residual and ReLU6 in one pass over the tile, still in cache.
            match (residual, relu) {
                (Some(r), _) => {
                    let r = &r[start * cout..(start + m) * cout];
                    let b = &self.b[..cout];
                    for (d, r) in dst.chunks_exact_mut(cout).zip(r.chunks_exact(cout)) {
                        let (d, r) = (&mut d[..cout], &r[..cout]);
                        for j in 0..cout {
                            let v = d[j] + b[j] + r[j];
                            d[j] = if relu { v.clamp(0.0, 6.0) } else { v };
                        }
                    }
                }
                (None, true) => bias_relu6(dst, &self.b),
                (None, false) => {
                    let b = &self.b[..cout];
                    for d in dst.chunks_exact_mut(cout) {
                        let d = &mut d[..cout];
                        for j in 0..cout {
                            d[j] += b[j];
                        }
                    }
                }
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

/// `dst[m × n] = lhs[m × k] · rhs[k × n]`, all row-major, on this thread (gemm's
/// kernels, chosen for the CPU at run time; `dst` is written, never read).
#[allow(unsafe_code)]
fn matmul(dst: &mut [f32], lhs: &[f32], rhs: &[f32], m: usize, k: usize, n: usize) {
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
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `v = relu6(v + b)` for each pixel (`b.len()` channels) of a channels-last map.
#[inline(always)]
fn bias_relu6(v: &mut [f32], b: &[f32]) {
    let c = b.len();
    for pixel in v.chunks_exact_mut(c) {
        let pixel = &mut pixel[..c];
        for j in 0..c {
            pixel[j] = (pixel[j] + b[j]).clamp(0.0, 6.0);
        }
    }
}

/// The first `n` values of `v`, grown (zero-filled) only when it is shorter: a buffer
/// reused for maps of many sizes, every value of which the caller writes.
fn grown(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
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

    /// `out = relu6(depthwise(input) + b)`, channels last (`out` holds the output's
    /// height × width pixels). Each output pixel sums its taps in registers, a block of
    /// up to 64 channels at a time (several vectors side by side, so that their sums do
    /// not wait on each other), and is written once.
    #[inline(always)]
    fn run(&self, input: &[f32], h: usize, w: usize, out: &mut [f32]) {
        let (c, k, s) = (self.c, self.k, self.stride);
        let (oh, pad_t) = same(h, k, s);
        let (ow, pad_l) = same(w, k, s);
        debug_assert_eq!(out.len(), oh * ow * c);
        // The taps that fall inside the input, for an output row or column at `o`.
        let taps = |o: usize, pad: usize, size: usize| {
            let first = pad.saturating_sub(o * s);
            let end = (size + pad).saturating_sub(o * s).min(k);
            (first, end.max(first))
        };
        // Channel blocks outermost: a block's weights stay in cache for every pixel.
        let mut ch = 0;
        while ch < c {
            let n = match c - ch {
                64.. => 64,
                32.. => 32,
                16.. => 16,
                _ => 1,
            };
            for (oy, out_row) in out.chunks_exact_mut(ow * c).enumerate() {
                let ky = taps(oy, pad_t, h);
                for (ox, pixel) in out_row.chunks_exact_mut(c).enumerate() {
                    let at = Taps {
                        input,
                        w,
                        c,
                        y0: oy * s,
                        x0: ox * s,
                        pad_t,
                        pad_l,
                        ky,
                        kx: taps(ox, pad_l, w),
                    };
                    let out = &mut pixel[ch..ch + n];
                    match n {
                        64 => self.channels::<64>(&at, ch, out),
                        32 => self.channels::<32>(&at, ch, out),
                        16 => self.channels::<16>(&at, ch, out),
                        _ => self.channels::<1>(&at, ch, out),
                    }
                }
            }
            ch += n;
        }
    }

    /// Channels `ch..ch + N` of one output pixel: bias, the taps in `at`, ReLU6.
    #[inline(always)]
    fn channels<const N: usize>(&self, at: &Taps<'_>, ch: usize, out: &mut [f32]) {
        // Index loops over arrays: the compiler keeps them in vector registers (iterator
        // adapters here were left as calls in the multiversioned copies).
        let Some(&bias) = self.b[ch..].first_chunk::<N>() else {
            return;
        };
        let mut acc = bias;
        for ky in at.ky.0..at.ky.1 {
            let iy = at.y0 + ky - at.pad_t;
            for kx in at.kx.0..at.kx.1 {
                let ix = at.x0 + kx - at.pad_l;
                let (Some(i), Some(t)) = (
                    at.input[(iy * at.w + ix) * at.c + ch..].first_chunk::<N>(),
                    self.w[(ky * self.k + kx) * at.c + ch..].first_chunk::<N>(),
                ) else {
                    continue;
                };
                for l in 0..N {
                    acc[l] += i[l] * t[l];
                }
            }
        }
        let out = &mut out[..N];
        for l in 0..N {
            out[l] = acc[l].clamp(0.0, 6.0);
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
        let patches = grown(patches, oh * ow * K * K * cin);
        // Every value is written: the image's, or 0 outside it.
        for (p, patch) in patches.chunks_exact_mut(K * K * cin).enumerate() {
            let (oy, ox) = (p / ow, p % ow);
            for ky in 0..K {
                let iy = (oy * 2 + ky).checked_sub(pad_t).filter(|&y| y < h);
                for kx in 0..K {
                    let ix = (ox * 2 + kx).checked_sub(pad_l).filter(|&x| x < w);
                    for ci in 0..cin {
                        patch[(ky * K + kx) * cin + ci] = match (iy, ix) {
                            (Some(iy), Some(ix)) => image[(ci * h + iy) * w + ix],
                            _ => 0.0,
                        };
                    }
                }
            }
        }
        let out = grown(out, oh * ow * self.conv.cout);
        self.conv.run(patches, oh * ow, None, true, out);
        (oh, ow)
    }
}

/// Buffers one thread reuses from poster to poster (and, kept in a pool, from call to
/// call: fresh buffers of this size cost the kernel a page fault and a page cleared per
/// 4 KiB).
#[derive(Debug, Default)]
struct Scratch {
    x: Vec<f32>,
    next: Vec<f32>,
    expanded: Vec<f32>,
    depthwise: Vec<f32>,
    patches: Vec<f32>,
}

/// A [`Scratch`] taken from a pool and given back to it when dropped.
struct Pooled<'a> {
    buffers: Scratch,
    pool: &'a Mutex<Vec<Scratch>>,
}

impl<'a> Pooled<'a> {
    fn take(pool: &'a Mutex<Vec<Scratch>>) -> Self {
        let buffers = pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default();
        Self { buffers, pool }
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        // One per worker thread and one for the batched stages.
        if pool.len() <= rayon::current_num_threads() {
            pool.push(std::mem::take(&mut self.buffers));
        }
    }
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
    let mut row_sum = vec![0f64; c];
    for y in 0..h {
        let row = &x[y * w * c..(y + 1) * w * c];
        row_sum.fill(0.0);
        let (rs, sq) = (&mut row_sum[..c], &mut square[..c]);
        for pixel in row.chunks_exact(c) {
            let pixel = &pixel[..c];
            for j in 0..c {
                let v = f64::from(pixel[j]);
                rs[j] += v;
                sq[j] += v * v;
            }
        }
        let sum = &mut sum[..c];
        for j in 0..c {
            sum[j] += rs[j];
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
            scratch: Mutex::default(),
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
            .map_init(
                || Pooled::take(&self.scratch),
                |scratch, image| self.early(image, h, w, split, layout, &mut scratch.buffers),
            )
            .collect();
        let (mut h, mut w, mut c) = early[0].hwc;
        let mut stats: Vec<Vec<StageStats>> = Vec::with_capacity(n);
        let mut late = Pooled::take(&self.scratch);
        let Scratch {
            x,
            next,
            expanded,
            depthwise,
            ..
        } = &mut late.buffers;
        x.clear();
        for e in early {
            x.extend(e.x);
            stats.push(e.stats);
        }
        let banded_from = self.stages.saturating_sub(MID_STAGES);
        for block in &self.blocks[split..] {
            let source = match &block.expand {
                Some(e) => {
                    let rows = n * h * w;
                    e.run_batched(x, rows, None, true, grown(expanded, rows * e.cout));
                    &expanded[..rows * e.cout]
                }
                None => &x[..n * h * w * c],
            };
            let mid = block.depthwise.c;
            let (oh, ow) = block.depthwise.out_size(h, w);
            grown(depthwise, n * oh * ow * mid)
                .par_chunks_mut(oh * ow * mid)
                .zip(source.par_chunks(h * w * mid))
                .for_each(|(out, input)| block.depthwise.run_simd(input, h, w, out));
            let cout = block.project.cout;
            let residual = block.residual.then_some(&x[..]);
            let rows = n * oh * ow;
            block
                .project
                .run_batched(depthwise, rows, residual, false, grown(next, rows * cout));
            std::mem::swap(x, next);
            (h, w, c) = (oh, ow, cout);
            if layout && block.ends_stage {
                let more: Vec<StageStats> = x[..n * h * w * c]
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
            let rows = n * h * w;
            head.run_batched(x, rows, None, true, grown(next, rows * head.cout));
            std::mem::swap(x, next);
            c = head.cout;
        }
        Ok(x[..n * h * w * c]
            .par_chunks(h * w * c)
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
                    let expanded = grown(&mut s.expanded, h * w * e.cout);
                    e.run(&s.x, h * w, None, true, expanded);
                    &s.expanded[..h * w * e.cout]
                }
                None => &s.x[..h * w * c],
            };
            let (oh, ow) = block.depthwise.out_size(h, w);
            let depthwise = grown(&mut s.depthwise, oh * ow * block.depthwise.c);
            block.depthwise.run(source, h, w, depthwise);
            let cout = block.project.cout;
            let next = grown(&mut s.next, oh * ow * cout);
            let residual = block.residual.then_some(&s.x[..]);
            block
                .project
                .run(&s.depthwise, oh * ow, residual, false, next);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::backbone::{Arch, pretrained};

    #[test]
    fn buffers_kept_from_a_larger_input_give_the_same_answers() {
        let device = Device::flex();
        let net = pretrained(Arch::EfficientnetLite0, false, &device).unwrap();
        let fused = FusedBackbone::of(&net, net.blocks.len(), true).unwrap();
        let input = |h: usize, w: usize| {
            let values: Vec<f32> = (0..2 * 3 * h * w)
                .map(|i| ((i * 31 % 239) as f32 - 119.0) / 120.0)
                .collect();
            Tensor::<4>::from_data(TensorData::new(values, [2, 3, h, w]), &device)
        };
        let first = fused.run(input(97, 65), true).unwrap();
        fused.run(input(240, 160), true).unwrap();
        assert!(
            !fused.scratch.lock().unwrap().is_empty(),
            "buffers were kept"
        );
        let again = fused.run(input(97, 65), true).unwrap();
        for (a, b) in first.iter().zip(&again) {
            assert_eq!(a.shape, b.shape);
            assert_eq!(a.map, b.map);
            assert_eq!(a.layout, b.layout);
        }
    }
}
