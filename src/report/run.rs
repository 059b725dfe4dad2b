//! One run directory: the parts its files allow, in page order.

use super::common::{Part, Prefix};
use super::data::{self, Csv};
use super::gradflow::gradflow_part;
use super::task::task_part;
use super::tracking::tracking_part;
use super::train::train_part;
use super::{Block, Section};
use crate::analysis::output;
use crate::error::Result;
use std::path::Path;

/// Everything the files of the run directory `dir` allow: training or task curves, gradient
/// flow tracked during training, the gradient-flow analysis, the configuration.
pub(super) fn run_part(dir: &Path, p: &Prefix) -> Result<Part> {
    let mut part = Part::default();
    let metrics = Csv::read(&dir.join("metrics.csv"))?;
    let summary = data::read_json(&dir.join("summary.json"))?;
    match &metrics {
        Some(m) if m.has("metric") => task_part(m, summary.as_ref(), p, &mut part),
        Some(m) => train_part(m, summary.as_ref(), clip_of(dir)?, p, &mut part),
        None => {}
    }
    tracking_part(dir, p, &mut part)?;
    // A gradient-flow directory itself, or a run's analysis in `gradflow/`.
    let g = [dir.to_path_buf(), dir.join("gradflow")]
        .into_iter()
        .find(|g| g.join(output::SNAPSHOT_FILE).exists());
    if let Some(g) = g {
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

/// The gradient-norm clipping threshold `clip` of the run's `config.toml`, if it says.
fn clip_of(dir: &Path) -> Result<Option<f64>> {
    let Some(text) = data::read_optional(&dir.join("config.toml"))? else {
        return Ok(None);
    };
    Ok(toml::from_str::<toml::Table>(&text)
        .ok()
        .and_then(|t| t.get("clip").and_then(|v| v.as_float())))
}
