//! Text drawn into exported images (wall and contact-sheet labels), with the Ubuntu Light
//! font that egui ships (`epaint_default_fonts`, Ubuntu Font Licence) rasterised by
//! `ab_glyph`: no system fonts, the same look on every machine.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use image::{Rgb, RgbImage};

/// The font for labels.
pub struct Fonts {
    font: Option<FontRef<'static>>,
}

impl Default for Fonts {
    fn default() -> Self {
        Self::new()
    }
}

impl Fonts {
    /// Loads the built-in font (a font that cannot be read draws nothing).
    pub fn new() -> Self {
        Self {
            font: FontRef::try_from_slice(epaint_default_fonts::UBUNTU_LIGHT).ok(),
        }
    }

    /// Width in pixels of `text` at `px`.
    pub fn width(&self, text: &str, px: f32) -> f32 {
        let Some(font) = &self.font else { return 0.0 };
        let f = font.as_scaled(PxScale::from(px));
        let mut w = 0.0;
        let mut prev = None;
        for c in text.chars() {
            let id = f.glyph_id(c);
            if let Some(p) = prev {
                w += f.kern(p, id);
            }
            w += f.h_advance(id);
            prev = Some(id);
        }
        w
    }

    /// Draws `text` with its top-left at `(x, y)`, `px` pixels high, in `colour` over what
    /// is there; cut with an ellipsis to fit `max_w` pixels.
    #[allow(clippy::too_many_arguments)] // a position, a box and the text's look
    pub fn draw(
        &self,
        img: &mut RgbImage,
        x: u32,
        y: u32,
        max_w: u32,
        px: f32,
        text: &str,
        colour: Rgb<u8>,
    ) {
        let Some(font) = &self.font else { return };
        let shown = self.fit(text, px, max_w as f32);
        let f = font.as_scaled(PxScale::from(px));
        let mut caret = x as f32;
        let baseline = y as f32 + f.ascent();
        let mut prev = None;
        for c in shown.chars() {
            let id = f.glyph_id(c);
            if let Some(p) = prev {
                caret += f.kern(p, id);
            }
            let glyph =
                id.with_scale_and_position(PxScale::from(px), ab_glyph::point(caret, baseline));
            caret += f.h_advance(id);
            prev = Some(id);
            let Some(outline) = font.outline_glyph(glyph) else {
                continue;
            };
            let b = outline.px_bounds();
            outline.draw(|gx, gy, cov| {
                let tx = b.min.x as i64 + i64::from(gx);
                let ty = b.min.y as i64 + i64::from(gy);
                if tx < 0 || ty < 0 || tx >= i64::from(img.width()) || ty >= i64::from(img.height())
                {
                    return;
                }
                let p = img.get_pixel_mut(tx as u32, ty as u32);
                let a = cov.clamp(0.0, 1.0);
                for k in 0..3 {
                    p[k] = (f32::from(p[k]) * (1.0 - a) + f32::from(colour[k]) * a).round() as u8;
                }
            });
        }
    }

    /// `text`, or its longest start with "…" that fits `max_w`.
    fn fit(&self, text: &str, px: f32, max_w: f32) -> String {
        if self.width(text, px) <= max_w {
            return text.to_owned();
        }
        let mut out: String = text.to_owned();
        while !out.is_empty() {
            out.pop();
            let candidate = format!("{}…", out.trim_end());
            if self.width(&candidate, px) <= max_w {
                return candidate;
            }
        }
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_drawn_and_long_text_is_cut_to_fit() {
        let fonts = Fonts::new();
        let mut img = RgbImage::from_pixel(200, 30, Rgb([255, 255, 255]));
        fonts.draw(&mut img, 2, 2, 196, 18.0, "1950s (40)", Rgb([0, 0, 0]));
        let inked = img.pixels().filter(|p| p[0] < 128).count();
        assert!(inked > 30, "{inked}");
        let long = "A very long title that cannot fit in a small tile at all";
        let cut = fonts.fit(long, 11.0, 80.0);
        assert!(
            cut.ends_with('…') && fonts.width(&cut, 11.0) <= 80.0,
            "{cut}"
        );
        assert_eq!(fonts.fit("Jaws", 11.0, 80.0), "Jaws");
    }
}
