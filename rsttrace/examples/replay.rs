//! Dev-only profiling harness (see rsttrace/src/cmd/trace/rawdump.rs):
//! replays raw records dumped by `RSTTRACE_DUMP_RAW=FILE rsttrace ...`
//! through the real pipeline and output, to standard output.
//!
//! `replay FILE [LIMIT] [-- RSTTRACE-OPTIONS]`: at most LIMIT records
//! (all by default); the options default to `--format json`.  Run as
//! root (the kernel's names come from its BTF), e.g.
//! `valgrind --tool=callgrind target/release/examples/replay FILE >/dev/null`;
//! two runs with different LIMITs give the instructions per record.

use std::{path::PathBuf, process::ExitCode};

use clap::FromArgMatches;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let options = match args.iter().position(|a| a == "--") {
        Some(at) => args.split_off(at).split_off(1),
        None => vec!["--format".into(), "json".into()],
    };
    let Some(path) = args.first().map(PathBuf::from) else {
        eprintln!("usage: replay FILE [LIMIT] [-- RSTTRACE-OPTIONS]");
        return ExitCode::from(2);
    };
    let limit = args
        .get(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let matches = rsttrace::cli::command()
        .try_get_matches_from(std::iter::once("rsttrace".to_string()).chain(options));
    let cli = match matches.map(|m| rsttrace::cli::Cli::from_arg_matches(&m)) {
        Ok(Ok(cli)) => cli,
        Ok(Err(e)) | Err(e) => {
            eprintln!("replay: {e}");
            return ExitCode::from(2);
        }
    };
    match rsttrace::cmd::trace::replay(&path, &cli.trace, limit) {
        Ok(written) => {
            eprintln!("replay: {written} records written");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("replay: {e:#}");
            ExitCode::FAILURE
        }
    }
}
