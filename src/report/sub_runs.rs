//! The runs inside a demo or experiment directory: how they are found, labelled, overlaid
//! in one plot and folded into closed `<details>` blocks.

use super::common::{
    baseline_name, capitalise, fig, jnum, jstr, metric_axis, metric_value, Prefix,
};
use super::data::{self, Csv};
use super::plot::{Axis, Figure, HLine, LineChart, Marker, Series, MARKERS, PALETTE};
use super::run::run_part;
use super::{Block, Section};
use crate::analysis::output;
use crate::error::Result;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// At most this many runs share one overlay plot.
const MAX_OVERLAY: usize = 16;

/// The "Every run" section: each run folded into a closed block titled `label_of(run)` and
/// its final `metric_name` (empty when no run has files to show).
pub(super) fn every_run(
    runs: &[SubRun],
    metric_name: &str,
    label_of: fn(&SubRun) -> &str,
) -> Result<Section> {
    let mut s = Section::new("runs", "Every run");
    for r in runs {
        let status = r
            .summary
            .as_ref()
            .and_then(|v| {
                let m = jnum(v, "metric")?;
                Some(format!(
                    "{metric_name} {}{}",
                    metric_value(metric_name, m),
                    if v.get("solved").and_then(Value::as_bool) == Some(true) {
                        ", solved"
                    } else {
                        ""
                    }
                ))
            })
            .unwrap_or_default();
        if let Some(d) = run_details(&r.dir, label_of(r), &status)? {
            s.blocks.push(Block::Sub(d));
        }
    }
    Ok(s)
}

/// A run directory's sections folded into one closed `<details>` block.
fn run_details(dir: &Path, label: &str, status: &str) -> Result<Option<Section>> {
    let name = dir
        .file_name()
        .map_or("run".into(), |n| n.to_string_lossy().to_string());
    let p = Prefix(format!("{}-", super::file_stem(&name)));
    let part = run_part(dir, &p)?;
    if part.sections.is_empty() {
        return Ok(None);
    }
    let mut s = Section::new(
        p.name("run"),
        format!(
            "{name}: {label}{}",
            if status.is_empty() {
                String::new()
            } else {
                format!(" ({status})")
            }
        ),
    );
    s.collapsed = true;
    if !part.reading.is_empty() {
        s.blocks.push(Block::Reading(part.reading));
    }
    if !part.headline.is_empty() {
        s.blocks.push(Block::Facts(part.headline));
    }
    for sub in part.sections {
        s.blocks.push(Block::Sub(sub));
    }
    Ok(Some(s))
}

/// Sub-directories that hold a run.
fn run_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(data::subdirs(dir)?
        .into_iter()
        .filter(|d| {
            d.join("metrics.csv").exists()
                || d.join("summary.json").exists()
                || d.join(output::SNAPSHOT_FILE).exists()
        })
        .collect())
}

/// One run of a demo or experiment: where it is and how to label and group it (the label is
/// the group, the demo's cell or the experiment's model name, and the run's length).
pub(super) struct SubRun {
    pub(super) dir: PathBuf,
    pub(super) name: String,
    pub(super) group: String,
    pub(super) label: String,
    pub(super) summary: Option<Value>,
}

pub(super) fn sub_runs(
    dir: &Path,
    group_of: &dyn Fn(&str, Option<&Value>) -> String,
) -> Result<Vec<SubRun>> {
    let mut out = Vec::new();
    for d in run_dirs(dir)? {
        let name = d
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().to_string());
        let summary = data::read_json(&d.join("summary.json"))?;
        let group = group_of(&name, summary.as_ref());
        let label = summary
            .as_ref()
            .map(|v| {
                let what = if jstr(v, "task").as_deref() == Some("dependency") {
                    "l"
                } else {
                    "T"
                };
                format!(
                    "{group}, {what} = {}",
                    jstr(v, "length").unwrap_or_default()
                )
            })
            .unwrap_or_else(|| name.clone());
        out.push(SubRun {
            dir: d,
            name,
            group,
            label,
            summary,
        });
    }
    Ok(out)
}

/// Colour by group (in order of appearance), marker shape by position within the group.
fn grouped_styles(runs: &[&SubRun]) -> Vec<((u8, u8, u8), Marker)> {
    let mut groups: Vec<&str> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    runs.iter()
        .map(|r| {
            let g = match groups.iter().position(|g| *g == r.group) {
                Some(g) => g,
                None => {
                    groups.push(&r.group);
                    counts.push(0);
                    groups.len() - 1
                }
            };
            let m = counts[g];
            counts[g] += 1;
            (PALETTE[g % PALETTE.len()], MARKERS[m % MARKERS.len()])
        })
        .collect()
}

/// Every run's top-layer `R(l)` in one plot, and every run's metric against step.
pub(super) fn overlays(runs: &[SubRun], p: &Prefix, s: &mut Section) -> Result<()> {
    let shown: Vec<&SubRun> = runs.iter().take(MAX_OVERLAY).collect();
    let styles = grouped_styles(&shown);
    let mut c = LineChart::new(
        "Gradient profile R(l) of every run",
        Axis::linear("distance l = i - j (time steps)"),
        Axis::log("R(l) = P(l) / P(0)  (relative gradient norm)"),
    );
    for (r, (col, m)) in shown.iter().zip(&styles) {
        if let Some(rows) = output::read_top_profile(&r.dir.join("gradflow"))? {
            let pts: Vec<(f64, f64)> = rows
                .iter()
                .filter_map(|p| Some((p.distance as f64, p.ratio?)))
                .collect();
            let mut sr = Series::line_points(&r.label, pts, *m).color(*col);
            if sr.points.len() > 60 {
                sr.marker = None;
            }
            c.series.push(sr);
        }
    }
    if !c.series.is_empty() {
        s.blocks.push(fig(
            p.name("profiles"),
            Figure::Line(c),
            "Each trained model's R(l), measured on held-out sequences (top layer, log scale): colour is the model, marker shape the run. A steep line is a model whose gradient shrinks fast with distance.",
        ));
    }
    let mut c: Option<LineChart> = None;
    for (r, (col, m)) in shown.iter().zip(&styles) {
        let Some(csv) = Csv::read(&r.dir.join("metrics.csv"))? else {
            continue;
        };
        if !csv.has("metric") {
            continue;
        }
        let name = r
            .summary
            .as_ref()
            .and_then(|v| jstr(v, "metric_name"))
            .unwrap_or_else(|| "metric".into());
        let chart = c.get_or_insert_with(|| {
            let mut ch = LineChart::new(
                format!("{} against training step, every run", capitalise(&name)),
                Axis::linear("training step (updates)"),
                metric_axis(&name),
            );
            if let Some(b) = r.summary.as_ref().and_then(|v| jnum(v, "baseline")) {
                ch.hlines.push(HLine {
                    name: baseline_name(&name, b),
                    y: b,
                });
            }
            ch
        });
        chart
            .series
            .push(Series::line_points(&r.label, csv.pairs("step", "metric"), *m).color(*col));
    }
    if let Some(c) = c {
        s.blocks.push(fig(
            p.name("training_runs"),
            Figure::Line(c),
            "The held-out metric at each evaluation, one line per run (runs stop early once solved).",
        ));
    }
    if runs.len() > MAX_OVERLAY {
        s.blocks.push(Block::Note(format!(
            "The first {MAX_OVERLAY} of {} runs are drawn.",
            runs.len()
        )));
    }
    Ok(())
}
