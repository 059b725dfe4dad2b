//! The two gradient paths of an attentive model, and its attention weights.
//!
//! With attention (see [`crate::layers::attention`]) the loss `J^(i)` reads `h_i` through the
//! output and every `h_j` of its window directly, so `dJ^(i)/dh_j` has two kinds of path:
//! ```text
//! recurrent   the injection dJ^(i)/dh_i (decoder, W_c and the query of step i), carried back
//!             through h_i -> h_{i-1} -> ... -> h_j: the batched sweep of [`super::profile`]
//!             with this injection; its profile is the top layer's `profile_l{L-1}.csv`
//! attention   the one hop dJ^(i)/dh_j through a_ij and the value h_j (and key) at step i,
//!             j < i; at distance 0 the injection itself, so R(l) = P(l) / P_l(0) compares
//!             the hop over l steps with the gradient that enters at the target's own step
//! ```
//! (the total gradient also has mixed paths: one hop to some `h_k`, then back through the
//! recurrence). The weights: the mean `a_{t, t-l}` against the distance `l`, and the weights of
//! one window's batch element 0 as a heat map.
//!
//! Files in a gradient-flow directory:
//! ```text
//! attention_profile.csv    distance,mean,median,p10,p90,ratio,mean_weight: the attention path's
//!                          |dJ^(i)/dh^(i-l)| and the mean weight a_{t,t-l}
//! attention_influence.csv  T x T as influence_l{k}.csv, the attention path (diagonal: injection)
//! attention_weights.csv    T x T: a_tj of batch element 0, row t, column j < t (blank elsewhere)
//! ```

use super::profile::{self, InfluenceNorms, ProfileRow};
use crate::checkpoint::write_atomic;
use crate::error::Result;
use crate::layers::attention::{self as att, Attention, VjpScratch};
use crate::model::{LanguageModel, State, Workspace};
use crate::tensor::Float;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `attention_profile.csv`.
pub const PROFILE_FILE: &str = "attention_profile.csv";
/// `attention_influence.csv`.
pub const INFLUENCE_FILE: &str = "attention_influence.csv";
/// `attention_weights.csv`.
pub const WEIGHTS_FILE: &str = "attention_weights.csv";

/// What the analysis measured of an attentive model on one window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttentionFlow {
    pub attention: Attention,
    /// `K`; 0 = the whole window.
    pub span: usize,
    /// The attention path by distance `l` (see the module docs).
    pub path: Vec<ProfileRow>,
    /// Smallest `R(l)` of the attention path over the distances it reaches (`1..=K`).
    pub path_min_ratio: Option<f64>,
    /// Mean weight `a_{t, t-l}` by distance `l` (index `l`; 0 at `l = 0`, never read).
    pub mean_weight: Vec<f64>,
    /// `[T, T]` the attention path's influence matrix (mean over the batch).
    #[serde(skip)]
    pub influence: Vec<f64>,
    /// `[T, T]` `a_tj` of batch element 0 (NaN outside the window).
    #[serde(skip)]
    pub weights: Vec<f64>,
}

/// The injection of an attentive model: `dJ^(i)/dh_i` `[T, B, H]` from `g = dJ^(i)/do_i`
/// (the decoder's part, [`profile::decoder_injection`]) through `W_c` and the query of step
/// `i`, after a forward pass on `ws`.
pub fn injection<T: Float>(model: &LanguageModel<T>, ws: &Workspace<T>, g: &[T]) -> Vec<T> {
    let c = &model.config;
    let (steps, batch) = ws.dims().expect("forward has run");
    let h = c.hidden;
    let p = model.attention_params();
    let mut out = vec![T::ZERO; g.len()];
    let width = ws.attention().shape().map_or(0, |s| s.2);
    let mut window = vec![T::ZERO; width.max(1) * h];
    let mut s = VjpScratch::default();
    for t in 0..steps {
        for b in 0..batch {
            let r = (t * batch + b) * h;
            att::target_vjp(
                c.attention,
                ws.attention(),
                &p,
                t,
                b,
                &g[r..r + h],
                &mut out[r..r + h],
                &mut window,
                &mut s,
            );
        }
    }
    out
}

/// The attention path, weights and heat map of `tokens`/`targets` `[T, B]` from `state`, in
/// f64, without dropout.
pub fn flow(
    model: &LanguageModel<f64>,
    tokens: &[u32],
    targets: &[u32],
    state: &State<f64>,
    batch: usize,
) -> AttentionFlow {
    let c = &model.config;
    let steps = tokens.len() / batch;
    let h = c.hidden;
    let mut ws = Workspace::default();
    model.forward(&mut ws, tokens, state, steps, batch, None);
    model.loss(&mut ws, targets);
    let g = profile::decoder_injection(model, &ws.logits, targets);
    let p = model.attention_params();
    let width = ws.attention().shape().map_or(0, |s| s.2);
    let mut norms = InfluenceNorms {
        steps,
        batch,
        dh: vec![vec![0.0; steps * (steps + 1) / 2 * batch]],
        dc: Vec::new(),
    };
    let mut dh_t = vec![0.0; h];
    let mut window = vec![0.0; width.max(1) * h];
    let mut s = VjpScratch::default();
    let (mut sum_w, mut count_w) = (vec![0.0; steps], vec![0usize; steps]);
    let mut weights = vec![f64::NAN; steps * steps];
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    for t in 0..steps {
        for b in 0..batch {
            let r = (t * batch + b) * h;
            let lo = att::target_vjp(
                c.attention,
                ws.attention(),
                &p,
                t,
                b,
                &g[r..r + h],
                &mut dh_t,
                &mut window,
                &mut s,
            );
            let at = norms.index(t, t, b);
            norms.dh[0][at] = norm(&dh_t);
            let (_, a) = ws.attention().weights_at(t, b);
            for (i, &a) in a.iter().enumerate() {
                let j = lo + i;
                let at = norms.index(t, j, b);
                norms.dh[0][at] = norm(&window[i * h..(i + 1) * h]);
                sum_w[t - j] += a;
                count_w[t - j] += 1;
                if b == 0 {
                    weights[t * steps + j] = a;
                }
            }
        }
    }
    let path = profile::profile(&norms, &norms.dh[0]);
    let reach = if c.attention_span > 0 {
        c.attention_span.min(steps.saturating_sub(1))
    } else {
        steps.saturating_sub(1)
    };
    let path_min_ratio = path[1..=reach]
        .iter()
        .filter_map(|r| r.ratio)
        .reduce(f64::min);
    AttentionFlow {
        attention: c.attention,
        span: c.attention_span,
        influence: norms.matrix(&norms.dh[0]),
        path,
        path_min_ratio,
        mean_weight: sum_w
            .iter()
            .zip(&count_w)
            .map(|(&s, &n)| if n > 0 { s / n as f64 } else { 0.0 })
            .collect(),
        weights,
    }
}

impl AttentionFlow {
    /// One line for the human summary, beside the recurrent path's `recurrent` `R(l)`.
    pub fn human(&self, recurrent: &[ProfileRow]) -> String {
        let last = self.path.len().saturating_sub(1);
        let reach = if self.span > 0 {
            self.span.min(last)
        } else {
            last
        };
        let r = |rows: &[ProfileRow], l: usize| {
            rows.get(l)
                .and_then(|r| r.ratio)
                .map_or("n/a".into(), |x| format!("{x:.2e}"))
        };
        format!(
            "{} attention{}: R(l) at l = {reach}: through attention {} (min over l = 1..{reach}: {}), through the recurrence {}",
            self.attention.name(),
            if self.span > 0 {
                format!(" (span {})", self.span)
            } else {
                String::new()
            },
            r(&self.path, reach),
            self.path_min_ratio
                .map_or("n/a".into(), |x| format!("{x:.2e}")),
            r(recurrent, reach),
        )
    }

    /// Writes the three files of the module docs into `dir`, each starting with `first` (the
    /// `# input: ...` line of every file in the directory).
    pub fn write_files(&self, dir: &Path, first: &str) -> Result<()> {
        let num = |x: f64| {
            if x.is_finite() {
                format!("{x:?}")
            } else {
                String::new()
            }
        };
        let mut s = format!("{first}distance,mean,median,p10,p90,ratio,mean_weight\n");
        for r in &self.path {
            s += &format!(
                "{},{},{},{},{},{},{}\n",
                r.distance,
                num(r.mean),
                num(r.median),
                num(r.p10),
                num(r.p90),
                r.ratio.map_or(String::new(), num),
                num(self.mean_weight.get(r.distance).copied().unwrap_or(0.0))
            );
        }
        write_atomic(&dir.join(PROFILE_FILE), s.as_bytes())?;
        let n = self.path.len();
        for (name, m, diagonal) in [
            (INFLUENCE_FILE, &self.influence, true),
            (WEIGHTS_FILE, &self.weights, false),
        ] {
            let mut s = first.to_string();
            for i in 0..n {
                let row: Vec<String> = (0..n)
                    .map(|j| {
                        if j < i || (diagonal && j == i) {
                            num(m[i * n + j])
                        } else {
                            String::new()
                        }
                    })
                    .collect();
                s += &row.join(",");
                s.push('\n');
            }
            write_atomic(&dir.join(name), s.as_bytes())?;
        }
        Ok(())
    }
}
