//! The influence view over the text: for chosen target positions `i` of one window, how much
//! the loss there depends on the state at each earlier position `j`, `|dJ^(i)/dh^(j)|` (and
//! for the LSTM `|dJ^(i)/dc^(j)|`, the total derivative through the cell state), in the top
//! layer. It answers "which earlier tokens does this prediction depend on", token by token.

use super::GradflowSnapshot;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The influence view of one window (`text_influence` in `gradflow.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextInfluence {
    /// The window (batch element) shown.
    pub window: usize,
    /// The layer whose state the gradients are taken with respect to (the top layer).
    pub layer: usize,
    /// The text of each input token of the window, positions `0..T`.
    pub tokens: Vec<String>,
    pub targets: Vec<TargetInfluence>,
}

/// One target position of a [`TextInfluence`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetInfluence {
    /// `i`: the loss `J^(i)` predicts the token after input `i`.
    pub position: usize,
    /// The text of the token `J^(i)` predicts.
    pub next: String,
    /// `|dJ^(i)/dh^(j)|` for `j = 0..=i`.
    pub hidden: Vec<f64>,
    /// LSTM: `|dJ^(i)/dc^(j)|` for `j = 0..=i`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<Vec<f64>>,
}

/// The influence view of window `window` of `snap` for the target positions `targets`;
/// `tokens` and `next` are the texts of the window's inputs and targets (`T` each).
pub fn text_influence(
    snap: &GradflowSnapshot,
    window: usize,
    targets: &[usize],
    tokens: Vec<String>,
    next: &[String],
) -> Result<TextInfluence> {
    let n = &snap.norms;
    let steps = n.steps;
    if window >= n.batch {
        return Err(Error::Config(format!(
            "window {window} is not among the {} analysed windows (0 to {})",
            n.batch,
            n.batch.saturating_sub(1)
        )));
    }
    if let Some(&bad) = targets.iter().find(|&&i| i >= steps) {
        return Err(Error::Config(format!(
            "target position {bad} is outside the window of {steps} tokens (0 to {})",
            steps.saturating_sub(1)
        )));
    }
    if tokens.len() != steps || next.len() != steps {
        return Err(Error::Config(format!(
            "{} token texts and {} target texts for a window of {steps}",
            tokens.len(),
            next.len()
        )));
    }
    let layer = n.dh.len().saturating_sub(1);
    let row =
        |v: &[f64], i: usize| -> Vec<f64> { (0..=i).map(|j| v[n.index(i, j, window)]).collect() };
    Ok(TextInfluence {
        window,
        layer,
        targets: targets
            .iter()
            .map(|&i| TargetInfluence {
                position: i,
                next: next[i].clone(),
                hidden: row(&n.dh[layer], i),
                cell: n.dc.get(layer).map(|v| row(v, i)),
            })
            .collect(),
        tokens,
    })
}
