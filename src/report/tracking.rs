//! Gradient flow tracked during training (`train --track-gradflow`): rho, sigma_1, decay
//! and gradient norm against step, and R(l) at several steps.

use super::common::{fig, num, steps_axis, Part, Prefix};
use super::gradflow::ratio_points;
use super::plot::{viridis, Axis, Figure, HLine, LineChart, Marker, Series, MARKERS, PALETTE};
use super::{Block, Section};
use crate::analysis::output::{self, TrackRow};
use crate::analysis::profile::Horizon;
use crate::analysis::GradflowSnapshot;
use crate::cell::{Activation, CellKind};
use crate::error::Result;
use std::path::Path;

/// At most this many snapshots share the "R(l) during training" plot.
pub(super) const MAX_SNAPSHOTS: usize = 6;

/// The part of `gradflow_track.csv` and `gradflow/step_*.json` in the run directory `dir`
/// (nothing when it has neither).
pub(super) fn tracking_part(dir: &Path, p: &Prefix, part: &mut Part) -> Result<()> {
    let track = output::read_track(&dir.join(output::TRACK_FILE))?;
    let snap_files = output::step_snapshots(dir);
    if track.is_none() && snap_files.is_empty() {
        return Ok(());
    }
    let mut s = Section::new(
        p.name("tracking"),
        "Gradient flow during training (--track-gradflow)",
    );
    // Every tracked snapshot, by step (the cell, the input and the memory horizon).
    let snaps: Vec<(u64, GradflowSnapshot)> = snap_files
        .iter()
        .map(|(step, path)| Ok(output::read_snapshot(path)?.map(|x| (*step, x))))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    let cell = snaps.first().map(|(_, x)| x.summary.cell);
    let activation = snaps.first().map(|(_, x)| x.summary.activation);
    if let Some((_, x)) = snaps.first() {
        s.blocks.push(Block::Text(format!(
            "Each snapshot is measured on the batch trained at that step, from a zero state: {}.",
            x.summary.input.describe()
        )));
    }
    if let Some(t) = &track {
        let layers: Vec<usize> = {
            let mut v: Vec<usize> = t.iter().map(|r| r.layer).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        // `(step, value)` of layer `k` where the value is finite.
        let rows = |k: usize, value: fn(&TrackRow) -> Option<f64>| -> Vec<(f64, f64)> {
            t.iter()
                .filter(|r| r.layer == k)
                .filter_map(|r| Some((r.step as f64, value(r).filter(|v| v.is_finite())?)))
                .collect()
        };
        let suffix = |k: usize| {
            if layers.len() > 1 {
                format!(", layer {k}")
            } else {
                String::new()
            }
        };
        let mut c = LineChart::new(
            "Spectral radius and sigma_1 of W_hh during training",
            steps_axis(),
            Axis::linear("rho, sigma_1 (largest over gate blocks)"),
        );
        for (i, &k) in layers.iter().enumerate() {
            let col = PALETTE[(2 * i) % PALETTE.len()];
            let col2 = PALETTE[(2 * i + 1) % PALETTE.len()];
            c.series.push(
                Series::line_points(
                    format!("rho{}", suffix(k)),
                    rows(k, |r| Some(r.rho)),
                    Marker::Circle,
                )
                .color(col),
            );
            c.series.push(
                Series::line_points(
                    format!("sigma_1{}", suffix(k)),
                    rows(k, |r| Some(r.sigma_1)),
                    Marker::Triangle,
                )
                .color(col2),
            );
        }
        c.hlines.push(HLine {
            name: "1".into(),
            y: 1.0,
        });
        s.blocks.push(fig(
            p.name("track_spectrum"),
            Figure::Line(c),
            match (cell, activation) {
                (Some(CellKind::Rnn), Some(Activation::Identity)) => "Spectral radius rho and largest singular value sigma_1 of the recurrent weight at each tracked step. For this linear RNN (identity activation), rho < 1 makes every gradient component vanish and rho > 1 is necessary for exploding ones (Pascanu et al. 2013).".to_string(),
                (Some(CellKind::Rnn), Some(a)) => format!(
                    "Spectral radius rho and largest singular value sigma_1 of the recurrent weight at each tracked step. For this vanilla RNN ({}, gamma = max|s'| = {}), sigma_1 < 1/gamma = {} guarantees vanishing gradients and sigma_1 > 1/gamma is necessary for exploding ones (Pascanu et al. 2013).",
                    a.name(),
                    a.gamma(),
                    1.0 / a.gamma()
                ),
                (Some(_), _) => "Spectral radius rho and largest singular value sigma_1 of the recurrent weight's gate blocks (the largest over the blocks) at each tracked step. For a gated cell they bound nothing on their own: the gates scale every path through time, and the cell state (LSTM) or the update gate (GRU) carries gradient additively, so only the measured decay below says how the gradient behaves.".to_string(),
                (None, _) => "Spectral radius rho and largest singular value sigma_1 of the recurrent weight (the largest over its gate blocks) at each tracked step.".to_string(),
            },
        ));
        let mut c = LineChart::new(
            "Gradient norm during training",
            steps_axis(),
            Axis::log("gradient norm (L2)"),
        );
        // The gradient norm is the same on every layer's row.
        let norm = layers
            .first()
            .map_or_else(Vec::new, |&k| rows(k, |r| Some(r.grad_norm)));
        c.series
            .push(Series::line_points("gradient norm", norm, Marker::Circle).color(PALETTE[2]));
        s.blocks.push(fig(
            p.name("track_grad_norm"),
            Figure::Line(c),
            "Norm of the full gradient at the tracked steps (log scale).",
        ));
        let mut c = LineChart::new(
            "Measured gradient decay per step during training",
            steps_axis(),
            Axis::linear("decay of R(l) per step (geometric mean)"),
        );
        for &k in &layers {
            c.series.push(Series::line_points(
                format!("decay per step{}", suffix(k)),
                rows(k, |r| r.decay_per_step),
                Marker::Circle,
            ));
        }
        c.hlines.push(HLine {
            name: "1 (no decay)".into(),
            y: 1.0,
        });
        if c.series.iter().any(|s| !s.points.is_empty()) {
            s.blocks.push(fig(
                p.name("track_decay"),
                Figure::Line(c),
                "Per-step factor of the gradient with distance, measured on the training window at each tracked step: below 1 the gradient shrinks geometrically (closer to 1 means longer memory), above 1 it grows.",
            ));
        }
        if let Some(&k) = layers.last() {
            let r = rows(k, |r| Some(r.rho));
            let sg = rows(k, |r| Some(r.sigma_1));
            let d = rows(k, |r| r.decay_per_step);
            if let (Some(a), Some(b)) = (r.first(), r.last()) {
                let mut text = format!(
                    "During training the spectral radius of the top layer's W_hh went from {} (step {:.0}) to {} (step {:.0})",
                    num(a.1),
                    a.0,
                    num(b.1),
                    b.0
                );
                if let (Some(x), Some(y)) = (sg.first(), sg.last()) {
                    text += &format!(" and sigma_1 from {} to {}", num(x.1), num(y.1));
                }
                if let (Some(x), Some(y)) = (d.first(), d.last()) {
                    text += &format!(
                        "; the gradient decay measured on the training batch went from {} to {} per step",
                        num(x.1),
                        num(y.1),
                    );
                }
                if let Some((step, h, steps)) = snaps.last().and_then(|(st, x)| {
                    Some((st, x.summary.memory_horizon.as_ref()?, x.summary.bptt))
                }) {
                    text += &format!(
                        "; at step {step} R(l) fell below 1e-3 at {} on that batch (the memory horizon measured there)",
                        h.describe(steps)
                    );
                }
                text.push('.');
                part.reading.push(text);
            }
        }
    }
    // The memory horizon with its interval over the windows, per tracked step.
    let horizon = |f: fn(&Horizon) -> Option<usize>| -> Vec<(f64, f64)> {
        snaps
            .iter()
            .filter_map(|(st, x)| Some((*st as f64, f(x.summary.memory_horizon.as_ref()?)? as f64)))
            .collect()
    };
    let (mid, low, high) = (
        horizon(|h| h.distance),
        horizon(|h| h.low),
        horizon(|h| h.high),
    );
    if !mid.is_empty() || !high.is_empty() {
        let mut c = LineChart::new(
            "Memory horizon during training",
            steps_axis(),
            Axis::linear("distance l where R(l) < 1e-3 (time steps)"),
        );
        c.series.push(
            Series::line_points("memory horizon (all windows)", mid, Marker::Circle)
                .color(PALETTE[0]),
        );
        c.series.push(
            Series::line_points("95% interval, low", low, Marker::Triangle).color(PALETTE[1]),
        );
        c.series.push(
            Series::line_points("95% interval, high", high, Marker::Triangle).color(PALETTE[1]),
        );
        s.blocks.push(fig(
            p.name("track_horizon"),
            Figure::Line(c),
            "The distance at which R(l) of the top layer first falls below 1e-3, measured on the training batch at each tracked step, with its 95% bootstrap interval over the batch's windows; missing points lie beyond the window length.",
        ));
    }
    if !snap_files.is_empty() {
        let n = snap_files.len();
        let pick: Vec<usize> = if n <= MAX_SNAPSHOTS {
            (0..n).collect()
        } else {
            let mut v: Vec<usize> = (0..MAX_SNAPSHOTS)
                .map(|k| k * (n - 1) / (MAX_SNAPSHOTS - 1))
                .collect();
            v.dedup();
            v
        };
        let mut c = LineChart::new(
            "Gradient profile R(l) at several training steps",
            Axis::linear("distance l = i - j (time steps)"),
            Axis::log("R(l) = P(l) / P(0)"),
        );
        for (i, &k) in pick.iter().enumerate() {
            let (step, path) = &snap_files[k];
            let Some(snap) = output::read_snapshot(path)? else {
                continue;
            };
            if let Some(pr) = snap.profiles.last() {
                let pts = ratio_points(&pr.hidden);
                // Ordered in time: a sequential colour scale (dark = early, light = late).
                let t = if pick.len() > 1 {
                    0.85 * i as f64 / (pick.len() - 1) as f64
                } else {
                    0.0
                };
                c.series.push(
                    Series::line_points(format!("step {step}"), pts, MARKERS[i % MARKERS.len()])
                        .color(viridis(t)),
                );
            }
        }
        if !c.series.is_empty() {
            for sr in &mut c.series {
                // Markers only where they stay legible.
                if sr.points.len() > 40 {
                    sr.marker = None;
                }
            }
            s.blocks.push(fig(
                p.name("track_profiles"),
                Figure::Line(c),
                "R(l) of the top layer measured on the training window at several steps: how training changes the reach of the gradient.",
            ));
        }
    }
    part.sections.push(s);
    Ok(())
}
