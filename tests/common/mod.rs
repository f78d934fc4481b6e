//! Helpers shared by the integration tests: catalogs of generated posters.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use std::path::PathBuf;

use image::{Rgb, RgbImage};
use movie_eras::catalog::{Catalog, NewMovie, PosterRecord, PosterStatus};
use movie_eras::paths::DataDir;

/// Runs this crate's binary on the data directory `data` with `args`.
pub fn run_cli(data: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_movie-eras"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

/// Writes `count` generated posters (`make(i)` gives the year and the image of poster
/// `i`) under `dir/images` and a catalog of them under `dir/data`.
pub fn catalog_of(dir: &Path, count: u32, make: impl Fn(u32) -> (i32, RgbImage)) -> DataDir {
    let data = DataDir::new(dir.join("data"));
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let mut movies = Vec::new();
    for i in 0..count {
        let (year, img) = make(i);
        let file = images.join(format!("p{i}.png"));
        img.save(&file).unwrap();
        movies.push(NewMovie {
            source_key: format!("test:{i}"),
            source: "test".into(),
            tmdb_id: None,
            title: format!("Poster {i}"),
            year: Some(year),
            release_date: None,
            genres: vec![],
            popularity: None,
            vote_average: None,
            vote_count: None,
            poster: PosterRecord {
                remote_path: None,
                file: Some(file.display().to_string()),
                sha256: Some(format!("{i:064}")),
                bytes: None,
                width: Some(img.width()),
                height: Some(img.height()),
                status: PosterStatus::Ok,
                reason: None,
                transient: false,
                stats: None,
                thumbnail: None,
            },
        });
    }
    let mut c = Catalog::open(&data.catalog_path()).unwrap();
    c.insert_movies(&movies).unwrap();
    data
}

/// A xorshift step, for reproducible noise in generated posters.
pub fn xorshift(state: &mut u32) -> u32 {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    *state
}

/// A generated poster with a pattern set by `seed`.
pub fn poster(seed: u32, w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v = seed.wrapping_mul(2_654_435_761);
        Rgb([
            ((x * 3 + v) % 256) as u8,
            ((y * 2 + (v >> 8)) % 256) as u8,
            (((x + y) + (v >> 16)) % 256) as u8,
        ])
    })
}

/// Writes `img` as a JPEG.
pub fn write_jpeg(path: &Path, img: &RgbImage) {
    let bytes = movie_eras::imaging::encode_jpeg(img, 85).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A PNG whose header claims 50000×50000 pixels (a decompression bomb).
pub fn huge_png_header() -> Vec<u8> {
    // IHDR claiming 50000x50000 RGB, followed by a tiny bogus IDAT and IEND.
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
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
        out.extend_from_slice(&(!crc).to_be_bytes());
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&50_000u32.to_be_bytes());
    ihdr.extend_from_slice(&50_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &[0x78, 0x9c, 0x03, 0x00]);
    chunk(&mut png, b"IEND", &[]);
    png
}

/// Files a poster tool must refuse, each with a phrase its message must contain.
pub fn bad_inputs(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    std::fs::create_dir_all(dir).unwrap();
    let mut out = Vec::new();
    let empty = dir.join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    out.push((empty, "empty file"));
    let truncated = dir.join("truncated.jpg");
    let jpeg = movie_eras::imaging::encode_jpeg(&poster(3, 154, 231), 90).unwrap();
    std::fs::write(&truncated, &jpeg[..jpeg.len() / 2]).unwrap();
    out.push((truncated, "truncated JPEG"));
    let text = dir.join("notes.jpg");
    std::fs::write(&text, "Casablanca (1942), a poster to follow\n").unwrap();
    out.push((text, "contains text"));
    let bomb = dir.join("bomb.png");
    std::fs::write(&bomb, huge_png_header()).unwrap();
    out.push((bomb, "50000x50000"));
    let folder = dir.join("a folder.jpg");
    std::fs::create_dir_all(&folder).unwrap();
    out.push((folder, "a folder"));
    let huge = dir.join("huge.jpg");
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len(200 * 1024 * 1024).unwrap(); // sparse: no disk used
    out.push((huge, "too large"));
    out
}

/// Unusual but valid posters, converted rather than refused, each with a phrase the
/// conversion note must contain.
pub fn unusual_inputs(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    std::fs::create_dir_all(dir).unwrap();
    let mut out = Vec::new();
    let gif = dir.join("poster.gif");
    image::DynamicImage::ImageRgb8(poster(5, 60, 90))
        .save_with_format(&gif, image::ImageFormat::Gif)
        .unwrap();
    out.push((gif, "GIF"));
    let cmyk = dir.join("cmyk.jpg");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cmyk.jpg"),
        &cmyk,
    )
    .unwrap();
    out.push((cmyk, "CMYK"));
    let deep = dir.join("deep.png");
    let img16 = image::ImageBuffer::<Rgb<u16>, Vec<u16>>::from_fn(60, 90, |x, y| {
        Rgb([(x * 1000) as u16, (y * 700) as u16, 40_000])
    });
    img16.save(&deep).unwrap();
    out.push((deep, "16-bit"));
    out
}
