//! The executables a cargo build made, from `--message-format=json`.

use std::{
    io::BufRead,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// An executable cargo built: its target's kind ("bin", "test"), name and
/// path.
pub(crate) struct Artifact {
    pub kind: String,
    pub name: String,
    pub path: PathBuf,
}

/// Runs `build` (a cargo build command, or cargo-zigbuild's) with JSON
/// messages and returns the executables it made.  Compiler messages go to
/// stderr as cargo renders them.
pub(crate) fn artifacts(mut build: Command) -> Result<Vec<Artifact>> {
    let what = format!("{build:?}");
    let mut child = build
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {what}"))?;
    let mut found = vec![];
    let stdout = child.stdout.take().expect("piped stdout");
    for line in std::io::BufReader::new(stdout).lines() {
        let Ok(v) = serde_json::from_str::<Value>(&line?) else {
            continue;
        };
        let (Some(exe), Some(name)) = (v["executable"].as_str(), v["target"]["name"].as_str())
        else {
            continue;
        };
        if v["reason"] != "compiler-artifact" {
            continue;
        }
        for kind in v["target"]["kind"].as_array().into_iter().flatten() {
            found.push(Artifact {
                kind: kind.as_str().unwrap_or_default().to_string(),
                name: name.to_string(),
                path: PathBuf::from(exe),
            });
        }
    }
    let s = child.wait()?;
    if !s.success() {
        bail!("{what} failed ({s})");
    }
    Ok(found)
}

/// The executable of the artifact `name` of `kind`.
pub(crate) fn find(built: &[Artifact], kind: &str, name: &str) -> Result<PathBuf> {
    built
        .iter()
        .find(|a| a.kind == kind && a.name == name)
        .map(|a| a.path.clone())
        .with_context(|| format!("the build made no {kind} `{name}`"))
}

/// `build`'s executable of `kind` named `name`.
pub(crate) fn executable(build: Command, kind: &str, name: &str) -> Result<PathBuf> {
    find(&artifacts(build)?, kind, name)
}
