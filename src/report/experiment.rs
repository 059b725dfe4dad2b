//! An experiment directory (`rnnscope experiment`): success rate, metric and decay against
//! length per model.

use super::common::{
    baseline_name, criterion, distinct_sorted, fig, first_appearance, jstr, metric_axis, num,
    or_na, pct, reach, seconds, Part, Prefix,
};
use super::data::Csv;
use super::plot::{Axis, Figure, HLine, LineChart, Series, MARKERS, PALETTE};
use super::sub_runs::{every_run, overlays, sub_runs};
use super::{Block, Section, Table};
use crate::error::Result;
use std::path::Path;

/// The report of an experiment directory: `results.csv` (`model,length,runs,...`),
/// `runs.csv` and one task run per model, length and seed.
pub(super) fn experiment_report(dir: &Path, results: &Csv) -> Result<Part> {
    let p = Prefix::default();
    let runs_csv = Csv::read(&dir.join("runs.csv"))?;
    let runs = sub_runs(dir, &|name, _| {
        name.rsplit_once("_T")
            .map_or(name.to_string(), |(m, _)| m.to_string())
    })?;
    let first = runs.iter().find_map(|r| r.summary.clone());
    let task = first
        .as_ref()
        .and_then(|v| jstr(v, "task"))
        .unwrap_or_default();
    let metric_name = runs_csv
        .as_ref()
        .and_then(|c| c.text("metric_name").into_iter().next())
        .or_else(|| first.as_ref().and_then(|v| jstr(v, "metric_name")))
        .unwrap_or_else(|| "metric".into());
    let baseline = runs_csv
        .as_ref()
        .and_then(|c| c.num("baseline").into_iter().flatten().next());
    let mut part = Part {
        kind: "experiment".into(),
        title: if task.is_empty() {
            "rnnscope experiment".into()
        } else {
            format!("rnnscope experiment: the {task} task")
        },
        ..Default::default()
    };
    let length_axis = || {
        Axis::linear(if task == "dependency" {
            "dependency distance l (time steps)"
        } else {
            "sequence length T (time steps)"
        })
    };
    let models = results.text("model");
    let order = first_appearance(&models);
    let len = results.num("length");
    let rate = results.num("success_rate");
    let mean = results.num("mean_metric");
    let decay = results.num("mean_decay_per_step");
    let n_runs = results.num("runs");
    let solved = results.num("solved");
    let mut sr = LineChart::new(
        "Success rate against length",
        length_axis(),
        Axis::linear("runs solved (fraction)").range(0.0, 1.0),
    );
    let mut mm = LineChart::new(
        format!("Mean {metric_name} against length"),
        length_axis(),
        metric_axis(&metric_name),
    );
    let mut dc = LineChart::new(
        "Measured gradient decay against length",
        length_axis(),
        Axis::linear("decay of R(l) per step (mean over runs)"),
    );
    for (k, m) in order.iter().enumerate() {
        let col = PALETTE[k % PALETTE.len()];
        let mk = MARKERS[k % MARKERS.len()];
        let pts = |v: &[Option<f64>]| -> Vec<(f64, f64)> {
            (0..models.len())
                .filter(|&i| &models[i] == m)
                .filter_map(|i| Some((len[i]?, v[i]?)))
                .collect()
        };
        sr.series
            .push(Series::line_points(m, pts(&rate), mk).color(col));
        mm.series
            .push(Series::line_points(m, pts(&mean), mk).color(col));
        dc.series
            .push(Series::line_points(m, pts(&decay), mk).color(col));
    }
    if let Some(b) = baseline {
        mm.hlines.push(HLine {
            name: baseline_name(&metric_name, b),
            y: b,
        });
    }
    mm.hlines.push(criterion(&metric_name));
    dc.hlines.push(HLine {
        name: "1 (no decay)".into(),
        y: 1.0,
    });
    let mut s = Section::new("results", "Results against length");
    s.blocks.push(fig(
        p.name("experiment_success"),
        Figure::Line(sr),
        "Fraction of runs (seeds) that met the task's success criterion, per model and length.",
    ));
    s.blocks.push(fig(
        p.name("experiment_metric"),
        Figure::Line(mm),
        format!("Mean held-out {metric_name} over the runs, with the baseline a model reaches without the long-range dependency and the success criterion."),
    ));
    if dc.series.iter().any(|s| !s.points.is_empty()) {
        s.blocks.push(fig(
            p.name("experiment_decay"),
            Figure::Line(dc),
            "Per-step factor of the gradient with distance, measured on held-out sequences of the task with each trained model (mean over runs): below 1 the gradient shrinks geometrically with distance, 1 means no decay was measured over the sequence.",
        ));
    }
    let mut table = Table {
        header: [
            "model",
            "length",
            "runs",
            "solved",
            "success rate",
            "mean metric",
            "decay per step",
            "time per run",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
    };
    let secs = results.num("mean_seconds");
    for i in 0..models.len() {
        let count = |x: f64| format!("{x:.0}");
        table.rows.push(vec![
            models[i].clone(),
            or_na(len[i], count),
            or_na(n_runs[i], count),
            or_na(solved[i], count),
            or_na(rate[i], pct),
            or_na(mean[i], num),
            or_na(decay[i], num),
            or_na(secs[i], seconds),
        ]);
    }
    overlays(&runs, &p, &mut s)?;
    s.blocks.push(Block::Table(table));
    part.sections.push(s);

    // Headline and reading.
    if !task.is_empty() {
        part.headline.push(("task".into(), task.clone()));
    }
    part.headline.push(("models".into(), order.join(", ")));
    let ls: Vec<String> = distinct_sorted(&len)
        .iter()
        .map(|x| format!("{x:.0}"))
        .collect();
    part.headline.push(("lengths".into(), ls.join(", ")));
    let total_runs: f64 = n_runs.iter().flatten().sum();
    let total_solved: f64 = solved.iter().flatten().sum();
    part.headline.push((
        "runs solved".into(),
        format!("{total_solved:.0} of {total_runs:.0}"),
    ));
    for m in &order {
        let idx: Vec<usize> = (0..models.len()).filter(|&i| &models[i] == m).collect();
        let per_len: Vec<String> = idx
            .iter()
            .filter_map(|&i| {
                Some(format!(
                    "{}/{} at length {:.0}",
                    solved[i]? as u64, n_runs[i]? as u64, len[i]?
                ))
            })
            .collect();
        let mut text = format!("{m}: solved {}", per_len.join(", "));
        let ds: Vec<f64> = idx.iter().filter_map(|&i| decay[i]).collect();
        if !ds.is_empty() {
            let d = ds.iter().sum::<f64>() / ds.len() as f64;
            text += &format!(
                "; measured on held-out sequences of the task, its gradient {} x{} per step",
                if d < 1.0 { "shrinks by" } else { "changes by" },
                num(d)
            );
            if let Some(l) = reach(d) {
                let longest = idx.iter().filter_map(|&i| len[i]).fold(0.0f64, f64::max);
                text += &format!(
                    "; at that rate it would fall by a factor 1e-3 over about {l:.0} steps (extrapolated){}",
                    if l < longest {
                        format!(", fewer than the longest length here, {longest:.0}")
                    } else {
                        String::new()
                    }
                );
            }
        }
        text.push('.');
        part.reading.push(text);
    }

    let s = every_run(&runs, &metric_name, |r| &r.name)?;
    if !s.blocks.is_empty() {
        part.sections.push(s);
    }
    Ok(part)
}
