//! `rsttrace schema` and docs/json.md: the field tables, rendered.

use std::fmt::Write as _;

use crate::model::schema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaFormat {
    Text,
    Markdown,
    Json,
}

pub(crate) fn render(format: SchemaFormat) -> String {
    let mut out = String::new();
    match format {
        SchemaFormat::Text => {
            for (event, fields) in schema() {
                let _ = writeln!(out, "\n\"event\": \"{event}\"");
                for f in fields {
                    let _ = writeln!(out, "  {:<22} {:<13} {}", f.key, f.ty.name(), f.meaning);
                }
            }
        }
        SchemaFormat::Markdown => {
            for (event, fields) in schema() {
                let _ = write!(
                    out,
                    "\n### `\"event\": \"{event}\"`\n\n| key | type | meaning |\n|---|---|---|\n"
                );
                for f in fields {
                    let _ = writeln!(out, "| `{}` | {} | {} |", f.key, f.ty.name(), f.meaning);
                }
            }
        }
        SchemaFormat::Json => {
            let kinds: Vec<serde_json::Value> = schema()
                .into_iter()
                .map(|(event, fields)| {
                    serde_json::json!({
                        "event": event,
                        "fields": fields.iter().map(|f| serde_json::json!({
                            "key": f.key, "type": f.ty.name(), "meaning": f.meaning,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            out = serde_json::to_string_pretty(&kinds).expect("plain JSON");
            out.push('\n');
        }
    }
    out.trim_start().to_string()
}
