//! The binary edge: parse arguments, run, and turn every failure into one
//! line on stderr and a non-zero exit status.

use std::{io::Write, process::ExitCode};

use clap::FromArgMatches;
use rsttrace::{
    cli::{self, Cli, Command, DocFormat},
    output::{records, schema},
    trace,
};

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .format(|buf, record| {
            let level = match record.level() {
                log::Level::Error => "error: ",
                log::Level::Warn => "warning: ",
                _ => "",
            };
            writeln!(buf, "rsttrace: {level}{}", record.args())
        })
        .init();
}

fn print(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // `rsttrace causes | head`: fine.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rsttrace: error: cannot write output: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let matches = match cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line: clap's first line, without its usage block.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("rsttrace: error: {first} (see rsttrace --help)");
            return ExitCode::from(2);
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rsttrace: error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Some(Command::Causes { format }) => print(&match format {
            DocFormat::Text => cli::causes_text(),
            DocFormat::Markdown => cli::causes_markdown(),
        }),
        Some(Command::Schema { format }) => {
            let sections = [
                ("reset", schema::RESET_KEYS),
                ("connection_failure", records::FAILURE_KEYS),
                ("suppressed", records::SUPPRESSED_KEYS),
                ("lost", records::LOST_KEYS),
            ];
            let mut text = String::new();
            for (event, keys) in sections {
                match format {
                    DocFormat::Markdown => {
                        text.push_str(&format!("\n### `\"event\": \"{event}\"`\n\n"));
                        text.push_str(&schema::markdown(keys));
                    }
                    DocFormat::Text => {
                        text.push_str(&format!("\n\"event\": \"{event}\"\n"));
                        for (k, t, m) in keys {
                            text.push_str(&format!("  {k:<22} {t:<13} {m}\n"));
                        }
                    }
                }
            }
            print(text.trim_start())
        }
        Some(Command::Completions { shell }) => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cli::command(), "rsttrace", &mut out);
            print(&String::from_utf8_lossy(&out))
        }
        Some(Command::Man) => {
            let mut out = Vec::new();
            match clap_mangen::Man::new(cli::command()).render(&mut out) {
                Ok(()) => print(&String::from_utf8_lossy(&out)),
                Err(e) => {
                    eprintln!("rsttrace: error: cannot render the man page: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        None => {
            init_logging(cli.trace.verbose);
            match trace::execute(cli.trace) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("rsttrace: error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
