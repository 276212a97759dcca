//! `rsttrace causes`, `schema`, `completions`, `man`: documentation from
//! the code itself.

use std::fmt::Write as _;

use anyhow::{Context as _, Result};

use crate::{
    cli::{self, DocFormat},
    model::failure::FailureKind,
    output::schema::{self, SchemaFormat},
    vocab::{causes::KERNEL_RANGES, Cause},
};

/// The cause catalogue as Markdown tables (causes, then connection
/// failures without a reset): the body of docs/causes.md, which
/// `cargo xtask docs --check` compares with this output.
pub fn causes_markdown() -> String {
    let mut out = String::from(
        "| cause | direction | app_errno | kernels | explanation |\n|---|---|---|---|---|\n",
    );
    for c in Cause::ALL {
        let errno = c.app_errno().map_or("-".to_string(), |e| e.to_string());
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            c.id(),
            c.direction().as_str(),
            errno,
            c.kernels(),
            c.explanation()
        );
    }
    out.push_str("\nConnection failures without a reset (`--failures`, `\"event\": \"connection_failure\"`):\n\n| failure | explanation |\n|---|---|\n");
    for f in FailureKind::ALL {
        let _ = writeln!(out, "| `{}` | {} |", f.id(), f.explanation());
    }
    out
}

/// `rsttrace causes --format FORMAT`: the cause catalogue in that format.
pub fn causes(format: DocFormat) -> String {
    match format {
        DocFormat::Text => crate::classify::causes_text(),
        DocFormat::Markdown => causes_markdown(),
        DocFormat::Json => causes_json(),
    }
}

/// The catalogue for machines: every cause with how each kernel range
/// tells it.
pub fn causes_json() -> String {
    let ranges: Vec<&str> = KERNEL_RANGES.iter().map(|(r, _)| *r).collect();
    let causes: Vec<serde_json::Value> = Cause::ALL
        .iter()
        .map(|c| {
            let kernels: serde_json::Map<String, serde_json::Value> = ranges
                .iter()
                .zip(c.availability())
                .map(|(r, a)| (r.to_string(), a.as_str().into()))
                .collect();
            serde_json::json!({
                "cause": c.id(),
                "direction": c.direction().as_str(),
                "app_errno": c.app_errno().map(|e| e.name()),
                "explanation": c.explanation(),
                "kernels": kernels,
            })
        })
        .collect();
    let failures: Vec<serde_json::Value> = FailureKind::ALL
        .iter()
        .map(|f| serde_json::json!({"failure": f.id(), "explanation": f.explanation()}))
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "kernel_ranges": ranges,
        "causes": causes,
        "failures": failures,
    }))
    .expect("plain JSON")
        + "\n"
}

/// `rsttrace schema --format FORMAT`: every record kind's keys (the
/// Markdown one is the body of docs/json.md).
pub fn schema(format: SchemaFormat) -> String {
    schema::render(format)
}

/// `rsttrace completions SHELL`: the completion script for that shell,
/// made from the same clap command `main()` parses with.
pub fn completions(shell: clap_complete::Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cli::command(), "rsttrace", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `rsttrace man`: the man page (roff, section 8) made from the clap
/// command; the Debian package installs it as rsttrace.8.
pub fn man() -> Result<String> {
    let mut out = Vec::new();
    // Section 8, system administration commands: rsttrace runs as root
    // (packages install it in /usr/sbin).
    clap_mangen::Man::new(cli::command())
        .section("8")
        .render(&mut out)
        .context("cannot render the man page")?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
