//! Poster images: safe decoding with limits, thumbnails and colour statistics.
//!
//! Every image that enters the app goes through [`decode_poster`], which rejects empty,
//! truncated, non-image, oversized and decompression-bomb inputs with a clear reason.

pub mod text;

use std::io::{Cursor, Read};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};
use sha2::{Digest, Sha256};

/// Limits applied to every decoded image.
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    /// Largest accepted file, in bytes.
    pub max_bytes: u64,
    /// Largest accepted width or height, in pixels.
    pub max_side: u32,
    /// Largest accepted pixel count (width × height).
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            max_side: 16_384,
            max_pixels: 64 * 1024 * 1024,
        }
    }
}

/// Why an image was rejected. The `Display` text is shown to users as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRejection {
    /// Zero-byte file.
    #[error("empty file (0 bytes)")]
    Empty,
    /// Larger than the byte limit.
    #[error("file too large ({size} bytes; the limit is {limit})")]
    TooLarge {
        /// File size.
        size: u64,
        /// Limit.
        limit: u64,
    },
    /// Not a known image format.
    #[error("not an image (unrecognised format{hint})")]
    NotAnImage {
        /// Extra hint, such as what the content looks like.
        hint: String,
    },
    /// A known format this app does not decode.
    #[error("unsupported image format {0}")]
    Unsupported(String),
    /// Header dimensions beyond the limits (decompression bomb guard).
    #[error("image dimensions {width}x{height} exceed the limit ({limit})")]
    TooManyPixels {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// The limit that was exceeded, described.
        limit: String,
    },
    /// A zero dimension.
    #[error("image has a zero dimension ({width}x{height})")]
    ZeroSize {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// The data ends before the image does.
    #[error("truncated {0} (the data ends before the image does)")]
    Truncated(String),
    /// The decoder failed.
    #[error("corrupt {format}: {message}")]
    Corrupt {
        /// Format name.
        format: String,
        /// Decoder message.
        message: String,
    },
    /// The path is a folder.
    #[error("a folder, not an image file")]
    Folder,
    /// The path is a device, socket or other non-file.
    #[error("not a regular file")]
    NotAFile,
    /// The file could not be read.
    #[error("cannot read file: {0}")]
    Io(String),
}

/// A decoded, validated poster with its content hash.
#[derive(Debug, Clone)]
pub struct DecodedPoster {
    /// RGB pixels (alpha, 16-bit and CMYK inputs are converted).
    pub rgb: RgbImage,
    /// Detected format.
    pub format: ImageFormat,
    /// SHA-256 of the encoded bytes, lower-case hex.
    pub sha256: String,
    /// Size of the encoded bytes.
    pub bytes: u64,
    /// What was done to make it plain 8-bit RGB, for the user (CMYK, 16-bit, GIF…).
    pub conversion: Option<String>,
}

/// Colour components of a JPEG from its frame header (4 for CMYK/YCCK), if found.
fn jpeg_components(bytes: &[u8]) -> Option<u8> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            return bytes.get(i + 9).copied();
        }
        if marker == 0xDA {
            return None; // scan data starts; no frame header before it
        }
        i += 2 + len;
    }
    None
}

/// Describes the conversion of an unusual input into 8-bit RGB, if there was one.
fn conversion_note(format: ImageFormat, original: image::ExtendedColorType) -> Option<String> {
    use image::ExtendedColorType as C;
    let mut notes = Vec::new();
    if format == ImageFormat::Gif {
        notes.push("GIF: first frame used".to_owned());
    }
    match original {
        C::Cmyk8 | C::Cmyk16 => notes.push("CMYK converted to RGB".into()),
        C::L16 | C::La16 | C::Rgb16 | C::Rgba16 => {
            notes.push("16-bit channels reduced to 8-bit".into());
        }
        C::Rgb32F | C::Rgba32F => notes.push("floating-point channels reduced to 8-bit".into()),
        C::L1 | C::L2 | C::L4 | C::L8 | C::La8 => notes.push("greyscale".into()),
        _ => {}
    }
    if matches!(
        original,
        C::La8 | C::La16 | C::Rgba8 | C::Rgba16 | C::Rgba32F
    ) {
        notes.push("alpha dropped".into());
    }
    (!notes.is_empty()).then(|| notes.join(", "))
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Reads a file with the byte limit applied before reading it whole.
pub fn read_image_file(path: &Path, limits: &ImageLimits) -> Result<Vec<u8>, ImageRejection> {
    let meta = std::fs::metadata(path).map_err(|e| ImageRejection::Io(e.to_string()))?;
    if meta.is_dir() {
        return Err(ImageRejection::Folder);
    }
    if !meta.is_file() {
        return Err(ImageRejection::NotAFile);
    }
    if meta.len() > limits.max_bytes {
        return Err(ImageRejection::TooLarge {
            size: meta.len(),
            limit: limits.max_bytes,
        });
    }
    let file = std::fs::File::open(path).map_err(|e| ImageRejection::Io(e.to_string()))?;
    let mut buf = Vec::with_capacity(meta.len() as usize);
    // Guard against files that grow while being read.
    file.take(limits.max_bytes + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ImageRejection::Io(e.to_string()))?;
    if buf.len() as u64 > limits.max_bytes {
        return Err(ImageRejection::TooLarge {
            size: buf.len() as u64,
            limit: limits.max_bytes,
        });
    }
    Ok(buf)
}

/// Decodes a poster file; see [`decode_poster`].
pub fn decode_poster_file(
    path: &Path,
    limits: &ImageLimits,
) -> Result<DecodedPoster, ImageRejection> {
    let bytes = read_image_file(path, limits)?;
    decode_poster(&bytes, limits)
}

/// A format's usual name (JPEG, PNG, GIF…).
pub fn format_name(f: ImageFormat) -> String {
    f.extensions_str()
        .first()
        .map_or_else(|| format!("{f:?}"), |e| e.to_uppercase())
        .replace("JPG", "JPEG")
}

/// Checks the end-of-image marker of formats whose decoders tolerate truncation.
fn check_complete(bytes: &[u8], format: ImageFormat) -> Result<(), ImageRejection> {
    match format {
        ImageFormat::Jpeg => {
            // The EOI marker FF D9 must be present near the end (some encoders pad).
            let tail = &bytes[bytes.len().saturating_sub(64)..];
            if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
                return Err(ImageRejection::Truncated("JPEG".into()));
            }
        }
        ImageFormat::Png => {
            let tail = &bytes[bytes.len().saturating_sub(32)..];
            if !tail.windows(4).any(|w| w == b"IEND") {
                return Err(ImageRejection::Truncated("PNG".into()));
            }
        }
        ImageFormat::Gif => {
            let tail = &bytes[bytes.len().saturating_sub(8)..];
            if !tail.contains(&0x3B) {
                return Err(ImageRejection::Truncated("GIF".into()));
            }
        }
        _ => {}
    }
    Ok(())
}

fn looks_like_text(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(512)];
    !head.is_empty()
        && head.iter().all(|&b| {
            b == b'\n' || b == b'\r' || b == b'\t' || (0x20..0x7F).contains(&b) || b >= 0x80
        })
}

/// Decodes and validates encoded image bytes into an RGB poster.
///
/// Rejects empty input, unknown formats, headers whose dimensions exceed `limits`
/// (before any pixel memory is allocated), truncated JPEG/PNG/GIF data and decoder errors.
pub fn decode_poster(bytes: &[u8], limits: &ImageLimits) -> Result<DecodedPoster, ImageRejection> {
    if bytes.is_empty() {
        return Err(ImageRejection::Empty);
    }
    if bytes.len() as u64 > limits.max_bytes {
        return Err(ImageRejection::TooLarge {
            size: bytes.len() as u64,
            limit: limits.max_bytes,
        });
    }
    let format = image::guess_format(bytes).map_err(|_| ImageRejection::NotAnImage {
        hint: if looks_like_text(bytes) {
            ": the file contains text".into()
        } else {
            String::new()
        },
    })?;
    if !matches!(
        format,
        ImageFormat::Jpeg
            | ImageFormat::Png
            | ImageFormat::Gif
            | ImageFormat::WebP
            | ImageFormat::Bmp
    ) {
        return Err(ImageRejection::Unsupported(format_name(format)));
    }
    let name = format_name(format);
    let (width, height) = match png_ihdr_dimensions(bytes, format) {
        Some(d) => d,
        None => ImageReader::with_format(Cursor::new(bytes), format)
            .into_dimensions()
            .map_err(|e| classify_error(&name, &e))?,
    };
    if width == 0 || height == 0 {
        return Err(ImageRejection::ZeroSize { width, height });
    }
    if width > limits.max_side || height > limits.max_side {
        return Err(ImageRejection::TooManyPixels {
            width,
            height,
            limit: format!("{} px per side", limits.max_side),
        });
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(ImageRejection::TooManyPixels {
            width,
            height,
            limit: format!("{} pixels", limits.max_pixels),
        });
    }
    check_complete(bytes, format)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).max(64 << 20));
    reader.limits(decoder_limits);
    let decoder = reader
        .into_decoder()
        .map_err(|e| classify_error(&name, &e))?;
    let original = decoder.original_color_type();
    let img = DynamicImage::from_decoder(decoder).map_err(|e| classify_error(&name, &e))?;
    let original = if jpeg_components(bytes) == Some(4) {
        // The JPEG decoder converts CMYK itself and reports RGB.
        image::ExtendedColorType::Cmyk8
    } else {
        original
    };
    let conversion = conversion_note(format, original);
    let rgb = match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    };
    Ok(DecodedPoster {
        rgb,
        format,
        sha256: sha256_hex(bytes),
        bytes: bytes.len() as u64,
        conversion,
    })
}

/// Width and height straight from a PNG's IHDR chunk, so that a bomb's header is judged
/// before the decoder reads any further.
fn png_ihdr_dimensions(bytes: &[u8], format: ImageFormat) -> Option<(u32, u32)> {
    if format != ImageFormat::Png || bytes.len() < 24 || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
    Some((w, h))
}

fn classify_error(format: &str, e: &image::ImageError) -> ImageRejection {
    let message = e.to_string();
    let lower = message.to_lowercase();
    if lower.contains("eof")
        || lower.contains("end of file")
        || lower.contains("unexpected end")
        || lower.contains("truncat")
        || lower.contains("not enough bytes")
        || lower.contains("no more bytes")
    {
        ImageRejection::Truncated(format.to_owned())
    } else if let image::ImageError::Limits(_) = e {
        ImageRejection::TooManyPixels {
            width: 0,
            height: 0,
            limit: message,
        }
    } else if let image::ImageError::Unsupported(_) = e {
        ImageRejection::Unsupported(format!("{format}: {message}"))
    } else {
        ImageRejection::Corrupt {
            format: format.to_owned(),
            message,
        }
    }
}

/// Thumbnail bounding box used in the catalog: twice the Gallery's largest tile (200
/// points wide), so tiles stay sharp at every size on high-density screens; posters
/// smaller than the box (TMDB's w154) are kept at their own size.
pub const THUMB_WIDTH: u32 = 400;
/// Thumbnail bounding box height.
pub const THUMB_HEIGHT: u32 = 600;

/// Thumbnails narrower than this were made by versions with a 96-point box: the viewer
/// prefers the poster file to them when it can read it.
pub const OLD_THUMB_WIDTH: u32 = 96;

/// Scales `rgb` to fit `max_w`×`max_h` (never up), keeping the aspect ratio.
pub fn fit_within(rgb: &RgbImage, max_w: u32, max_h: u32) -> RgbImage {
    let (w, h) = rgb.dimensions();
    if w <= max_w && h <= max_h {
        return rgb.clone();
    }
    let scale = (f64::from(max_w) / f64::from(w)).min(f64::from(max_h) / f64::from(h));
    let nw = ((f64::from(w) * scale).round() as u32).max(1);
    let nh = ((f64::from(h) * scale).round() as u32).max(1);
    area_resize(rgb, nw, nh)
}

/// For each output index along one axis: the first input index and the fixed-point
/// (16-bit) weights of the input pixels it covers. The weights of one output sum to 65536.
fn area_weights(src: u32, dst: u32) -> Vec<(usize, Vec<u32>)> {
    let scale = f64::from(src) / f64::from(dst);
    (0..dst)
        .map(|o| {
            let lo = f64::from(o) * scale;
            let hi = (f64::from(o + 1) * scale).min(f64::from(src));
            let first = lo.floor() as usize;
            let last = (hi.ceil() as usize).clamp(first + 1, src as usize);
            let mut weights: Vec<u32> = (first..last)
                .map(|i| {
                    let cover = (hi.min(i as f64 + 1.0) - lo.max(i as f64)).max(0.0);
                    (cover / (hi - lo) * 65536.0).round() as u32
                })
                .collect();
            // Make the weights sum exactly to 65536 so flat areas stay flat.
            let sum: u32 = weights.iter().sum();
            if let Some(w) = weights.iter_mut().max() {
                *w = (*w + 65536).saturating_sub(sum);
            }
            (first, weights)
        })
        .collect()
}

/// Downscales by exact area averaging (a box filter over the covered source area),
/// separably in fixed point: fast, and free of aliasing for the thumbnail ratios used here.
/// Upscaling falls back to a triangle filter.
pub fn area_resize(rgb: &RgbImage, nw: u32, nh: u32) -> RgbImage {
    let (w, h) = rgb.dimensions();
    if nw > w || nh > h || w == 0 || h == 0 {
        return image::imageops::resize(rgb, nw, nh, image::imageops::FilterType::Triangle);
    }
    let src = rgb.as_raw();
    let xw = area_weights(w, nw);
    // Horizontal pass: h rows of nw pixels, 16-bit fixed point.
    let mut rows = vec![0u32; h as usize * nw as usize * 3];
    for y in 0..h as usize {
        let line = &src[y * w as usize * 3..(y + 1) * w as usize * 3];
        let out = &mut rows[y * nw as usize * 3..(y + 1) * nw as usize * 3];
        for (o, (first, weights)) in xw.iter().enumerate() {
            let mut acc = [0u32; 3];
            for (k, wt) in weights.iter().enumerate() {
                let i = (first + k) * 3;
                acc[0] += u32::from(line[i]) * wt;
                acc[1] += u32::from(line[i + 1]) * wt;
                acc[2] += u32::from(line[i + 2]) * wt;
            }
            out[o * 3..o * 3 + 3].copy_from_slice(&[acc[0] >> 8, acc[1] >> 8, acc[2] >> 8]);
        }
    }
    // Vertical pass.
    let yw = area_weights(h, nh);
    let mut dst = vec![0u8; nw as usize * nh as usize * 3];
    let stride = nw as usize * 3;
    for (o, (first, weights)) in yw.iter().enumerate() {
        let out = &mut dst[o * stride..(o + 1) * stride];
        for (x, v) in out.iter_mut().enumerate() {
            let mut acc = 0u64;
            for (k, wt) in weights.iter().enumerate() {
                acc += u64::from(rows[(first + k) * stride + x]) * u64::from(*wt);
            }
            // rows carry 8 fractional bits, weights 16: round and drop 24.
            *v = ((acc + (1 << 23)) >> 24).min(255) as u8;
        }
    }
    RgbImage::from_raw(nw, nh, dst).unwrap_or_else(|| RgbImage::new(nw, nh))
}

/// The colour at `t` in `0..=1` on a ramp through `stops` (evenly spaced, linearly
/// interpolated); `t` outside the range is clamped and NaN reads as 0.
pub fn colour_ramp(stops: &[[f32; 3]], t: f32) -> [u8; 3] {
    if stops.len() < 2 {
        return stops
            .first()
            .map_or([0; 3], |c| c.map(|v| v.round().clamp(0.0, 255.0) as u8));
    }
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (stops.len() - 1) as f32;
    let i = (x.floor() as usize).min(stops.len() - 2);
    let f = x - i as f32;
    let (a, b) = (stops[i], stops[i + 1]);
    [0, 1, 2].map(|c| (a[c] + (b[c] - a[c]) * f).round().clamp(0.0, 255.0) as u8)
}

/// Encodes an RGB image as JPEG bytes.
pub fn encode_jpeg(rgb: &RgbImage, quality: u8) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
    rgb.write_with_encoder(enc)?;
    Ok(out)
}

/// Encodes an RGB image as PNG bytes.
pub fn encode_png(rgb: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Cursor::new(Vec::new());
    rgb.write_to(&mut out, ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// Whether a poster of this size gets a thumbnail in the catalog: only one larger than the
/// thumbnail box. A poster that fits (TMDB's w154, 154×231) is shown from its own file, so
/// the catalog keeps no second copy of its pixels.
pub fn needs_thumbnail(width: u32, height: u32) -> bool {
    width > THUMB_WIDTH || height > THUMB_HEIGHT
}

/// A catalog thumbnail: JPEG bytes with the width and height.
pub type Thumbnail = (Vec<u8>, u32, u32);

/// Makes the catalog thumbnail (JPEG) of a poster larger than the thumbnail box; `None`
/// for a poster that fits it (see [`needs_thumbnail`]).
pub fn make_thumbnail(rgb: &RgbImage) -> Result<Option<Thumbnail>, image::ImageError> {
    Ok(summarise(rgb)?.thumbnail)
}

/// What the catalog keeps of a decoded poster besides its file: its thumbnail, when it
/// needs one, and its colour statistics.
#[derive(Debug, Clone)]
pub struct PosterSummary {
    /// The JPEG thumbnail of a poster larger than the thumbnail box.
    pub thumbnail: Option<Thumbnail>,
    /// Colour statistics.
    pub stats: ColourStats,
}

/// Thumbnail and colour statistics of a decoded poster in one pass. A poster larger than
/// the thumbnail box is scaled down once, and both come from that copy (the area average
/// keeps the mean colour; a 2000-px scan is measured on 240,000 pixels instead of
/// millions). A poster that fits is measured as it is and gets no thumbnail.
pub fn summarise(rgb: &RgbImage) -> Result<PosterSummary, image::ImageError> {
    let (w, h) = rgb.dimensions();
    if !needs_thumbnail(w, h) {
        return Ok(PosterSummary {
            thumbnail: None,
            stats: colour_stats(rgb),
        });
    }
    let small = fit_within(rgb, THUMB_WIDTH, THUMB_HEIGHT);
    let (tw, th) = small.dimensions();
    Ok(PosterSummary {
        stats: colour_stats(&small),
        thumbnail: Some((encode_jpeg(&small, 85)?, tw, th)),
    })
}

/// Number of hue histogram bins (30° each, starting at red).
pub const HUE_BINS: usize = 12;

/// Per-poster colour statistics, all in `0..=1` except colourfulness.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ColourStats {
    /// Mean luma (Rec. 601), 0 black … 1 white.
    pub brightness: f32,
    /// Share of pixels with luma below 0.2.
    pub dark_share: f32,
    /// Mean HSV saturation.
    pub saturation: f32,
    /// Hasler–Süsstrunk colourfulness, on the 0–255 scale (≈0 grey, >100 very colourful).
    pub colourfulness: f32,
    /// Hue histogram of chromatic pixels (saturation > 0.2, value > 0.15), summing to 1
    /// (all zero for a greyscale poster). Bin 0 is red (345°–15°), bins go around by 30°.
    pub hue_hist: [f32; HUE_BINS],
    /// Share of chromatic pixels (those counted in the hue histogram).
    pub chromatic_share: f32,
}

impl ColourStats {
    /// Whether the poster is near-greyscale (few chromatic pixels, low saturation).
    pub fn is_near_greyscale(&self) -> bool {
        self.chromatic_share < 0.05 || self.saturation < 0.08
    }

    /// Share of chromatic pixels with warm hues (red, orange, yellow, magenta-red).
    pub fn warm_share(&self) -> f32 {
        // Bins centred at 0°, 30°, 60° and 330°.
        self.hue_hist[0] + self.hue_hist[1] + self.hue_hist[2] + self.hue_hist[11]
    }

    /// Share of chromatic pixels with cool hues (green-cyan, cyan, blue, violet).
    pub fn cool_share(&self) -> f32 {
        // Bins centred at 150° … 270°.
        self.hue_hist[5] + self.hue_hist[6] + self.hue_hist[7] + self.hue_hist[8] + self.hue_hist[9]
    }
}

/// Computes [`ColourStats`] of an RGB image.
pub fn colour_stats(rgb: &RgbImage) -> ColourStats {
    // Integer sums per pixel (exact), floats only at the end: this runs for every poster
    // imported or harvested, so it is kept cheap.
    let n = (rgb.width() as usize * rgb.height() as usize).max(1) as f64;
    let (mut luma_sum, mut dark, mut sat_sum) = (0u64, 0u64, 0.0f64);
    // rg = r - g; yb2 = r + g - 2b (twice the opponent yellow-blue value).
    let (mut rg_sum, mut rg_sq, mut yb2_sum, mut yb2_sq) = (0i64, 0u64, 0i64, 0u64);
    let mut hues = [0u64; HUE_BINS];
    let mut chromatic = 0u64;
    // Reciprocals of 0..=255 (0 maps to 0) replace two divisions per pixel.
    let inv: [f32; 256] = std::array::from_fn(|i| if i == 0 { 0.0 } else { 1.0 / i as f32 });
    for p in rgb.pixels() {
        let [r, g, b] = p.0;
        let (ri, gi, bi) = (i64::from(r), i64::from(g), i64::from(b));
        // Rec. 601 luma times 1000 × 255.
        let luma = (299 * ri + 587 * gi + 114 * bi) as u64;
        luma_sum += luma;
        if luma < 51_000 {
            dark += 1;
        }
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let delta = u32::from(max - min);
        sat_sum += f64::from(delta as f32 * inv[usize::from(max)]);
        let rg = ri - gi;
        let yb2 = ri + gi - 2 * bi;
        rg_sum += rg;
        rg_sq += (rg * rg) as u64;
        yb2_sum += yb2;
        yb2_sq += (yb2 * yb2) as u64;
        // Chromatic: saturation > 0.2 and value > 0.15.
        if 5 * delta > u32::from(max) && u32::from(max) * 100 > 15 * 255 {
            chromatic += 1;
            let inv_d = 60.0 * inv[delta as usize];
            let (rf, gf, bf) = (f32::from(r), f32::from(g), f32::from(b));
            let mut h = if max == r {
                (gf - bf) * inv_d
            } else if max == g {
                (bf - rf) * inv_d + 120.0
            } else {
                (rf - gf) * inv_d + 240.0
            };
            h += 15.0;
            if h < 0.0 {
                h += 360.0;
            } else if h >= 360.0 {
                h -= 360.0;
            }
            hues[(h / 30.0) as usize % HUE_BINS] += 1;
        }
    }
    let mean_rg = rg_sum as f64 / n;
    let mean_yb = 0.5 * yb2_sum as f64 / n;
    let var_rg = (rg_sq as f64 / n - mean_rg * mean_rg).max(0.0);
    let var_yb = (0.25 * yb2_sq as f64 / n - mean_yb * mean_yb).max(0.0);
    let colourfulness =
        (var_rg + var_yb).sqrt() + 0.3 * (mean_rg * mean_rg + mean_yb * mean_yb).sqrt();
    let mut hue_hist = [0f32; HUE_BINS];
    if chromatic > 0 {
        for (h, c) in hue_hist.iter_mut().zip(hues) {
            *h = (c as f64 / chromatic as f64) as f32;
        }
    }
    ColourStats {
        brightness: (luma_sum as f64 / 255_000.0 / n) as f32,
        dark_share: (dark as f64 / n) as f32,
        saturation: (sat_sum / n) as f32,
        colourfulness: colourfulness as f32,
        hue_hist,
        chromatic_share: (chromatic as f64 / n) as f32,
    }
}

/// Why a poster's thumbnail could not be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThumbError {
    /// The catalog keeps no thumbnail of it and its file is gone (moved or deleted).
    FileMissing(std::path::PathBuf),
    /// Neither a thumbnail nor a file to read.
    NoSource,
    /// The file or thumbnail is there but does not decode.
    Unreadable(String),
}

impl ThumbError {
    /// A word or two for a tile.
    pub fn short(&self) -> &'static str {
        match self {
            Self::FileMissing(_) => "file missing",
            Self::NoSource => "no file",
            Self::Unreadable(_) => "unreadable",
        }
    }
}

impl std::fmt::Display for ThumbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::FileMissing(p) => write!(f, "poster file missing: {}", p.display()),
            Self::NoSource => f.write_str("the catalog has no poster file or thumbnail for it"),
            Self::Unreadable(e) => write!(f, "unreadable poster: {e}"),
        }
    }
}

/// A thumbnail from its catalog JPEG, else from the poster file scaled down to the
/// thumbnail size; `None` when neither can be read. See [`thumbnail_or_reason`].
pub fn decode_thumbnail(jpeg: Option<&[u8]>, file: Option<&Path>) -> Option<RgbImage> {
    thumbnail_or_reason(jpeg, file).ok()
}

/// A thumbnail from its catalog JPEG, else from the poster file scaled down to the
/// thumbnail size, else why neither can be shown. The catalog keeps no thumbnail of a
/// poster that fits the thumbnail box (the file is shown), so a missing file is the usual
/// reason. A small thumbnail stored by an older version (96 points wide, blurry on big
/// tiles) gives way to the poster file when the file can be read.
pub fn thumbnail_or_reason(
    jpeg: Option<&[u8]>,
    file: Option<&Path>,
) -> Result<RgbImage, ThumbError> {
    let limits = ImageLimits::default();
    let stored = jpeg.map(|j| decode_poster(j, &limits).map(|d| d.rgb));
    if let Some(Ok(rgb)) = &stored
        && rgb.width() > OLD_THUMB_WIDTH
    {
        return Ok(rgb.clone());
    }
    let from_file = file.map(|f| {
        decode_poster_file(f, &limits)
            .map(|d| fit_within(&d.rgb, THUMB_WIDTH, THUMB_HEIGHT))
            .map_err(|e| {
                if f.exists() {
                    ThumbError::Unreadable(e.to_string())
                } else {
                    ThumbError::FileMissing(f.to_path_buf())
                }
            })
    });
    match (from_file, stored) {
        (Some(Ok(rgb)), _) | (_, Some(Ok(rgb))) => Ok(rgb),
        (Some(Err(e)), _) => Err(e),
        (None, Some(Err(e))) => Err(ThumbError::Unreadable(e.to_string())),
        (None, None) => Err(ThumbError::NoSource),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn solid(w: u32, h: u32, c: [u8; 3]) -> RgbImage {
        RgbImage::from_pixel(w, h, Rgb(c))
    }

    fn noise(w: u32, h: u32, seed: u32) -> RgbImage {
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        RgbImage::from_fn(w, h, |x, y| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let base = ((x * 3 + y * 2) % 256) as u8;
            Rgb([
                base,
                (state & 0xff) as u8,
                base.wrapping_add((state >> 8) as u8 & 0x3f),
            ])
        })
    }

    #[test]
    fn area_resize_keeps_flat_areas_and_tracks_reference_filter() {
        let flat = solid(154, 231, [200, 17, 90]);
        let t = area_resize(&flat, 96, 144);
        assert_eq!(t.dimensions(), (96, 144));
        assert!(t.pixels().all(|p| p.0 == [200, 17, 90]));
        let smooth = RgbImage::from_fn(154, 231, |x, y| {
            let v = |f: f32| (127.5 + 127.0 * f.sin()) as u8;
            Rgb([
                v(x as f32 / 9.0),
                v(y as f32 / 13.0),
                v((x + y) as f32 / 17.0),
            ])
        });
        let ours = area_resize(&smooth, 96, 144);
        // Exact area average in floating point.
        let (sx, sy) = (154.0 / 96.0, 231.0 / 144.0);
        let cover = |o: u32, i: u32, s: f64| {
            let (lo, hi) = (f64::from(o) * s, f64::from(o + 1) * s);
            (hi.min(f64::from(i) + 1.0) - lo.max(f64::from(i))).max(0.0)
        };
        let reference = RgbImage::from_fn(96, 144, |ox, oy| {
            let mut acc = [0.0f64; 3];
            for iy in 0..231 {
                let wy = cover(oy, iy, sy);
                if wy == 0.0 {
                    continue;
                }
                for ix in 0..154 {
                    let w = wy * cover(ox, ix, sx);
                    for (a, v) in acc.iter_mut().zip(smooth.get_pixel(ix, iy).0) {
                        *a += w * f64::from(v);
                    }
                }
            }
            Rgb(acc.map(|a| (a / (sx * sy)).round() as u8))
        });
        let diff: f64 = ours
            .as_raw()
            .iter()
            .zip(reference.as_raw())
            .map(|(a, b)| f64::from((i16::from(*a) - i16::from(*b)).abs()))
            .sum::<f64>()
            / ours.as_raw().len() as f64;
        assert!(diff < 0.6, "mean abs difference {diff}");
        let img = noise(154, 231, 7);
        let ours = area_resize(&img, 96, 144);
        // Mean colour is preserved by area averaging.
        let mean = |i: &RgbImage| {
            i.as_raw().iter().map(|&v| f64::from(v)).sum::<f64>() / i.as_raw().len() as f64
        };
        assert!((mean(&ours) - mean(&img)).abs() < 1.0);
    }

    #[test]
    fn stats_match_direct_float_formulas() {
        let img = noise(40, 60, 3);
        let s = colour_stats(&img);
        let n = 2400.0;
        let (mut luma, mut sat, mut rg, mut yb, mut rg2, mut yb2) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        for p in img.pixels() {
            let [r, g, b] = p.0.map(f64::from);
            luma += (0.299 * r + 0.587 * g + 0.114 * b) / 255.0;
            let (mx, mn) = (r.max(g).max(b), r.min(g).min(b));
            sat += if mx == 0.0 { 0.0 } else { (mx - mn) / mx };
            rg += r - g;
            yb += 0.5 * (r + g) - b;
            rg2 += (r - g) * (r - g);
            yb2 += (0.5 * (r + g) - b) * (0.5 * (r + g) - b);
        }
        let (mrg, myb) = (rg / n, yb / n);
        let cf = ((rg2 / n - mrg * mrg) + (yb2 / n - myb * myb)).sqrt()
            + 0.3 * (mrg * mrg + myb * myb).sqrt();
        assert!((f64::from(s.brightness) - luma / n).abs() < 1e-5);
        assert!((f64::from(s.saturation) - sat / n).abs() < 1e-5);
        assert!((f64::from(s.colourfulness) - cf).abs() < 1e-3);
        let total: f32 = s.hue_hist.iter().sum();
        assert!((total - 1.0).abs() < 1e-5);
    }

    #[test]
    fn stats_of_solid_colours() {
        let black = colour_stats(&solid(10, 10, [0, 0, 0]));
        assert_eq!(black.brightness, 0.0);
        assert_eq!(black.dark_share, 1.0);
        assert!(black.is_near_greyscale());
        let red = colour_stats(&solid(10, 10, [255, 0, 0]));
        assert!((red.saturation - 1.0).abs() < 1e-6);
        assert!((red.hue_hist[0] - 1.0).abs() < 1e-6);
        assert!(red.warm_share() > 0.99);
        let blue = colour_stats(&solid(10, 10, [0, 0, 255]));
        assert!((blue.hue_hist[8] - 1.0).abs() < 1e-6, "{:?}", blue.hue_hist);
        assert!(blue.cool_share() > 0.99);
        let grey = colour_stats(&solid(10, 10, [128, 128, 128]));
        assert!(grey.colourfulness < 1e-6);
        assert!(grey.is_near_greyscale());
        // Half red, half green: colourful.
        let mut mixed = solid(10, 10, [255, 0, 0]);
        for y in 0..5 {
            for x in 0..10 {
                mixed.put_pixel(x, y, Rgb([0, 255, 0]));
            }
        }
        let m = colour_stats(&mixed);
        assert!(m.colourfulness > 100.0, "{}", m.colourfulness);
        assert!((m.hue_hist[4] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn rejects_bad_inputs_with_reasons() {
        let limits = ImageLimits::default();
        assert_eq!(
            decode_poster(b"", &limits).unwrap_err(),
            ImageRejection::Empty
        );
        let text = decode_poster(b"hello, this is not a poster\n", &limits).unwrap_err();
        assert!(text.to_string().contains("not an image"), "{text}");
        let jpeg = encode_jpeg(&solid(40, 60, [200, 30, 30]), 90).unwrap();
        let ok = decode_poster(&jpeg, &limits).unwrap();
        assert_eq!(ok.rgb.dimensions(), (40, 60));
        assert_eq!(ok.sha256.len(), 64);
        let truncated = decode_poster(&jpeg[..jpeg.len() / 2], &limits).unwrap_err();
        assert!(
            matches!(truncated, ImageRejection::Truncated(_)),
            "{truncated}"
        );
        let png = encode_png(&solid(40, 60, [1, 2, 3])).unwrap();
        let t = decode_poster(&png[..png.len() - 20], &limits).unwrap_err();
        assert!(
            matches!(
                t,
                ImageRejection::Truncated(_) | ImageRejection::Corrupt { .. }
            ),
            "{t}"
        );
    }

    #[test]
    fn huge_header_is_rejected_before_decoding() {
        // A valid PNG header claiming 50000x50000 pixels, with no pixel data.
        let mut png = Vec::new();
        png.extend_from_slice(b"\x89PNG\r\n\x1a\n");
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&50_000u32.to_be_bytes());
        ihdr.extend_from_slice(&50_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        png.extend_from_slice(&(ihdr.len() as u32).to_be_bytes());
        png.extend_from_slice(b"IHDR");
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc32(b"IHDR", &ihdr).to_be_bytes());
        let err = decode_poster(&png, &ImageLimits::default()).unwrap_err();
        assert!(
            matches!(err, ImageRejection::TooManyPixels { width: 50_000, .. }),
            "{err}"
        );
    }

    fn crc32(kind: &[u8], data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in kind.iter().chain(data) {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    0xEDB8_8320 ^ (crc >> 1)
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn colour_ramps_interpolate_between_even_stops() {
        let stops = [[0.0, 0.0, 0.0], [100.0, 200.0, 50.0], [200.0, 200.0, 250.0]];
        assert_eq!(colour_ramp(&stops, 0.0), [0, 0, 0]);
        assert_eq!(colour_ramp(&stops, 0.25), [50, 100, 25]);
        assert_eq!(colour_ramp(&stops, 0.5), [100, 200, 50]);
        assert_eq!(colour_ramp(&stops, 1.0), [200, 200, 250]);
        assert_eq!(colour_ramp(&stops, 3.0), [200, 200, 250]);
        assert_eq!(colour_ramp(&stops, f32::NAN), [0, 0, 0]);
        assert_eq!(colour_ramp(&stops[..1], 0.7), [0, 0, 0]);
        assert_eq!(colour_ramp(&[], 0.7), [0, 0, 0]);
    }

    #[test]
    fn thumbnail_fits_box() {
        // A w154 TMDB poster fits the box: no thumbnail (its file is shown); a big scan is
        // scaled into the box.
        assert!(
            make_thumbnail(&solid(154, 231, [10, 200, 10]))
                .unwrap()
                .is_none()
        );
        assert!(
            make_thumbnail(&solid(400, 600, [10, 200, 10]))
                .unwrap()
                .is_none()
        );
        assert!(make_thumbnail(&solid(50, 40, [0, 0, 0])).unwrap().is_none());
        let (jpeg, w, h) = make_thumbnail(&solid(1000, 1500, [10, 200, 10]))
            .unwrap()
            .unwrap();
        assert_eq!((w, h), (400, 600));
        assert!(decode_poster(&jpeg, &ImageLimits::default()).is_ok());
        let (_, w, h) = make_thumbnail(&solid(401, 300, [0, 0, 0]))
            .unwrap()
            .unwrap();
        assert_eq!((w, h), (400, 299));
    }

    #[test]
    fn summary_measures_large_posters_on_their_thumbnail() {
        // A large poster's statistics come from its thumbnail-size copy: the mean colour
        // is kept, and a two-tone poster keeps its dark share.
        let big = RgbImage::from_fn(1200, 1800, |_, y| {
            if y < 900 {
                Rgb([200, 40, 30])
            } else {
                Rgb([10, 10, 10])
            }
        });
        let full = colour_stats(&big);
        let s = summarise(&big).unwrap();
        assert!(s.thumbnail.is_some());
        assert!((s.stats.brightness - full.brightness).abs() < 0.01);
        assert!((s.stats.dark_share - full.dark_share).abs() < 0.01);
        assert!((s.stats.saturation - full.saturation).abs() < 0.01);
        // A poster that fits is measured as it is.
        let small = solid(154, 231, [10, 200, 10]);
        assert_eq!(summarise(&small).unwrap().stats, colour_stats(&small));
    }

    #[test]
    fn cmyk_jpeg_is_converted_with_the_right_colours() {
        let bytes = include_bytes!("../tests/fixtures/cmyk.jpg");
        let d = decode_poster(bytes, &ImageLimits::default()).unwrap();
        assert_eq!(d.rgb.dimensions(), (40, 60));
        assert!(d.conversion.as_deref().unwrap_or("").contains("CMYK"));
        // The fixture runs from red (#c03020) at the top to blue (#2040a0) at the bottom.
        let top = d.rgb.get_pixel(20, 1).0;
        let bottom = d.rgb.get_pixel(20, 58).0;
        assert!(top[0] > 150 && top[2] < 90, "top {top:?}");
        assert!(bottom[2] > 120 && bottom[0] < 80, "bottom {bottom:?}");
    }
}
