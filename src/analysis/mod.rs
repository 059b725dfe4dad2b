//! Gradient-flow analysis: spectra of `W_hh`, per-distance gradient profiles, Jacobian products.
//!
//! [`snapshot`] runs all of it on one window of tokens and returns a serialisable
//! [`GradflowSnapshot`]; the pieces are in [`profile`] (the batched sweep, the influence
//! matrix and the profile), [`jacobian`] (one-step Jacobians and their products),
//! [`theory`] (spectra, the Pascanu regime, exact checks) and [`spectrum`]; [`output`] writes
//! a snapshot as a directory of JSON and CSV files and reads them back.
//! Everything runs on a converted copy of the model, without dropout: spectra, Jacobians and
//! theory checks in f64, the batched sweep in f64 by default or in f32 ([`Precision`]).

pub mod attention;
pub mod input;
pub mod jacobian;
pub mod output;
pub mod profile;
pub mod spectrum;
pub mod text_view;
pub mod theory;

use crate::cell::{Activation, CellKind, Recurrence};
use crate::error::Result;
use crate::model::{LanguageModel, State, Workspace};
use crate::tensor::Float;
pub use input::{InputKind, InputRecord};
use jacobian::{JacobianOptions, JacobianProducts};
use profile::{InfluenceNorms, ProfileRow, Rate};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use theory::{BoundCheck, Capture, IdentityCheck, LayerSpectrum};

/// A copy of `model` with its parameters converted to `U`.
pub fn convert<T: Float, U: Float>(model: &LanguageModel<T>) -> Result<LanguageModel<U>> {
    let mut m = LanguageModel::<U>::zeros(model.config.clone())?;
    for (d, s) in m.params_mut().iter_mut().zip(model.params()) {
        *d = U::from_f64(s.to_f64());
    }
    Ok(m)
}

/// A copy of `model` with f64 parameters.
pub fn to_f64<T: Float>(model: &LanguageModel<T>) -> Result<LanguageModel<f64>> {
    convert(model)
}

fn convert_state<T: Float, U: Float>(s: &State<T>) -> State<U> {
    State {
        h: s.h.iter().map(|x| U::from_f64(x.to_f64())).collect(),
        c: s.c.iter().map(|x| U::from_f64(x.to_f64())).collect(),
    }
}

/// The arithmetic of the batched sweep (the influence matrix and the profiles).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Exact to rounding in double precision; the theory checks hold to ~1e-12.
    #[default]
    F64,
    /// The precision models train in: about twice as fast; relative errors ~1e-7 per step
    /// (the identity check then reports errors of order `l * 1e-7`), and gradients below
    /// ~1e-38 underflow. Spectra, Jacobians and theory predictions stay in f64.
    F32,
}

/// What [`snapshot`] computes besides the profile and spectrum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotOptions {
    /// Jacobian products per layer (`2 T S^3` flops per layer, `S` = state size).
    pub jacobian: Option<JacobianOptions>,
    /// Targets captured for the identity-activation theory check.
    pub theory_targets: usize,
    /// Cap on the captured values (`targets * T * B * H`), bounding the check's memory.
    pub theory_max_values: usize,
    /// Arithmetic of the batched sweep.
    pub precision: Precision,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            jacobian: Some(JacobianOptions::default()),
            theory_targets: 16,
            theory_max_values: 1 << 23,
            precision: Precision::F64,
        }
    }
}

/// Profile of one layer (and, for the LSTM, of its cell state).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerProfile {
    pub layer: usize,
    /// `|dJ^(i)/dh^(j)|` by distance.
    pub hidden: Vec<ProfileRow>,
    pub hidden_rate: Option<Rate>,
    /// LSTM: `|dJ^(i)/dc^(j)|` (total derivative through the cell state) by distance.
    pub cell: Option<Vec<ProfileRow>>,
    pub cell_rate: Option<Rate>,
    #[serde(rename = "distance_below_1e-3")]
    pub distance_below_1e3: Option<usize>,
    #[serde(rename = "distance_below_1e-6")]
    pub distance_below_1e6: Option<usize>,
}

/// The theory checks that apply to this model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct TheoryChecks {
    /// Identity activation only.
    pub identity: Option<IdentityCheck>,
    /// Nonlinear vanilla RNN only.
    pub bound: Option<BoundCheck>,
}

/// The short summary (`rnnscope gradflow --json`). Spectrum, regime, rates and theory numbers
/// describe the top layer (the one feeding the decoder); `per_layer` has every layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// What was analysed (callers that know set it after [`snapshot`]).
    #[serde(default)]
    pub input: InputRecord,
    pub cell: CellKind,
    pub activation: Activation,
    /// How `W_hh` is parametrised (dense or orthogonal).
    #[serde(default)]
    pub recurrence: Recurrence,
    /// Residual connections between the layers.
    #[serde(default)]
    pub residual: bool,
    pub hidden: usize,
    /// The LSTM's projection size `P` (`dJ/dh` has `P` values); 0 for none.
    #[serde(default, skip_serializing_if = "crate::model::is_zero")]
    pub proj_size: usize,
    pub layers: usize,
    pub bptt: usize,
    pub batch: usize,
    /// Arithmetic of the batched sweep.
    pub precision: Precision,
    pub rho: f64,
    pub sigma_1: f64,
    /// `None` for gated cells.
    pub gamma: Option<f64>,
    pub regime: String,
    /// Why: the numbers compared (Pascanu et al. 2013).
    pub regime_reason: String,
    pub vanishing_guaranteed: Option<bool>,
    /// Geometric mean of `R(l+1)/R(l)` over `l` in `0..decay_range` (where `R > 1e-12`).
    pub decay_per_step: Option<f64>,
    /// `exp` of the least-squares slope of `ln R(l)` over the same range.
    pub decay_per_step_fit: Option<f64>,
    pub decay_range: Option<usize>,
    /// `gamma * sigma_1` (vanilla RNN; `None` for gated cells).
    pub bound_per_step: Option<f64>,
    /// Every pair within `(gamma sigma_1)^l` (nonlinear vanilla RNN).
    pub bound_respected: Option<bool>,
    /// Identity activation: max relative error of the measured `g^(i)_j` against `g^(i)_i W^l`
    /// and the eigen-expansion; `None` otherwise.
    pub theory_max_rel_error: Option<f64>,
    /// Per-step rate of `sigma_1` of the Jacobian product (top layer, batch element 0).
    pub jacobian_rate_per_step: Option<f64>,
    /// LSTM: the decay rate through the cell state.
    pub cell_decay_per_step: Option<f64>,
    #[serde(rename = "distance_below_1e-3")]
    pub distance_below_1e3: Option<usize>,
    #[serde(rename = "distance_below_1e-6")]
    pub distance_below_1e6: Option<usize>,
    /// The memory horizon of the top layer: where `R(l)` falls below 1e-3, with its 95%
    /// interval over the windows (see [`profile::horizon`]); a property of the model on this
    /// input.
    #[serde(default)]
    pub memory_horizon: Option<profile::Horizon>,
    /// Wall time of forward + injection + batched sweep + influence matrices.
    pub influence_seconds: f64,
    /// Flops of the sweep's GEMMs.
    pub influence_gflop: f64,
    pub per_layer: Vec<LayerSummary>,
}

/// One layer's line of the summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSummary {
    pub layer: usize,
    /// The vertical profile: mean over targets `i` and the batch of `|dJ^(i)/dh^(k)_i|`, the
    /// gradient reaching this layer at the step of its own loss (distance 0), which crosses
    /// `L - 1 - k` layers and no time step.
    #[serde(default)]
    pub vertical_mean: f64,
    /// `vertical_mean` over the top layer's: below 1 the gradient shrinks going down the stack.
    #[serde(default)]
    pub vertical_ratio: Option<f64>,
    pub rho: f64,
    pub sigma_1: f64,
    pub regime: String,
    pub decay_per_step: Option<f64>,
    #[serde(rename = "distance_below_1e-3")]
    pub distance_below_1e3: Option<usize>,
    #[serde(rename = "distance_below_1e-6")]
    pub distance_below_1e6: Option<usize>,
}

/// Everything the analysis measured on one window. Serialises to `gradflow.json` (without the
/// influence matrices, which are `T x T` per layer and go to CSV files).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GradflowSnapshot {
    pub summary: Summary,
    pub spectrum: Vec<LayerSpectrum>,
    pub profiles: Vec<LayerProfile>,
    pub jacobian: Vec<JacobianProducts>,
    pub theory: TheoryChecks,
    /// Per layer `[T, T]`: mean over the batch of `|g^(i)_j|` (row `i`, column `j <= i`).
    #[serde(skip)]
    pub influence: Vec<Vec<f64>>,
    /// LSTM per layer `[T, T]`: the same for `|dJ^(i)/dc^(j)|`.
    #[serde(skip)]
    pub influence_cell: Vec<Vec<f64>>,
    /// An attentive model's attention path and weights; the profiles are then the recurrent
    /// path (see [`attention`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<attention::AttentionFlow>,
    /// Every `|dJ^(i)/dh^(j)|` per window (for [`text_view::text_influence`]).
    #[serde(skip)]
    pub norms: InfluenceNorms,
    /// The influence view over the text, when the caller asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_influence: Option<text_view::TextInfluence>,
}

/// Flops of the batched sweep's GEMMs (see [`profile`]'s cost statement).
pub fn sweep_flops(
    kind: CellKind,
    hidden: usize,
    layers: usize,
    steps: usize,
    batch: usize,
) -> f64 {
    let rows = (batch * steps * (steps + 1) / 2) as f64;
    let per_gemm = 2.0 * (kind.gates() * hidden * hidden) as f64;
    rows * per_gemm * (2 * layers - 1) as f64
}

/// The forward pass, injection and batched sweep: the influence norms of `tokens [T, B]`.
pub fn influence<T: Float>(
    model: &LanguageModel<T>,
    ws: &mut Workspace<T>,
    tokens: &[u32],
    targets: &[u32],
    state: &State<T>,
    batch: usize,
    visit: Option<profile::Visitor<'_, T>>,
) -> InfluenceNorms {
    let steps = tokens.len() / batch;
    model.forward(ws, tokens, state, steps, batch, None);
    model.loss(ws, targets);
    let mut inject = profile::decoder_injection(model, &ws.logits, targets);
    if model.config.attention.is_on() {
        // The output reads h_i through W_c and the query too (the recurrent path's start).
        inject = attention::injection(model, ws, &inject);
    }
    profile::sweep(model, &ws.caches, &inject, visit)
}

/// Measures gradient flow through time on one window: `tokens`, `targets` `[T, B]`
/// (time-major), starting from `state` (zeros when `None`).
///
/// Runs in f64 on a copy of the model, without dropout: the spectrum of every `W_hh` gate
/// block, the batched sweep (every `dJ^(i)/dh^(j)`, per layer, and through the LSTM cell state),
/// the profiles and rates, the theory checks, and optionally the Jacobian products. A trainer
/// calls this every N steps with its current window and carried state.
pub fn snapshot<T: Float>(
    model: &LanguageModel<T>,
    tokens: &[u32],
    targets: &[u32],
    state: Option<&State<T>>,
    batch: usize,
    opts: &SnapshotOptions,
) -> Result<GradflowSnapshot> {
    let steps = model.check_inputs(tokens, Some(targets), state, batch)?;
    let m = to_f64(model)?;
    let c = m.config.clone();
    let state = state.map_or_else(|| State::zeros(&c, batch), convert_state::<T, f64>);
    let top = c.layers - 1;
    let spectrum = (0..c.layers)
        .map(|k| theory::layer_spectrum(&m, k))
        .collect::<Result<Vec<_>>>()?;

    let identity = c.cell == CellKind::Rnn && c.activation == Activation::Identity;
    let mut capture = identity.then(|| {
        Capture::new(
            top,
            steps,
            batch,
            c.hidden,
            opts.theory_targets,
            opts.theory_max_values,
        )
    });
    let mut ws = Workspace::default();
    let start = Instant::now();
    let norms = match opts.precision {
        Precision::F64 => {
            let mut visit = |v: &profile::StepView<'_, f64>| {
                if let Some(cap) = capture.as_mut() {
                    cap.visit(v);
                }
            };
            influence(
                &m,
                &mut ws,
                tokens,
                targets,
                &state,
                batch,
                if identity { Some(&mut visit) } else { None },
            )
        }
        Precision::F32 => {
            let m32 = convert::<f64, f32>(&m)?;
            let mut visit = |v: &profile::StepView<'_, f32>| {
                if let Some(cap) = capture.as_mut() {
                    cap.visit(v);
                }
            };
            influence(
                &m32,
                &mut Workspace::default(),
                tokens,
                targets,
                &convert_state(&state),
                batch,
                if identity { Some(&mut visit) } else { None },
            )
        }
    };
    let influence: Vec<Vec<f64>> = norms.dh.iter().map(|v| norms.matrix(v)).collect();
    let influence_cell: Vec<Vec<f64>> = norms.dc.iter().map(|v| norms.matrix(v)).collect();
    let influence_seconds = start.elapsed().as_secs_f64();

    let profiles: Vec<LayerProfile> = (0..c.layers)
        .map(|k| {
            let hidden = profile::profile(&norms, &norms.dh[k]);
            let cell = norms.dc.get(k).map(|v| profile::profile(&norms, v));
            LayerProfile {
                layer: k,
                hidden_rate: profile::rate(&hidden),
                cell_rate: cell.as_deref().and_then(profile::rate),
                distance_below_1e3: profile::distance_below(&hidden, 1e-3),
                distance_below_1e6: profile::distance_below(&hidden, 1e-6),
                hidden,
                cell,
            }
        })
        .collect();

    let mut theory = TheoryChecks::default();
    if let Some(cap) = capture.as_ref() {
        theory.identity = Some(theory::identity_check(m.layer_params(top).w_hh, cap)?);
    } else if c.cell == CellKind::Rnn {
        let bound = c.activation.gamma() * spectrum[top].sigma_1;
        theory.bound = Some(theory::bound_check(&norms, top, bound));
    }

    if opts.jacobian.is_some() && opts.precision == Precision::F32 {
        m.forward(&mut ws, tokens, &state, steps, batch, None);
    }
    let jacobian = match &opts.jacobian {
        Some(jo) => (0..c.layers)
            .map(|k| jacobian::products(&m, &ws.caches[k], k, jo))
            .collect::<Result<Vec<_>>>()?,
        None => Vec::new(),
    };

    let sp = &spectrum[top];
    let pr = &profiles[top];
    let summary = Summary {
        input: InputRecord {
            windows: batch,
            window_length: steps,
            seed: opts.jacobian.as_ref().map_or(0, |j| j.seed),
            ..Default::default()
        },
        cell: c.cell,
        activation: c.activation,
        recurrence: c.recurrence,
        residual: c.residual,
        hidden: c.hidden,
        proj_size: c.proj_size,
        layers: c.layers,
        bptt: steps,
        batch,
        precision: opts.precision,
        rho: sp.rho,
        sigma_1: sp.sigma_1,
        gamma: sp.gamma,
        regime: sp.regime.name.clone(),
        regime_reason: sp.regime.reason.clone(),
        vanishing_guaranteed: sp.regime.vanishing_guaranteed,
        decay_per_step: pr.hidden_rate.as_ref().map(|r| r.per_step),
        decay_per_step_fit: pr.hidden_rate.as_ref().map(|r| r.per_step_fit),
        decay_range: pr.hidden_rate.as_ref().map(|r| r.last),
        bound_per_step: sp.gamma.map(|g| g * sp.sigma_1),
        bound_respected: theory.bound.as_ref().map(|b| b.violations == 0),
        theory_max_rel_error: theory.identity.as_ref().map(|t| t.max_rel_error),
        jacobian_rate_per_step: jacobian.get(top).and_then(|j| j.rate_per_step),
        cell_decay_per_step: pr.cell_rate.as_ref().map(|r| r.per_step),
        distance_below_1e3: pr.distance_below_1e3,
        distance_below_1e6: pr.distance_below_1e6,
        memory_horizon: Some(profile::horizon(
            &norms,
            &norms.dh[top],
            1e-3,
            profile::HORIZON_RESAMPLES,
            opts.jacobian.as_ref().map_or(0, |j| j.seed),
        )),
        influence_seconds,
        influence_gflop: sweep_flops(c.cell, c.hidden, c.layers, steps, batch) / 1e9,
        per_layer: spectrum
            .iter()
            .zip(&profiles)
            .map(|(s, p)| LayerSummary {
                layer: s.layer,
                vertical_mean: p.hidden[0].mean,
                vertical_ratio: {
                    let top = profiles[top].hidden[0].mean;
                    (top > 0.0).then(|| p.hidden[0].mean / top)
                },
                rho: s.rho,
                sigma_1: s.sigma_1,
                regime: s.regime.name.clone(),
                decay_per_step: p.hidden_rate.as_ref().map(|r| r.per_step),
                distance_below_1e3: p.distance_below_1e3,
                distance_below_1e6: p.distance_below_1e6,
            })
            .collect(),
    };
    let attention = c
        .attention
        .is_on()
        .then(|| attention::flow(&m, tokens, targets, &state, batch));
    Ok(GradflowSnapshot {
        attention,
        summary,
        spectrum,
        profiles,
        jacobian,
        theory,
        influence,
        influence_cell,
        norms,
        text_influence: None,
    })
}

impl Summary {
    /// The short human summary (a few lines).
    pub fn human(&self) -> String {
        let mut act = if self.cell == CellKind::Rnn {
            format!(" {}", self.activation.name())
        } else {
            String::new()
        };
        if self.recurrence == Recurrence::Orthogonal {
            act += " orthogonal";
        }
        if self.residual {
            act += " residual";
        }
        if self.proj_size > 0 {
            act += &format!(" projection P={}", self.proj_size);
        }
        let mut s = format!(
            "input: {}\n{}{}, H={}, layers={}, T={}, B={}: rho={:.3} sigma_1={:.3}",
            self.input.describe(),
            self.cell.name(),
            act,
            self.hidden,
            self.layers,
            self.bptt,
            self.batch,
            self.rho,
            self.sigma_1
        );
        if let Some(g) = self.gamma {
            s += &format!(" gamma={g}");
        }
        let guaranteed = match self.vanishing_guaranteed {
            Some(true) => "; vanishing guaranteed? yes",
            Some(false) => "; vanishing guaranteed? no",
            None => "",
        };
        s += &format!(
            " -> regime: {}{guaranteed} ({})",
            self.regime, self.regime_reason
        );
        s += &match (
            self.decay_per_step,
            self.decay_per_step_fit,
            self.decay_range,
        ) {
            (Some(d), Some(f), Some(l)) => {
                format!("\nmeasured decay {d:.4}/step (fit {f:.4}, over l = 0..{l})")
            }
            _ => "\nmeasured decay: none (needs T >= 2 and R(1) > 1e-12)".into(),
        };
        if let Some(b) = self.bound_per_step {
            s += &format!("; bound gamma*sigma_1 = {b:.4}/step");
            if let Some(ok) = self.bound_respected {
                s += if ok { " (respected)" } else { " (VIOLATED)" };
            }
        }
        if let Some(c) = self.cell_decay_per_step {
            s += &format!("; through the cell state {c:.4}/step");
        }
        if let Some(j) = self.jacobian_rate_per_step {
            s += &format!("\nJacobian product: sigma_1 rate {j:.4}/step");
        }
        let d =
            |x: Option<usize>| x.map_or(format!("no l <= {}", self.bptt - 1), |l| format!("l={l}"));
        s += &format!(
            "\nR(l) < 1e-3 at {}, < 1e-6 at {}",
            d(self.distance_below_1e3),
            d(self.distance_below_1e6)
        );
        if let Some(h) = &self.memory_horizon {
            s += &format!(
                "\nmemory horizon (R(l) < 1e-3, top layer) on {}: {}",
                match self.input.kind {
                    InputKind::Random => "random tokens, not text",
                    InputKind::Unspecified => "tokens of unstated origin",
                    _ => "this input",
                },
                h.describe(self.bptt)
            );
        }
        if self.layers > 1 {
            let v: Vec<String> = self
                .per_layer
                .iter()
                .map(|l| {
                    l.vertical_ratio
                        .map_or("n/a".into(), |r| format!("{r:.2e}"))
                })
                .collect();
            s += &format!(
                "\nvertical profile |dJ^(i)/dh^(k)_i| / top layer, k = 0..{}: {}",
                self.layers - 1,
                v.join(" ")
            );
        }
        if let Some(e) = self.theory_max_rel_error {
            s += &format!(
                "\ntheory (identity): max relative error vs W^l and eigen-expansion {e:.2e}"
            );
        }
        s += &format!(
            "\ninfluence matrix: {:.3} s ({:.2} GFLOP, {})",
            self.influence_seconds,
            self.influence_gflop,
            match self.precision {
                Precision::F64 => "f64",
                Precision::F32 => "f32",
            }
        );
        s
    }
}
