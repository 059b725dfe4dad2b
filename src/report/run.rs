//! One run directory: the parts its files allow, in page order.

use super::common::{jstr, Part, Prefix};
use super::data::{self, Csv};
use super::gradflow::gradflow_part;
use super::task::task_part;
use super::tracking::tracking_part;
use super::train::{model_text, train_part};
use super::{Block, Section};
use crate::error::Result;
use std::path::Path;

pub(super) fn run_part(dir: &Path, p: &Prefix) -> Result<Part> {
    let mut part = Part::default();
    let metrics = Csv::read(&dir.join("metrics.csv"))?;
    let summary = data::read_json(&dir.join("summary.json"))?;
    if let Some(m) = &metrics {
        if m.has("metric") {
            part.kind = "task".into();
            let s = summary.as_ref();
            part.title = s
                .map(|v| {
                    format!(
                        "Task run: {} on `{}` ({} {})",
                        jstr(v, "label").unwrap_or_default(),
                        jstr(v, "task").unwrap_or_default(),
                        if jstr(v, "task").as_deref() == Some("dependency") {
                            "distance"
                        } else {
                            "length"
                        },
                        jstr(v, "length").unwrap_or_default()
                    )
                })
                .unwrap_or_else(|| "Task run".into());
            task_part(m, s, p, &mut part);
        } else {
            part.kind = "train".into();
            part.title = summary
                .as_ref()
                .and_then(|v| v.get("model"))
                .and_then(model_text)
                .map_or("Training run".into(), |m| format!("Training run: {m}"));
            train_part(m, summary.as_ref(), p, &mut part);
        }
    }
    tracking_part(dir, p, &mut part)?;
    let g = if dir.join("gradflow.json").exists() {
        Some(dir.to_path_buf())
    } else if dir.join("gradflow").join("gradflow.json").exists() {
        Some(dir.join("gradflow"))
    } else {
        None
    };
    if let Some(g) = g {
        if part.kind.is_empty() {
            part.kind = "gradflow".into();
            part.title = "Gradient flow through time".into();
        }
        gradflow_part(&g, p, &mut part)?;
    }
    if let Some(cfg) = data::read_optional(&dir.join("config.toml"))? {
        let mut s = Section::new(p.name("config"), "Configuration");
        s.blocks
            .push(Block::Note("config.toml, as written by the run:".into()));
        s.blocks.push(Block::Pre(cfg.trim_end().to_string()));
        part.sections.push(s);
    }
    Ok(part)
}
