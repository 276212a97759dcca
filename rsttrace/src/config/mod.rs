//! `--config FILE` (TOML) and `--suppress`: the suppression rules.  A bad
//! file is one line naming the file, line, column and problem.
//!
//! ```toml
//! [[suppress]]
//! name = "lb-health-checks"
//! cause = ["abort_unread_data", "abort_linger"]
//! local_port = [8080, "9000-9100"]
//! remote_cidr = "10.0.0.0/8"
//! ```

pub(crate) mod rule;

use std::{collections::BTreeMap, ops::Range, path::Path};

use serde::Deserialize;
use toml::Spanned;

pub(crate) use self::rule::{Rule, Rules};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("{path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}:{line}:{col}: {message}")]
    At {
        path: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("--suppress {spec:?}: {message}")]
    Flag { spec: String, message: String },
}

type Table = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    suppress: Vec<Spanned<Table>>,
}

/// The rules from `--config` (if any), then those from `--suppress`.
pub(crate) fn load(path: Option<&Path>, flags: &[String]) -> Result<Rules, ConfigError> {
    let mut rules = Vec::new();
    if let Some(p) = path {
        let text = std::fs::read_to_string(p).map_err(|error| ConfigError::Read {
            path: p.display().to_string(),
            error,
        })?;
        rules = parse(&text).map_err(|(span, message)| at(p, &text, span, message))?;
    }
    for (i, spec) in flags.iter().enumerate() {
        let rule = rule::parse_flag(spec, i).map_err(|message| ConfigError::Flag {
            spec: spec.clone(),
            message,
        })?;
        rules.push(rule);
    }
    Ok(Rules { rules })
}

/// Parses a config file; an error comes with the bytes it is about.
fn parse(text: &str) -> Result<Vec<Rule>, (Range<usize>, String)> {
    let file: File = toml::from_str(text).map_err(|e| {
        // One line: toml's messages may span several.
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("; ");
        (e.span().unwrap_or(0..0), message)
    })?;
    let mut rules = Vec::new();
    for (i, table) in file.suppress.into_iter().enumerate() {
        let span = table.span();
        let mut rule = Rule {
            name: format!("rule{}", i + 1),
            ..Rule::default()
        };
        for (key, value) in table.into_inner() {
            let values = strings(value.get_ref())
                .map_err(|m| (value.span(), format!("{}: {m}", key.get_ref())))?;
            rule::set(&mut rule, key.get_ref(), values.iter().map(String::as_str)).map_err(
                |m| {
                    let span = if m.starts_with("unknown condition") {
                        key.span()
                    } else {
                        value.span()
                    };
                    (span, m)
                },
            )?;
        }
        if rule.name.is_empty() || rules.iter().any(|r: &Rule| r.name == rule.name) {
            return Err((
                span,
                format!("rule name {:?} is empty or used twice", rule.name),
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// A value as the strings the rule syntax reads.
fn strings(v: &toml::Value) -> Result<Vec<String>, String> {
    let one = |v: &toml::Value| match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        _ => Err("expected a string, a number, or a list of them".to_string()),
    };
    match v {
        toml::Value::Array(items) if !items.is_empty() => items.iter().map(one).collect(),
        toml::Value::Array(_) => Err("an empty list matches nothing; leave the key out".into()),
        other => one(other).map(|s| vec![s]),
    }
}

fn at(path: &Path, text: &str, span: Range<usize>, message: String) -> ConfigError {
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    ConfigError::At {
        path: path.display().to_string(),
        line,
        col,
        message,
    }
}

#[cfg(test)]
mod tests;
