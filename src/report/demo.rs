//! A demo directory (`rnnscope demo`): accuracy and R(l) against distance per cell.

use super::common::{
    distinct_sorted, fig, first_appearance, jstr, num, or_na, pct, reach, sci, seconds, Part,
    Prefix,
};
use super::data::Csv;
use super::plot::{Axis, Figure, HLine, LineChart, Series, MARKERS, PALETTE};
use super::sub_runs::{every_run, overlays, sub_runs};
use super::{Block, Section, Table};
use crate::error::Result;
use std::path::Path;

/// The report of a demo directory: `results.csv` (`cell,distance,accuracy,...`) and one
/// task run per cell and distance.
pub(super) fn demo_report(dir: &Path, results: &Csv) -> Result<Part> {
    let p = Prefix::default();
    let runs = sub_runs(dir, &|name, sum| {
        sum.and_then(|v| jstr(v, "label"))
            .unwrap_or_else(|| name.split('_').next().unwrap_or(name).to_string())
    })?;
    let mut part = Part {
        kind: "demo".into(),
        title: "rnnscope demo: long-distance dependencies and vanishing gradients".into(),
        ..Default::default()
    };
    let cells = results.text("cell");
    let dist = results.num("distance");
    let acc = results.num("accuracy");
    let chance = results.num("chance");
    let ratio = results.num("gradient_ratio");
    let decay = results.num("decay_per_step");
    let updates = results.num("updates");
    let secs = results.num("seconds");
    let mut order = first_appearance(&cells);
    // The LSTM first: it is the blue reference line; the RNN vermillion.
    order.sort_by_key(|c| if c == "lstm" { 0 } else { 1 });
    let cell_name = |c: &str| match c {
        "rnn" => "tanh RNN".to_string(),
        "lstm" => "LSTM".to_string(),
        "gru" => "GRU".to_string(),
        o => o.to_string(),
    };
    let rows_of = |c: &str| -> Vec<usize> { (0..cells.len()).filter(|&i| cells[i] == c).collect() };
    let chance_v = chance.iter().flatten().copied().next();

    let mut s = Section::new("demo", "Accuracy and gradient against distance");
    s.blocks.push(Block::Text(
        "Each model is a language model trained on sentences like `when she tried to print her tickets , ... she finally printed her ___`, and scored on the dependent word; the distance l is the number of steps between the key noun and that word.".into(),
    ));
    let mut a = LineChart::new(
        "Accuracy on the dependent word against distance",
        Axis::linear("distance l between the key noun and the dependent word (time steps)"),
        Axis::linear("accuracy on the dependent word (held-out)").range(0.0, 1.0),
    );
    let mut g = LineChart::new(
        "Gradient reaching back to the key noun",
        Axis::linear("distance l (time steps)"),
        Axis::log("R(l) at l = distance (relative gradient norm)"),
    );
    for (k, c) in order.iter().enumerate() {
        let rows = rows_of(c);
        let col = PALETTE[k % PALETTE.len()];
        let m = MARKERS[k % MARKERS.len()];
        let pts = |v: &[Option<f64>]| -> Vec<(f64, f64)> {
            rows.iter()
                .filter_map(|&i| Some((dist[i]?, v[i]?)))
                .collect()
        };
        a.series
            .push(Series::line_points(cell_name(c), pts(&acc), m).color(col));
        g.series
            .push(Series::line_points(cell_name(c), pts(&ratio), m).color(col));
    }
    if let Some(ch) = chance_v {
        a.hlines.push(HLine {
            name: format!("chance ({})", pct(ch)),
            y: ch,
        });
    }
    s.blocks.push(fig(
        p.name("demo_accuracy"),
        Figure::Line(a),
        "Held-out accuracy on the word that depends on the key noun, per cell and distance. At chance the model has not learned the dependency at all.",
    ));
    s.blocks.push(fig(
        p.name("demo_gradient"),
        Figure::Line(g),
        "R(l) of each trained model at l = the task's distance (log scale), measured on held-out sentences of the task: the norm of a step's loss gradient l steps back, relative to its own step's, averaged over every step of the sentences (for an attentive model, along its attention path). The dependent word's gradient to the key noun is one of these pairs.",
    ));

    let mut table = Table {
        header: [
            "cell",
            "distance l",
            "accuracy",
            "chance",
            "R(l)",
            "decay per step",
            "updates",
            "time",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
    };
    for i in 0..cells.len() {
        table.rows.push(vec![
            cell_name(&cells[i]),
            or_na(dist[i], |x| format!("{x:.0}")),
            or_na(acc[i], pct),
            or_na(chance[i], pct),
            or_na(ratio[i], sci),
            or_na(decay[i], num),
            or_na(updates[i], |x| format!("{x:.0}")),
            or_na(secs[i], seconds),
        ]);
    }
    overlays(&runs, &p, &mut s)?;
    s.blocks.push(Block::Table(table));

    // Headline and reading.
    let ds = distinct_sorted(&dist);
    part.headline.push((
        "distances".into(),
        ds.iter()
            .map(|d| format!("{d:.0}"))
            .collect::<Vec<_>>()
            .join(", "),
    ));
    part.headline
        .push(("runs".into(), format!("{}", cells.len())));
    if let Some(ch) = chance_v {
        part.headline.push(("chance".into(), pct(ch)));
    }
    let total: f64 = secs.iter().flatten().sum();
    part.headline
        .push(("training time (all runs)".into(), seconds(total)));
    for c in &order {
        let rows = rows_of(c);
        let solved: Vec<f64> = rows
            .iter()
            .filter(|&&i| acc[i].is_some_and(|a| a >= 0.99))
            .filter_map(|&i| dist[i])
            .collect();
        let failed: Vec<f64> = rows
            .iter()
            .filter(|&&i| !acc[i].is_some_and(|a| a >= 0.99))
            .filter_map(|&i| dist[i])
            .collect();
        let at_chance: Vec<f64> = rows
            .iter()
            .filter(|&&i| acc[i].zip(chance[i]).is_some_and(|(a, ch)| a < ch + 0.05))
            .filter_map(|&i| dist[i])
            .collect();
        let list = |v: &[f64]| {
            v.iter()
                .map(|d| format!("{d:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        part.headline.push((
            format!("{} solves l =", cell_name(c)),
            if solved.is_empty() {
                "none".into()
            } else {
                list(&solved)
            },
        ));
        let mut text = format!("{} (solved: held-out accuracy >= 99%): ", cell_name(c));
        text += &if failed.is_empty() {
            format!("solved every distance (l = {}).", list(&solved))
        } else if solved.is_empty() {
            format!("solved no distance (l = {}).", list(&failed))
        } else {
            format!("solved l = {}, not l = {}.", list(&solved), list(&failed))
        };
        if !at_chance.is_empty() {
            text += &format!(
                " At l = {} its accuracy is within 5 points of chance: it did not learn the dependency there.",
                list(&at_chance)
            );
        }
        let decays: Vec<f64> = rows.iter().filter_map(|&i| decay[i]).collect();
        if !decays.is_empty() {
            let d = decays.iter().sum::<f64>() / decays.len() as f64;
            text += &format!(
                " Measured on held-out sentences of the task, its gradient {} x{} per step on average",
                if d < 1.0 { "shrinks by" } else { "changes by" },
                num(d)
            );
            text += &match reach(d) {
                Some(l) => format!(
                    "; at that rate it would fall by a factor 1e-3 over about {l:.0} steps (extrapolated)."
                ),
                None => ".".into(),
            };
        }
        part.reading.push(text);
    }
    if let (Some(&far), true) = (ds.last(), order.len() >= 2) {
        let at: Vec<(String, f64)> = order
            .iter()
            .filter_map(|c| {
                let i = rows_of(c).into_iter().find(|&i| dist[i] == Some(far))?;
                Some((cell_name(c), ratio[i]?))
            })
            .collect();
        if at.len() >= 2 {
            let (lo, hi) = (
                at.iter().min_by(|a, b| a.1.total_cmp(&b.1)).expect("two"),
                at.iter().max_by(|a, b| a.1.total_cmp(&b.1)).expect("two"),
            );
            part.reading.push(format!(
                "At the longest distance, l = {far:.0}, the {} keeps R(l) = {} of its gradient that far back and the {} only {}: a gradient {} times weaker, relative to its own step's, at the key noun's distance (averages over the held-out sentences).",
                hi.0,
                sci(hi.1),
                lo.0,
                sci(lo.1),
                sci(hi.1 / lo.1.max(1e-300))
            ));
        }
    }
    part.sections.push(s);

    let mut s = every_run(&runs, "accuracy", |r| &r.label)?;
    if !s.blocks.is_empty() {
        s.blocks.insert(
            0,
            Block::Note("Click a run below for its training curves, gradient profile, influence matrix and spectrum.".into()),
        );
        part.sections.push(s);
    }
    Ok(part)
}
