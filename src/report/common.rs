//! Pieces every report builder shares: the part a directory contributes, figure names,
//! number formatting, summary look-ups and the task-metric conventions.

use super::plot::{Axis, Figure, HLine};
use super::{Block, Fig, Section};
use serde_json::Value;

/// Longest line series drawn (longer ones are averaged in buckets).
pub(super) const MAX_POINTS: usize = 1500;

/// A part of a report: what one directory contributes.
#[derive(Default)]
pub(super) struct Part {
    pub(super) kind: String,
    pub(super) title: String,
    pub(super) headline: Vec<(String, String)>,
    pub(super) reading: Vec<String>,
    pub(super) sections: Vec<Section>,
}

/// Prefix of figure names and section ids (empty for the top-level run).
#[derive(Clone, Default)]
pub(super) struct Prefix(pub(super) String);

impl Prefix {
    pub(super) fn name(&self, n: &str) -> String {
        format!("{}{n}", self.0)
    }
}

/// `4.3e-7`.
pub(super) fn sci(v: f64) -> String {
    format!("{v:.1e}")
}

/// Four significant digits, scientific outside `[1e-3, 1e6)`.
pub(super) fn num(v: f64) -> String {
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

pub(super) fn pct(v: f64) -> String {
    format!("{:.1}%", 100.0 * v)
}

pub(super) fn seconds(s: f64) -> String {
    if s >= 120.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.1} s")
    }
}

pub(super) fn jnum(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64).filter(|x| x.is_finite())
}

pub(super) fn jstr(v: &Value, key: &str) -> Option<String> {
    v.get(key).map(|x| match x {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// The distance at which `decay^l` falls to `1e-3` (for `0 < decay < 1`).
pub(super) fn reach(decay: f64) -> Option<f64> {
    (decay > 0.0 && decay < 1.0).then(|| (1e-3f64).ln() / decay.ln())
}

pub(super) fn fig(name: String, figure: Figure, caption: impl Into<String>) -> Block {
    Block::Figure(Fig {
        name,
        figure,
        caption: caption.into(),
    })
}

/// The x axis of every plot against training step.
pub(super) fn steps_axis() -> Axis {
    Axis::linear("training step (updates)")
}

/// What a task's length is: the dependency task's distance, every other task's length.
pub(super) fn length_word(task: &str) -> &'static str {
    if task == "dependency" {
        "distance"
    } else {
        "length"
    }
}

/// `f(v)`, or `n/a` without a value.
pub(super) fn or_na(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or("n/a".into(), f)
}

/// The distinct values of `v` in the order they first appear.
pub(super) fn first_appearance(v: &[String]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for x in v {
        if !order.contains(x) {
            order.push(x.clone());
        }
    }
    order
}

/// The distinct values of `v`, increasing.
pub(super) fn distinct_sorted(v: &[Option<f64>]) -> Vec<f64> {
    let mut out: Vec<f64> = v.iter().flatten().copied().collect();
    out.sort_by(f64::total_cmp);
    out.dedup();
    out
}

pub(super) fn is_mse(metric_name: &str) -> bool {
    metric_name.to_ascii_lowercase().contains("mse")
}

pub(super) fn metric_axis(metric_name: &str) -> Axis {
    if is_mse(metric_name) {
        Axis::log(format!("{metric_name} (log scale)"))
    } else {
        Axis::linear(format!("{metric_name} (held-out test set)")).range(0.0, 1.0)
    }
}

/// A task metric's value as shown: an MSE as a number, an accuracy as a percentage.
pub(super) fn metric_value(metric_name: &str, x: f64) -> String {
    if is_mse(metric_name) {
        num(x)
    } else {
        pct(x)
    }
}

/// What the level a model reaches without learning the task is called: for an MSE the
/// baseline (predicting the mean), for an accuracy chance.
pub(super) fn baseline_word(metric_name: &str) -> &'static str {
    if is_mse(metric_name) {
        "baseline"
    } else {
        "chance accuracy"
    }
}

pub(super) fn baseline_name(metric_name: &str, b: f64) -> String {
    if is_mse(metric_name) {
        format!("baseline {} (predict the mean)", num(b))
    } else {
        format!("chance accuracy ({})", pct(b))
    }
}

pub(super) fn criterion(metric_name: &str) -> HLine {
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

pub(super) fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}
