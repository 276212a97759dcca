//! The binary edge: parse arguments, run, and turn every failure into one
//! line on stderr and a non-zero exit status.

use std::{io::Write, process::ExitCode};

use clap::FromArgMatches;
use rsttrace::{
    cli::{self, Cli, Command},
    cmd,
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

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("rsttrace: error: {e:#}");
    ExitCode::FAILURE
}

fn parse() -> Result<Cli, ExitCode> {
    let matches = match cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return Err(ExitCode::SUCCESS);
            }
            // One line: clap's first line, without its usage block.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("rsttrace: error: {first} (see rsttrace --help)");
            return Err(ExitCode::from(2));
        }
    };
    Cli::from_arg_matches(&matches).map_err(|e| {
        eprintln!("rsttrace: error: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(c) => c,
        Err(code) => return code,
    };
    match cli.command {
        Some(Command::Causes { format }) => print(&cmd::docs::causes(format)),
        Some(Command::Schema { format }) => print(&cmd::docs::schema(format)),
        Some(Command::Completions { shell }) => print(&cmd::docs::completions(shell)),
        Some(Command::Doctor { format, btf }) => {
            init_logging(0);
            let json = format == cli::DoctorFormat::Json;
            match cmd::doctor::execute(btf.as_deref(), json) {
                Ok((text, runnable)) => {
                    let code = print(&text);
                    if runnable {
                        code
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => fail(&e),
            }
        }
        Some(Command::Man) => match cmd::docs::man() {
            Ok(text) => print(&text),
            Err(e) => fail(&e),
        },
        None => {
            init_logging(cli.trace.verbose);
            match cmd::trace::execute(cli.trace) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
    }
}
