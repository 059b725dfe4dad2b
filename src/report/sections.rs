//! What goes into a report: for each kind of directory, the headline numbers, the plots its
//! files allow and a plain-language reading of them.

use super::data::{self, Csv};
use super::plot::{
    downsample, viridis, Axis, CircleGuide, ComplexPlane, Figure, Guide, HLine, HeatMap, LineChart,
    Marker, PointGroup, Series, GUIDE, MARKERS, PALETTE,
};
use super::{Block, Fig, Report, Section, Table};
use crate::analysis::GradflowSnapshot;
use crate::error::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// Longest line series drawn (longer ones are averaged in buckets).
const MAX_POINTS: usize = 1500;
/// At most this many runs share one overlay plot.
const MAX_OVERLAY: usize = 16;
/// At most this many snapshots share the "R(l) during training" plot.
const MAX_SNAPSHOTS: usize = 6;

/// A part of a report: what one directory contributes.
#[derive(Default)]
struct Part {
    kind: String,
    title: String,
    headline: Vec<(String, String)>,
    reading: Vec<String>,
    sections: Vec<Section>,
}

/// Prefix of figure names and section ids (empty for the top-level run).
#[derive(Clone)]
struct Prefix(String);

impl Prefix {
    fn name(&self, n: &str) -> String {
        format!("{}{n}", self.0)
    }
}

/// `4.3e-7`.
fn sci(v: f64) -> String {
    format!("{v:.1e}")
}

/// Four significant digits, scientific outside `[1e-3, 1e6)`.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        return sci(v);
    }
    let decimals = if a >= 1000.0 {
        0
    } else if a >= 100.0 {
        1
    } else if a >= 10.0 {
        2
    } else if a >= 1.0 {
        3
    } else {
        4
    };
    format!("{v:.decimals$}")
}

fn pct(v: f64) -> String {
    format!("{:.1}%", 100.0 * v)
}

fn seconds(s: f64) -> String {
    if s >= 120.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.1} s")
    }
}

fn jnum(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64).filter(|x| x.is_finite())
}

fn jstr(v: &Value, key: &str) -> Option<String> {
    v.get(key).map(|x| match x {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// The distance at which `decay^l` falls to `1e-3` (for `0 < decay < 1`).
fn reach(decay: f64) -> Option<f64> {
    (decay > 0.0 && decay < 1.0).then(|| (1e-3f64).ln() / decay.ln())
}

fn fig(name: String, figure: Figure, caption: impl Into<String>) -> Block {
    Block::Figure(Fig {
        name,
        figure,
        caption: caption.into(),
    })
}

// ---------------------------------------------------------------- training runs

fn model_text(m: &Value) -> Option<String> {
    let cell = jstr(m, "cell")?;
    let act = jstr(m, "activation").unwrap_or_default();
    let cell = if cell == "rnn" {
        format!("rnn ({act})")
    } else {
        cell
    };
    Some(format!(
        "{cell}, {} x {}, embedding {}",
        jstr(m, "layers").unwrap_or_default(),
        jstr(m, "hidden").unwrap_or_default(),
        jstr(m, "embedding").unwrap_or_default()
    ))
}

fn train_part(m: &Csv, summary: Option<&Value>, p: &Prefix, part: &mut Part) {
    let mut s = Section::new(p.name("training"), "Training");
    let train = m.pairs("step", "train_loss");
    let valid = m.pairs("step", "valid_loss");
    let per = train.len().div_ceil(MAX_POINTS);
    let train_name = if per > 1 {
        format!("train (mean of {per} updates)")
    } else {
        "train (each update)".to_string()
    };
    let steps_axis = || Axis::linear("training step (updates)");
    if !train.is_empty() || !valid.is_empty() {
        let mut c = LineChart::new(
            "Loss against training step",
            steps_axis(),
            Axis::linear("loss (nats per token)"),
        );
        c.series
            .push(Series::line(&train_name, downsample(&train, MAX_POINTS)).color(PALETTE[0]));
        if !valid.is_empty() {
            c.series.push(
                Series::line_points("validation", valid.clone(), Marker::Circle).color(PALETTE[1]),
            );
        }
        s.blocks.push(fig(
            p.name("loss"),
            Figure::Line(c.clone()),
            "Cross-entropy loss per token of the training windows and, at each evaluation, of the validation text.",
        ));
        let exp = |v: &[(f64, f64)]| -> Vec<(f64, f64)> {
            v.iter().map(|&(x, y)| (x, y.exp())).collect()
        };
        let mut q = LineChart::new(
            "Perplexity against training step",
            steps_axis(),
            Axis::log("perplexity (exp of the loss)"),
        );
        q.series.push(
            Series::line(&train_name, downsample(&exp(&train), MAX_POINTS)).color(PALETTE[0]),
        );
        if !valid.is_empty() {
            q.series.push(
                Series::line_points("validation", exp(&valid), Marker::Circle).color(PALETTE[1]),
            );
        }
        s.blocks.push(fig(
            p.name("perplexity"),
            Figure::Line(q),
            "Perplexity = exp(loss): the effective number of equally likely next tokens (log scale).",
        ));
    }
    let norm = m.pairs("step", "grad_norm");
    if !norm.is_empty() {
        let mut c = LineChart::new(
            "Gradient norm against training step",
            steps_axis(),
            Axis::log("gradient norm (L2, before clipping)"),
        );
        c.series.push(
            Series::line(
                if per > 1 {
                    format!("mean of {per} updates")
                } else {
                    "each update".into()
                },
                downsample(&norm, MAX_POINTS),
            )
            .color(PALETTE[2]),
        );
        s.blocks.push(fig(
            p.name("grad_norm"),
            Figure::Line(c),
            "L2 norm of the gradient of all parameters at each update (log scale). Spikes are exploding gradients; clipping bounds the step they cause.",
        ));
    }
    let lr = m.pairs("step", "lr");
    if lr.windows(2).any(|w| w[0].1 != w[1].1) {
        let mut c = LineChart::new(
            "Learning rate against training step",
            steps_axis(),
            Axis::log("learning rate"),
        );
        c.series
            .push(Series::line("learning rate", downsample(&lr, MAX_POINTS)).color(PALETTE[3]));
        s.blocks.push(fig(
            p.name("lr"),
            Figure::Line(c),
            "The learning rate the schedule set at each update.",
        ));
    }

    // Headline and reading.
    if let Some(sm) = summary {
        let mut h = Vec::new();
        if let Some(m) = sm.get("model").and_then(model_text) {
            h.push(("model".into(), m));
        }
        if let (Some(st), Some(total)) = (jnum(sm, "step"), jnum(sm, "steps")) {
            h.push((
                "updates".into(),
                format!(
                    "{st:.0} of {total:.0} ({})",
                    jstr(sm, "status").unwrap_or_default()
                ),
            ));
        }
        if let Some(b) = jnum(sm, "best_valid_loss") {
            h.push((
                "best validation loss".into(),
                format!(
                    "{b:.4} nats/token (update {})",
                    jnum(sm, "best_step").map_or("?".into(), |s| format!("{s:.0}"))
                ),
            ));
            h.push(("best validation perplexity".into(), num(b.exp())));
            h.push((
                "bits per token".into(),
                format!("{:.4}", b / std::f64::consts::LN_2),
            ));
        }
        if let Some(t) = jnum(sm, "test_loss") {
            h.push((
                "test loss".into(),
                format!("{t:.4} (perplexity {})", num(t.exp())),
            ));
        }
        if let Some(t) = jnum(sm, "tokens_per_s") {
            h.push(("throughput".into(), format!("{t:.0} tokens/s")));
        }
        if let Some(t) = jnum(sm, "seconds") {
            h.push(("training time".into(), seconds(t)));
        }
        if let Some(t) = jnum(sm, "params") {
            h.push(("parameters".into(), format!("{t:.0}")));
        }
        part.headline.extend(h);
    }
    if train.len() >= 2 {
        let k = (train.len() / 20).max(1);
        let mean = |v: &[(f64, f64)]| v.iter().map(|p| p.1).sum::<f64>() / v.len() as f64;
        let (a, b) = (mean(&train[..k]), mean(&train[train.len() - k..]));
        part.reading.push(format!(
            "The training loss {} from {a:.3} to {b:.3} nats per token over {} updates{}.",
            if b < a { "fell" } else { "rose" },
            train.last().map_or(0.0, |p| p.0),
            if k > 1 {
                format!(" (means of the first and last {k} updates)")
            } else {
                String::new()
            }
        ));
    }
    if let Some((&best, &last)) = valid
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .zip(valid.last())
    {
        part.reading.push(format!(
            "The best validation loss is {:.4} nats per token (perplexity {}, {:.3} bits per token) at update {:.0}.",
            best.1,
            num(best.1.exp()),
            best.1 / std::f64::consts::LN_2,
            best.0
        ));
        if last.0 > best.0 && last.1 > best.1 * 1.03 {
            part.reading.push(format!(
                "Since then the validation loss has risen {:.0}% (to {:.4} at update {:.0}) while training continued: the model is overfitting; more dropout, a smaller model or stopping near update {:.0} would help.",
                100.0 * (last.1 / best.1 - 1.0),
                last.1,
                last.0,
                best.0
            ));
        }
    }
    let bad = m.non_finite("train_loss");
    if bad > 0 {
        part.reading.push(format!(
            "{bad} updates had a non-finite loss or gradient and were skipped (gaps in the curves): lower the learning rate or clip gradients."
        ));
    }
    part.sections.push(s);
}

// ---------------------------------------------------------------- task runs

fn is_mse(metric_name: &str) -> bool {
    metric_name.to_ascii_lowercase().contains("mse")
}

fn metric_axis(metric_name: &str) -> Axis {
    if is_mse(metric_name) {
        Axis::log(format!("{metric_name} (log scale)"))
    } else {
        Axis::linear(format!("{metric_name} (held-out test set)")).range(0.0, 1.0)
    }
}

fn baseline_name(metric_name: &str, b: f64) -> String {
    if is_mse(metric_name) {
        format!("baseline {} (predict the mean)", num(b))
    } else {
        format!("chance ({})", pct(b))
    }
}

fn criterion(metric_name: &str) -> HLine {
    if is_mse(metric_name) {
        HLine {
            name: "solved: MSE < 0.01".into(),
            y: 0.01,
        }
    } else {
        HLine {
            name: "solved: accuracy >= 99%".into(),
            y: 0.99,
        }
    }
}

fn task_part(m: &Csv, summary: Option<&Value>, p: &Prefix, part: &mut Part) {
    let mut s = Section::new(p.name("task"), "Training on the task");
    let metric_name = summary
        .and_then(|v| jstr(v, "metric_name"))
        .unwrap_or_else(|| "metric".into());
    let baseline = summary.and_then(|v| jnum(v, "baseline"));
    let metric = m.pairs("step", "metric");
    let steps_axis = || Axis::linear("training step (updates)");
    if !metric.is_empty() {
        let mut c = LineChart::new(
            format!("{} against training step", capitalise(&metric_name)),
            steps_axis(),
            metric_axis(&metric_name),
        );
        c.series.push(
            Series::line_points(&metric_name, metric.clone(), Marker::Circle).color(PALETTE[0]),
        );
        if let Some(b) = baseline {
            c.hlines.push(HLine {
                name: baseline_name(&metric_name, b),
                y: b,
            });
        }
        c.hlines.push(criterion(&metric_name));
        s.blocks.push(fig(
            p.name("metric"),
            Figure::Line(c),
            format!("{metric_name} on the held-out test sequences at each evaluation, with the level a model reaches without learning the long-range dependency and the success criterion."),
        ));
    }
    let train = m.pairs("step", "train_loss");
    let test = m.pairs("step", "valid_loss");
    if !train.is_empty() || !test.is_empty() {
        let y = if is_mse(&metric_name) {
            Axis::log("loss (mean squared error)")
        } else {
            Axis::linear("loss (nats per scored token)")
        };
        let mut c = LineChart::new("Loss against training step", steps_axis(), y);
        c.series.push(
            Series::line_points(
                "train (mean since the last evaluation)",
                train,
                Marker::Circle,
            )
            .color(PALETTE[0]),
        );
        c.series
            .push(Series::line_points("test", test, Marker::Triangle).color(PALETTE[1]));
        s.blocks.push(fig(
            p.name("task_loss"),
            Figure::Line(c),
            "Task loss on the training sequences (averaged between evaluations) and on the held-out test set.",
        ));
    }
    if let Some(v) = summary {
        let task = jstr(v, "task").unwrap_or_default();
        let length = jnum(v, "length").unwrap_or(f64::NAN);
        let label = jstr(v, "label").unwrap_or_default();
        let final_metric = jnum(v, "metric");
        let solved = v.get("solved").and_then(Value::as_bool);
        let fmt_metric = |x: f64| {
            if is_mse(&metric_name) {
                num(x)
            } else {
                pct(x)
            }
        };
        part.headline.push((
            "task".into(),
            format!(
                "{task}, {} {length:.0}",
                if task == "dependency" {
                    "distance"
                } else {
                    "length"
                }
            ),
        ));
        part.headline.push(("model".into(), label.clone()));
        if let Some(x) = final_metric {
            part.headline.push((metric_name.clone(), fmt_metric(x)));
        }
        if let Some(x) = jnum(v, "best_metric") {
            part.headline
                .push((format!("best {metric_name}"), fmt_metric(x)));
        }
        if let Some(b) = baseline {
            part.headline.push((
                if is_mse(&metric_name) {
                    "baseline".into()
                } else {
                    "chance".into()
                },
                fmt_metric(b),
            ));
        }
        if let Some(sv) = solved {
            part.headline
                .push(("solved".into(), if sv { "yes" } else { "no" }.into()));
        }
        if let Some(u) = jnum(v, "updates") {
            part.headline.push(("updates".into(), format!("{u:.0}")));
        }
        if let Some(t) = jnum(v, "seconds") {
            part.headline.push(("training time".into(), seconds(t)));
        }
        if let (Some(x), Some(sv)) = (final_metric, solved) {
            let vs = baseline.map_or(String::new(), |b| {
                format!(
                    " ({} {})",
                    if is_mse(&metric_name) {
                        "baseline"
                    } else {
                        "chance"
                    },
                    fmt_metric(b)
                )
            });
            let near_chance = baseline.is_some_and(|b| {
                if is_mse(&metric_name) {
                    x > 0.8 * b
                } else {
                    x < b + 0.05
                }
            });
            part.reading.push(format!(
                "{label} {} the {task} task at {} {length:.0}: {metric_name} {}{vs} after {} updates{}.",
                if sv { "solved" } else { "did not solve" },
                if task == "dependency" { "distance" } else { "length" },
                fmt_metric(x),
                jnum(v, "updates").map_or("?".into(), |u| format!("{u:.0}")),
                if !sv && near_chance {
                    ": no better than a model that ignores the long-range dependency"
                } else {
                    ""
                }
            ));
        }
    }
    part.sections.push(s);
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

// ---------------------------------------------------------------- gradient flow

fn gate_title(gate: &str) -> String {
    match gate {
        "hh" => "W_hh".into(),
        "i" => "W_hi (input gate)".into(),
        "f" => "W_hf (forget gate)".into(),
        "g" => "W_hg (cell candidate)".into(),
        "o" => "W_ho (output gate)".into(),
        "r" => "W_hr (reset gate)".into(),
        "z" => "W_hz (update gate)".into(),
        "n" => "W_hn (candidate)".into(),
        other => format!("W_h{other}"),
    }
}

/// `(l, R(l))` of a profile CSV.
fn ratio_profile(path: &Path) -> Result<Option<Vec<(f64, f64)>>> {
    Ok(Csv::read(path)?.map(|c| c.pairs("distance", "ratio")))
}

/// Plain-language reading of a measured profile `R(l)`.
fn profile_reading(who: &str, ratio: &[(f64, f64)], decay: Option<f64>) -> Option<String> {
    let &(lmax, rlast) = ratio.last()?;
    if ratio.len() < 2 {
        return None;
    }
    let peak = ratio.iter().map(|p| p.1).fold(0.0f64, f64::max);
    if peak > 10.0 {
        let (l, r) = ratio
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((lmax, rlast));
        return Some(format!(
            "{who}: the gradient grows with distance, to {} times its size at l = 0 by l = {l:.0}: it explodes over long distances; clip it (--clip) or lower the spectral radius of W_hh.",
            sci(r)
        ));
    }
    let per = decay.map_or(String::new(), |d| format!(" (x{d:.3} per step)"));
    match ratio.iter().find(|p| p.1 < 1e-3) {
        Some(&(l3, _)) => Some(format!(
            "{who}: the gradient falls by a factor of {} over {lmax:.0} steps{per}; it is below 1e-3 of its size from l = {l3:.0} on, so this model cannot learn dependencies longer than about {l3:.0} steps from its gradient.",
            sci(1.0 / rlast.max(1e-300))
        )),
        None => Some(format!(
            "{who}: the gradient keeps {} of its size over {lmax:.0} steps{per}: the gradient signal reaches across the whole window, so dependencies that long are learnable as far as the gradient is concerned.",
            sci(rlast)
        )),
    }
}

fn gradflow_part(g: &Path, p: &Prefix, part: &mut Part) -> Result<()> {
    let Some(snap) = data::read_snapshot(&g.join("gradflow.json"))? else {
        return Ok(());
    };
    let sm = &snap.summary;
    let cell = serde_json::to_value(sm.cell)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let act = serde_json::to_value(sm.activation)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let is_rnn = cell == "rnn";
    let model = if is_rnn {
        format!("rnn ({act})")
    } else {
        cell.clone()
    };
    if part.kind == "gradflow" {
        part.title = format!(
            "Gradient flow through time: {model}, H = {}, {} layer{}",
            sm.hidden,
            sm.layers,
            if sm.layers == 1 { "" } else { "s" }
        );
    }
    let mut s = Section::new(p.name("gradflow"), "Gradient flow through time");
    s.blocks.push(Block::Text(format!(
        "Measured on one window of T = {} steps and B = {} sequences: the loss J^(i) at each step i is back-propagated alone, and P(l) is the mean norm |dJ^(i)/dh^(i-l)| over i and the batch; R(l) = P(l) / P(0).",
        sm.bptt, sm.batch
    )));
    let mut facts = vec![
        (
            "model".to_string(),
            format!(
                "{model}, H = {}, {} layer{}",
                sm.hidden,
                sm.layers,
                if sm.layers == 1 { "" } else { "s" }
            ),
        ),
        ("spectral radius rho".into(), num(sm.rho)),
        ("largest singular value sigma_1".into(), num(sm.sigma_1)),
    ];
    if let Some(gm) = sm.gamma {
        facts.push(("gamma = max |s'|".into(), num(gm)));
    }
    facts.push(("regime".into(), sm.regime.clone()));
    if let Some(d) = sm.decay_per_step {
        facts.push(("measured decay per step".into(), num(d)));
    }
    if let Some(b) = sm.bound_per_step {
        facts.push(("bound gamma*sigma_1 per step".into(), num(b)));
    }
    if let Some(d) = sm.cell_decay_per_step {
        facts.push(("decay through the cell state".into(), num(d)));
    }
    let below = |x: Option<usize>| {
        x.map_or(format!("not within {} steps", sm.bptt), |l| {
            format!("l = {l}")
        })
    };
    facts.push(("R(l) < 1e-3 at".into(), below(sm.distance_below_1e3)));
    facts.push(("R(l) < 1e-6 at".into(), below(sm.distance_below_1e6)));
    if let Some(e) = sm.theory_max_rel_error {
        facts.push(("theory vs measured (max rel. error)".into(), sci(e)));
    }
    // The headline of a gradflow directory; a section of its own in a task or train report.
    if part.headline.is_empty() {
        part.headline = facts;
    } else {
        s.blocks.push(Block::Facts(facts));
    }

    // R(l) per layer (and through the LSTM cell state), with the theory line.
    let layers = data::layers_of(g, "profile");
    let mut c = LineChart::new(
        "Gradient profile R(l) against distance",
        Axis::linear("distance l = i - j (time steps)"),
        Axis::log("R(l) = P(l) / P(0)  (relative gradient norm)"),
    );
    let top = sm.layers.saturating_sub(1);
    let mut top_ratio = Vec::new();
    for &k in &layers {
        if let Some(r) = ratio_profile(&g.join(format!("profile_l{k}.csv")))? {
            if k == top {
                top_ratio = r.clone();
            }
            let name = if sm.layers > 1 {
                format!("layer {k}, dJ/dh")
            } else {
                "measured, dJ/dh".into()
            };
            c.series.push(Series::line(name, r));
        }
        if let Some(r) = ratio_profile(&g.join(format!("profile_cell_l{k}.csv")))? {
            let name = if sm.layers > 1 {
                format!("layer {k}, dJ/dc (cell state)")
            } else {
                "measured, dJ/dc (cell state)".into()
            };
            c.series.push(Series::line(name, r));
        }
    }
    let ls: Vec<f64> = (0..sm.bptt).map(|l| l as f64).collect();
    let theory = if is_rnn && act == "identity" {
        Some((format!("rho^l (theory), rho = {}", num(sm.rho)), sm.rho))
    } else {
        sm.bound_per_step
            .map(|b| (format!("bound (gamma*sigma_1)^l, {}^l", num(b)), b))
    };
    if let Some((name, base)) = &theory {
        c.guides.push(Guide {
            name: name.clone(),
            points: ls.iter().map(|&l| (l, base.powf(l))).collect(),
            color: GUIDE,
        });
    }
    if !c.series.is_empty() {
        let caption = match &theory {
            Some(_) if is_rnn && act == "identity" => "Measured R(l) (log scale) and the theory line rho^l: with the identity activation the gradient is g W_hh^l exactly, so it decays (or grows) like the largest eigenvalue's modulus to the power l.",
            Some(_) => "Measured R(l) (log scale) and the bound (gamma*sigma_1)^l: every one-step Jacobian diag(s'(a)) W_hh has norm at most gamma*sigma_1, so the product over l steps cannot exceed its l-th power (Pascanu et al. 2013). The dashed line is clipped to the plotted range.",
            None => "Measured R(l) (log scale). For gated cells the gradient through the cell state is shown as well: its decay is set by the forget gate, not by W_hh alone.",
        };
        s.blocks
            .push(fig(p.name("gradflow_profile"), Figure::Line(c), caption));
    }
    if let Some(r) = profile_reading(
        &format!("{model} (top layer)"),
        &top_ratio,
        sm.decay_per_step,
    ) {
        part.reading.push(r);
    }
    part.reading
        .push(format!("Regime ({}): {}", sm.regime, sm.regime_reason));
    if let Some(e) = sm.theory_max_rel_error {
        part.reading.push(format!(
            "The measured gradients match the theory g^(i)_(i-l) = g^(i)_i W_hh^l to a relative error of {}{}.",
            sci(e),
            if e < 1e-6 { " (rounding error)" } else { "" }
        ));
    }
    if let (Some(b), Some(ok)) = (sm.bound_per_step, sm.bound_respected) {
        part.reading.push(if ok {
            format!("Every measured gradient ratio stays within the bound (gamma*sigma_1)^l = {}^l.", num(b))
        } else {
            format!("Some measured ratios exceed the bound (gamma*sigma_1)^l = {}^l: that should not happen; please report it.", num(b))
        });
    }

    // Influence matrices.
    for k in data::layers_of(g, "influence") {
        for (stem, what, sym) in [
            ("influence", "hidden state", "h"),
            ("influence_cell", "cell state", "c"),
        ] {
            let path = g.join(format!("{stem}_l{k}.csv"));
            if let Some((n, values)) = data::read_matrix(&path)? {
                let title = if sm.layers > 1 {
                    format!("Influence |dJ^(i)/d{sym}^(j)|, layer {k}")
                } else {
                    format!("Influence |dJ^(i)/d{sym}^(j)| ({what})")
                };
                s.blocks.push(fig(
                    p.name(&format!("{stem}_l{k}")),
                    Figure::Heat(HeatMap {
                        title,
                        x_label: format!("source step j (where {sym} is perturbed)"),
                        y_label: "target step i (loss J^(i))".into(),
                        bar_label: format!("mean |dJ^(i)/d{sym}^(j)|  (log scale)"),
                        n,
                        values,
                    }),
                    format!(
                        "How strongly the loss at step i depends on the {what} at step j <= i (mean over the batch, log colour scale; blank above the diagonal: the future cannot influence the past). Colour fading away from the diagonal is vanishing gradient.{}",
                        if n > super::plot::HEAT_MAX_CELLS {
                            format!(" {n} x {n} steps are shown in blocks of {} x {} (block means).", n.div_ceil(super::plot::HEAT_MAX_CELLS), n.div_ceil(super::plot::HEAT_MAX_CELLS))
                        } else {
                            String::new()
                        }
                    ),
                ));
            }
        }
    }

    // Spectra.
    for k in data::layers_of(g, "eigenvalues") {
        let Some(e) = Csv::read(&g.join(format!("eigenvalues_l{k}.csv")))? else {
            continue;
        };
        let gates = e.text("gate");
        let re = e.num("re");
        let im = e.num("im");
        let mut groups: Vec<PointGroup> = Vec::new();
        for ((gate, r), i) in gates.iter().zip(&re).zip(&im) {
            let (Some(r), Some(i)) = (r, i) else { continue };
            let title = gate_title(gate);
            match groups.iter_mut().find(|g| g.name == title) {
                Some(gp) => gp.points.push((*r, *i)),
                None => groups.push(PointGroup {
                    name: title,
                    points: vec![(*r, *i)],
                }),
            }
        }
        let gamma = snap.spectrum.get(k).and_then(|s| s.gamma).or(sm.gamma);
        let mut circles = Vec::new();
        match gamma {
            Some(gm) if (1.0 / gm - 1.0).abs() < 1e-9 => circles.push(CircleGuide {
                name: "|z| = 1 = 1/gamma".into(),
                radius: 1.0,
                dashed: false,
            }),
            Some(gm) => {
                circles.push(CircleGuide {
                    name: "unit circle |z| = 1".into(),
                    radius: 1.0,
                    dashed: false,
                });
                if gm > 0.0 {
                    circles.push(CircleGuide {
                        name: format!("|z| = 1/gamma = {}", num(1.0 / gm)),
                        radius: 1.0 / gm,
                        dashed: true,
                    });
                }
            }
            None => circles.push(CircleGuide {
                name: "unit circle |z| = 1".into(),
                radius: 1.0,
                dashed: false,
            }),
        }
        let rho = snap.spectrum.get(k).map_or(sm.rho, |s| s.rho);
        let layer = if sm.layers > 1 {
            format!(", layer {k}")
        } else {
            String::new()
        };
        s.blocks.push(fig(
            p.name(&format!("eigenvalues_l{k}")),
            Figure::Complex(ComplexPlane {
                title: format!("Eigenvalues of W_hh{layer} (rho = {})", num(rho)),
                x_label: "Re(lambda)".into(),
                y_label: "Im(lambda)".into(),
                groups,
                circles,
            }),
            if gamma.is_some() {
                "Eigenvalues of the recurrent weight in the complex plane. With the identity activation, eigenvalues outside the unit circle make gradients explode and inside make them vanish; for a nonlinear activation, all singular values (not just eigenvalues) below 1/gamma guarantee vanishing."
            } else {
                "Eigenvalues of each gate block of the recurrent weight. For gated cells they do not decide the gradient flow alone: the forget (LSTM) or update (GRU) gate carries gradient through time additively."
            },
        ));
    }
    for k in data::layers_of(g, "singular_values") {
        let Some(v) = Csv::read(&g.join(format!("singular_values_l{k}.csv")))? else {
            continue;
        };
        let gates = v.text("gate");
        let vals = v.num("value");
        let mut c = LineChart::new(
            if sm.layers > 1 {
                format!("Singular values of W_hh, layer {k}")
            } else {
                "Singular values of W_hh".to_string()
            },
            Axis::linear("index (largest first)"),
            Axis::linear("singular value"),
        );
        for (gate, x) in gates.iter().zip(&vals) {
            let Some(x) = x else { continue };
            let title = gate_title(gate);
            match c.series.iter_mut().find(|s| s.name == title) {
                Some(s) => {
                    let n = s.points.len() as f64;
                    s.points.push((n + 1.0, *x));
                }
                None => c.series.push(Series::line(title, vec![(1.0, *x)])),
            }
        }
        for s in &mut c.series {
            if s.points.len() <= 40 {
                s.marker = Some(Marker::Circle);
            }
        }
        let gamma = snap.spectrum.get(k).and_then(|s| s.gamma);
        match gamma {
            Some(gm) if gm > 0.0 => c.hlines.push(HLine {
                name: format!("1/gamma = {}", num(1.0 / gm)),
                y: 1.0 / gm,
            }),
            _ => c.hlines.push(HLine {
                name: "1".into(),
                y: 1.0,
            }),
        }
        s.blocks.push(fig(
            p.name(&format!("singular_values_l{k}")),
            Figure::Line(c),
            "Singular values of the recurrent weight, sorted. sigma_1 (the first) bounds how much one step can stretch a gradient: for a vanilla RNN, sigma_1 below the dashed line 1/gamma guarantees that the gradient vanishes.",
        ));
    }
    for j in &snap.jacobian {
        let k = j.layer;
        let width = j
            .products
            .iter()
            .map(|r| r.log_singular_values.len())
            .max()
            .unwrap_or(0);
        if width == 0 {
            continue;
        }
        let mut c = LineChart::new(
            if sm.layers > 1 {
                format!("Singular values of the Jacobian product, layer {k}")
            } else {
                "Singular values of the Jacobian product".to_string()
            },
            Axis::linear("distance l (time steps)"),
            Axis::log("sigma_m of dh_t / dh_(t-l)"),
        );
        for m in 0..width.min(4) {
            let pts: Vec<(f64, f64)> = j
                .products
                .iter()
                .filter_map(|r| Some((r.distance as f64, r.log_singular_values.get(m)?.exp())))
                .collect();
            c.series.push(Series::line_points(
                format!("sigma_{}", m + 1),
                pts,
                Marker::Circle,
            ));
        }
        s.blocks.push(fig(
            p.name(&format!("jacobian_l{k}")),
            Figure::Line(c),
            format!(
                "Leading singular values of the product of one-step Jacobians along the trajectory of sequence {} (state size {}); sigma_1 is the most a perturbation can grow over l steps.",
                j.batch_index, j.state_dim
            ),
        ));
    }
    part.sections.push(s);
    Ok(())
}

// ---------------------------------------------------------------- tracking during training

fn tracking_part(dir: &Path, p: &Prefix, part: &mut Part) -> Result<()> {
    let track = Csv::read(&dir.join("gradflow_track.csv"))?;
    let snaps_dir = dir.join("gradflow");
    let mut snap_files: Vec<_> = match std::fs::read_dir(&snaps_dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("step_") && n.ends_with(".json"))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    snap_files.sort();
    if track.is_none() && snap_files.is_empty() {
        return Ok(());
    }
    let mut s = Section::new(
        p.name("tracking"),
        "Gradient flow during training (--track-gradflow)",
    );
    let steps_axis = || Axis::linear("training step (updates)");
    if let Some(t) = &track {
        let layers: Vec<usize> = {
            let mut v: Vec<usize> = t
                .num("layer")
                .into_iter()
                .flatten()
                .map(|x| x as usize)
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let rows = |k: usize, col: &str| -> Vec<(f64, f64)> {
            t.num("step")
                .into_iter()
                .zip(t.num("layer"))
                .zip(t.num(col))
                .filter_map(|((s, l), v)| (l? as usize == k).then_some((s?, v?)))
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
                Series::line_points(format!("rho{}", suffix(k)), rows(k, "rho"), Marker::Circle)
                    .color(col),
            );
            c.series.push(
                Series::line_points(
                    format!("sigma_1{}", suffix(k)),
                    rows(k, "sigma_1"),
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
            "Spectral radius rho and largest singular value sigma_1 of the recurrent weight at each tracked step. rho > 1 is necessary for exploding gradients in a linear RNN; sigma_1 < 1/gamma guarantees vanishing ones.",
        ));
        let mut c = LineChart::new(
            "Gradient norm and measured decay during training",
            steps_axis(),
            Axis::log("gradient norm (L2)"),
        );
        let norm: Vec<(f64, f64)> = t
            .num("step")
            .into_iter()
            .zip(t.num("layer"))
            .zip(t.num("grad_norm"))
            .filter_map(|((s, l), v)| (l? as usize == layers[0]).then_some((s?, v?)))
            .collect();
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
                rows(k, "decay_per_step"),
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
                "Per-step factor by which the gradient shrinks with distance, measured on the training window at each tracked step: closer to 1 means longer memory.",
            ));
        }
        if let Some(&k) = layers.last() {
            let r = rows(k, "rho");
            let sg = rows(k, "sigma_1");
            let d = rows(k, "decay_per_step");
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
                        "; the measured gradient decay went from {} to {} per step{}",
                        num(x.1),
                        num(y.1),
                        reach(y.1).map_or(String::new(), |l| format!(
                            " (a factor 1e-3 after about {l:.0} steps)"
                        ))
                    );
                }
                text.push('.');
                part.reading.push(text);
            }
        }
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
            let path = &snap_files[k];
            let Some(snap): Option<GradflowSnapshot> = data::read_snapshot(path)? else {
                continue;
            };
            let step = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.strip_prefix("step_"))
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0);
            if let Some(pr) = snap.profiles.last() {
                let pts: Vec<(f64, f64)> = pr
                    .hidden
                    .iter()
                    .filter_map(|r| Some((r.distance as f64, r.ratio?)))
                    .collect();
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

// ---------------------------------------------------------------- one run directory

fn run_part(dir: &Path, p: &Prefix) -> Result<Part> {
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
fn run_dirs(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    Ok(data::subdirs(dir)?
        .into_iter()
        .filter(|d| {
            d.join("metrics.csv").exists()
                || d.join("summary.json").exists()
                || d.join("gradflow.json").exists()
        })
        .collect())
}

/// One run of a demo or experiment: where it is and how to label and group it.
struct SubRun {
    dir: std::path::PathBuf,
    name: String,
    group: String,
    label: String,
    summary: Option<Value>,
}

fn sub_runs(dir: &Path, group_of: &dyn Fn(&str, Option<&Value>) -> String) -> Result<Vec<SubRun>> {
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
                    "{}, {what} = {}",
                    jstr(v, "label").unwrap_or_else(|| group.clone()),
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
fn overlays(runs: &[SubRun], p: &Prefix, s: &mut Section) -> Result<()> {
    let shown: Vec<&SubRun> = runs.iter().take(MAX_OVERLAY).collect();
    let styles = grouped_styles(&shown);
    let mut c = LineChart::new(
        "Gradient profile R(l) of every run",
        Axis::linear("distance l = i - j (time steps)"),
        Axis::log("R(l) = P(l) / P(0)  (relative gradient norm)"),
    );
    for (r, (col, m)) in shown.iter().zip(&styles) {
        let g = r.dir.join("gradflow");
        let Some(&k) = data::layers_of(&g, "profile").last() else {
            continue;
        };
        if let Some(pts) = ratio_profile(&g.join(format!("profile_l{k}.csv")))? {
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
            "Each trained model's R(l), measured on held-out sequences (top layer, log scale): colour is the model, marker shape the run. A steep line is a model whose gradient cannot reach far back.",
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

// ---------------------------------------------------------------- demo

fn demo_report(dir: &Path, results: &Csv) -> Result<Part> {
    let p = Prefix(String::new());
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
    let mut order: Vec<String> = Vec::new();
    for c in &cells {
        if !order.contains(c) {
            order.push(c.clone());
        }
    }
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
        "R(l) of each trained model at l = the task's distance (log scale): the fraction of the gradient at the dependent word that reaches the key noun.",
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
        let o = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("n/a".into(), f);
        table.rows.push(vec![
            cell_name(&cells[i]),
            o(dist[i], &|x| format!("{x:.0}")),
            o(acc[i], &pct),
            o(chance[i], &pct),
            o(ratio[i], &sci),
            o(decay[i], &num),
            o(updates[i], &|x| format!("{x:.0}")),
            o(secs[i], &seconds),
        ]);
    }
    overlays(&runs, &p, &mut s)?;
    s.blocks.push(Block::Table(table));

    // Headline and reading.
    let ds: Vec<f64> = {
        let mut v: Vec<f64> = dist.iter().flatten().copied().collect();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v
    };
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
        let mut text = format!("{}: ", cell_name(c));
        text += &if failed.is_empty() {
            format!("solved every distance (l = {}).", list(&solved))
        } else if solved.is_empty() {
            format!("solved no distance (l = {}).", list(&failed))
        } else {
            format!("solved l = {}, not l = {}.", list(&solved), list(&failed))
        };
        if !at_chance.is_empty() {
            text += &format!(
                " At l = {} its accuracy is at chance: it did not learn the dependency at all.",
                list(&at_chance)
            );
        }
        let decays: Vec<f64> = rows.iter().filter_map(|&i| decay[i]).collect();
        if !decays.is_empty() {
            let d = decays.iter().sum::<f64>() / decays.len() as f64;
            text += &format!(" Its gradient shrinks by x{} per step on average", num(d));
            text += &match reach(d) {
                Some(l) if !failed.is_empty() => format!(
                    ", a factor 1e-3 after about {l:.0} steps: it cannot learn dependencies much longer than that."
                ),
                Some(l) => format!(" (a factor 1e-3 after about {l:.0} steps)."),
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
                "At the longest distance, l = {far:.0}, the {} keeps R(l) = {} of its gradient and the {} only {}: {} times less training signal reaches the key noun.",
                hi.0,
                sci(hi.1),
                lo.0,
                sci(lo.1),
                sci(hi.1 / lo.1.max(1e-300))
            ));
        }
    }
    part.sections.push(s);

    let mut s = Section::new("runs", "Every run");
    for r in &runs {
        let status = r
            .summary
            .as_ref()
            .and_then(|v| {
                let m = jnum(v, "metric")?;
                Some(format!(
                    "accuracy {}{}",
                    pct(m),
                    if v.get("solved").and_then(Value::as_bool) == Some(true) {
                        ", solved"
                    } else {
                        ""
                    }
                ))
            })
            .unwrap_or_default();
        if let Some(d) = run_details(&r.dir, &r.label, &status)? {
            s.blocks.push(Block::Sub(d));
        }
    }
    if !s.blocks.is_empty() {
        s.blocks.insert(
            0,
            Block::Note("Click a run below for its training curves, gradient profile, influence matrix and spectrum.".into()),
        );
        part.sections.push(s);
    }
    Ok(part)
}

// ---------------------------------------------------------------- experiment

fn experiment_report(dir: &Path, results: &Csv) -> Result<Part> {
    let p = Prefix(String::new());
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
    let mut order: Vec<String> = Vec::new();
    for m in &models {
        if !order.contains(m) {
            order.push(m.clone());
        }
    }
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
            "Per-step decay of the gradient with distance, measured on each trained model (mean over runs): 1 means the gradient reaches arbitrarily far back.",
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
    for i in 0..models.len() {
        let o = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("n/a".into(), f);
        table.rows.push(vec![
            models[i].clone(),
            o(len[i], &|x| format!("{x:.0}")),
            o(n_runs[i], &|x| format!("{x:.0}")),
            o(solved[i], &|x| format!("{x:.0}")),
            o(rate[i], &pct),
            o(mean[i], &num),
            o(decay[i], &num),
            o(results.num("mean_seconds")[i], &seconds),
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
    let ls: Vec<String> = {
        let mut v: Vec<f64> = len.iter().flatten().copied().collect();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v.iter().map(|x| format!("{x:.0}")).collect()
    };
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
            text += &format!("; its gradient shrinks by x{} per step", num(d));
            if let Some(l) = reach(d) {
                let longest = idx.iter().filter_map(|&i| len[i]).fold(0.0f64, f64::max);
                text += &format!(
                    ", a factor 1e-3 after about {l:.0} steps{}",
                    if l < longest {
                        format!(", far fewer than the length {longest:.0} it has to bridge")
                    } else {
                        String::new()
                    }
                );
            }
        }
        text.push('.');
        part.reading.push(text);
    }

    let mut s = Section::new("runs", "Every run");
    for r in &runs {
        let status = r
            .summary
            .as_ref()
            .and_then(|v| {
                let m = jnum(v, "metric")?;
                Some(format!(
                    "{metric_name} {}{}",
                    if is_mse(&metric_name) { num(m) } else { pct(m) },
                    if v.get("solved").and_then(Value::as_bool) == Some(true) {
                        ", solved"
                    } else {
                        ""
                    }
                ))
            })
            .unwrap_or_default();
        if let Some(d) = run_details(&r.dir, &r.name, &status)? {
            s.blocks.push(Block::Sub(d));
        }
    }
    if !s.blocks.is_empty() {
        part.sections.push(s);
    }
    Ok(part)
}

// ---------------------------------------------------------------- entry point

pub(super) fn build(dir: &Path) -> Result<Report> {
    let results = Csv::read(&dir.join("results.csv"))?;
    let part = match &results {
        Some(r) if r.has("cell") && r.has("distance") && r.has("accuracy") => demo_report(dir, r)?,
        Some(r) if r.has("model") && r.has("success_rate") => experiment_report(dir, r)?,
        _ => run_part(dir, &Prefix(String::new()))?,
    };
    if part.sections.is_empty() {
        return Err(Error::Data(format!(
            "{}: no run files to report on (expected metrics.csv, gradflow.json, gradflow/gradflow.json or results.csv): give the directory that rnnscope train, task, gradflow, demo or experiment wrote",
            dir.display()
        )));
    }
    let shown = dir.display().to_string();
    Ok(Report {
        title: part.title,
        subtitle: format!("Report of {shown}"),
        dir: shown,
        kind: part.kind,
        headline: part.headline,
        reading: part.reading,
        sections: part.sections,
    })
}
