//! `movie-eras`: the app window with no arguments, a headless job with a subcommand.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use clap::Parser;
use movie_eras::cli::{self, Cli};
use movie_eras::paths::DataDir;

/// mimalloc instead of the system allocator: the CPU backend allocates and frees a tensor per
/// layer output, and glibc's malloc hands those large blocks back to the kernel (`munmap`) and
/// faults them in again on every pass; mimalloc keeps them (docs/model.md, "CPU speed").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level)).init();
    if cli.command.is_none() {
        let data_dir = DataDir::resolve(cli.data_dir.as_deref());
        let schemes = match cli::load_schemes(&data_dir, cli.eras_file.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e:#}");
                return std::process::ExitCode::FAILURE;
            }
        };
        return match movie_eras::app::run_gui(data_dir, schemes, cli.open) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot open the window: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
