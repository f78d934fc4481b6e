//! Movie Eras: does a movie poster show its era?
//!
//! One domain core shared by the desktop app ([`app`]) and the headless CLI ([`cli`]):
//! the SQLite [`catalog`], [`eras`] schemes, poster [`imaging`], [`import`], [`export`]
//! and the TMDB [`harvest`]er, the era [`model`], and what the gallery shows ([`explore`]).

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod app;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod desktop;
pub mod eras;
pub mod explore;
pub mod export;
pub mod fsutil;
pub mod harvest;
pub mod imaging;
pub mod import;
pub mod joblock;
pub mod jobs;
pub mod model;
pub mod paths;
pub mod version;
