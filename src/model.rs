//! `LanguageModel`: embedding -> stacked recurrent cells -> linear decoder -> softmax cross-entropy.
//!
//! The same model also serves the synthetic tasks: with `input_size > 0` it reads dense input
//! vectors `[T, B, input_size]` instead of tokens (no embedding), and with `output = mse` the
//! decoder's `vocab` outputs are regressed with squared error instead of classified.
//!
//! ```text
//! x_t = E[w_t]                     (embedding, [V, E])
//! h^k_t = cell_k(x^k_t, h^k_{t-1})   x^0 = drop(x), x^{k+1} = drop(h^k)
//! z_t = W_dec drop(h^{L-1}_t) + b_dec      (W_dec [V, H], tied to E when `tie`)
//! J^(t) = -ln softmax(z_t)[w_{t+1}]        L = mean over t and batch of J^(t)
//! ```
//! With `proj_size = P > 0` (LSTM only) every layer's `h` has size `P` (see
//! [`crate::cell`]): the next layer and the decoder (`W_dec [V, P]`) read `P` values.
//!
//! Dropout (inverted, probability `dropout`) sits on every non-recurrent connection: the
//! embedding output, between layers and before the decoder (Zaremba et al. 2014); it is off in
//! evaluation. With `dropout = 0` the model is exactly `nn.Embedding -> nn.RNN/LSTM/GRU -> nn.Linear`.

use crate::cell::{
    self, orthogonal, Activation, BackwardOut, Cell, CellKind, Dims, Input, LayerCache, LayerGrads,
    LayerParams, Recurrence, StateIo, StepGrads, Upstream,
};
use crate::error::{Error, Result};
use crate::layers;
use crate::layers::attention::{self, Attention, Memory};
use crate::params::ParamLayout;
use crate::tensor::{add_assign, matmul, sum_rows_into, Float, Trans};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Architecture of a language model; stored in every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub cell: CellKind,
    /// Activation of the vanilla RNN (ignored by LSTM and GRU).
    pub activation: Activation,
    /// Vocabulary size `V`.
    pub vocab: usize,
    /// Embedding size `E`.
    pub embedding: usize,
    /// Hidden size `H` of every layer.
    pub hidden: usize,
    pub layers: usize,
    /// Dropout probability on non-recurrent connections (training only).
    pub dropout: f64,
    /// Tie the decoder weight to the embedding (needs `embedding == hidden`).
    pub tie: bool,
    /// Size of dense input vectors; 0 (the default) reads tokens through the embedding.
    #[serde(default)]
    pub input_size: usize,
    /// Output head (default softmax cross-entropy over `vocab` classes).
    #[serde(default)]
    pub output: Output,
    /// How each layer's `W_hh` is parametrised (default dense; orthogonal for the vanilla RNN).
    #[serde(default)]
    pub recurrence: Recurrence,
    /// Residual connections between stacked layers: layer `k >= 1` adds its input to its
    /// output, `o^k = h^k + o^(k-1)` (`o^0 = h^0`), and the next layer and the decoder read `o`.
    #[serde(default)]
    pub residual: bool,
    /// Attention of the top layer over its earlier outputs in the window (see
    /// [`crate::layers::attention`]); default none.
    #[serde(default)]
    pub attention: Attention,
    /// Attention reads at most this many earlier steps (`j >= t - K`); 0 = the whole window.
    #[serde(default)]
    pub attention_span: usize,
    /// LSTM projection size `P` (`torch.nn.LSTM(proj_size = P)`): `h_t = W_hr (o * tanh(c_t))`
    /// has `P < H` values; 0 (the default) for none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub proj_size: usize,
}

pub(crate) fn is_zero(v: &usize) -> bool {
    *v == 0
}

/// What the decoder's `vocab` outputs `z` are trained to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// `J = -ln softmax(z)[y]` for a class label `y`.
    #[default]
    Softmax,
    /// `J = sum_k (z_k - y_k)^2` for real targets `y` (regression, e.g. the adding problem).
    Mse,
}

impl ModelConfig {
    /// Checks sizes; the message names the field and the fix.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab", self.vocab),
            ("embedding", self.layer_input(0)),
            ("hidden", self.hidden),
            ("layers", self.layers),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(Error::Config(format!("`{name}` must be at least 1")));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::Config(format!(
                "`dropout` = {} must be in [0, 1)",
                self.dropout
            )));
        }
        if self.tie && self.input_size > 0 {
            return Err(Error::Config(
                "`tie` needs token input: a dense-input model has no embedding to tie".into(),
            ));
        }
        if self.recurrence == Recurrence::Orthogonal && self.cell != CellKind::Rnn {
            return Err(Error::Config(format!(
                "`recurrence` = orthogonal is for the vanilla RNN (`cell` = rnn), not {}",
                self.cell.name()
            )));
        }
        self.attention.validate(self.attention_span)?;
        if self.proj_size > 0 {
            if self.cell != CellKind::Lstm {
                return Err(Error::Config(format!(
                    "`proj_size` is for the LSTM (`cell` = lstm), not {}: set `proj_size` = 0",
                    self.cell.name()
                )));
            }
            if self.proj_size >= self.hidden {
                return Err(Error::Config(format!(
                    "`proj_size` = {} must be smaller than `hidden` = {} (as in torch.nn.LSTM)",
                    self.proj_size, self.hidden
                )));
            }
            if self.attention.is_on() {
                return Err(Error::Config(
                    "`proj_size` with attention is not supported: set `attention` = none or `proj_size` = 0".into(),
                ));
            }
        }
        if self.tie && self.embedding != self.h_size() {
            let what = if self.proj_size > 0 {
                "proj_size"
            } else {
                "hidden"
            };
            return Err(Error::Config(format!(
                "`tie` needs embedding == {what} (got {} and {}): set both to the same size",
                self.embedding,
                self.h_size()
            )));
        }
        Ok(())
    }

    /// Size of the `h` each layer outputs: `proj_size` with a projection, else `hidden`.
    pub fn h_size(&self) -> usize {
        if self.proj_size > 0 {
            self.proj_size
        } else {
            self.hidden
        }
    }

    /// The sizes of layer `k`'s pass over `steps x batch`.
    pub fn dims(&self, k: usize, steps: usize, batch: usize) -> Dims {
        Dims {
            steps,
            batch,
            input: self.layer_input(k),
            hidden: self.hidden,
            proj: self.proj_size,
        }
    }

    pub fn cell(&self) -> Cell {
        Cell {
            kind: self.cell,
            activation: self.activation,
        }
    }

    /// Input size of layer `k`.
    pub fn layer_input(&self, k: usize) -> usize {
        if k == 0 && self.input_size > 0 {
            self.input_size
        } else if k == 0 {
            self.embedding
        } else {
            self.h_size()
        }
    }

    /// The parameter layout, in PyTorch state-dict names and shapes.
    pub fn layout(&self) -> ParamLayout {
        self.layout_and_offsets().0
    }

    fn layout_and_offsets(&self) -> (ParamLayout, Offsets) {
        let mut l = ParamLayout::default();
        let embedding = if self.input_size > 0 {
            0..0
        } else {
            l.push("embedding.weight", &[self.vocab, self.embedding])
        };
        let gh = self.cell.gates() * self.hidden;
        let mut layers = Vec::new();
        for k in 0..self.layers {
            let a = l.push(format!("rnn.weight_ih_l{k}"), &[gh, self.layer_input(k)]);
            l.push(self.recurrent_param(k), &[gh, self.h_size()]);
            l.push(format!("rnn.bias_ih_l{k}"), &[gh]);
            let mut d = l.push(format!("rnn.bias_hh_l{k}"), &[gh]);
            if let Some(extra) = self.cell().extra_param() {
                d = l.push(format!("rnn.{extra}_l{k}"), &[self.hidden]);
            }
            if self.proj_size > 0 {
                d = l.push(
                    format!("rnn.weight_hr_l{k}"),
                    &[self.proj_size, self.hidden],
                );
            }
            layers.push(a.start..d.end);
        }
        let mut attention = l.total()..l.total();
        for (name, shape) in self.attention.params(self.hidden) {
            attention.end = l.push(name, &shape).end;
        }
        let decoder_w = if self.tie {
            embedding.clone()
        } else {
            l.push("decoder.weight", &[self.vocab, self.h_size()])
        };
        let decoder_b = l.push("decoder.bias", &[self.vocab]);
        let offsets = Offsets {
            embedding,
            layers,
            attention,
            decoder_w,
            decoder_b,
        };
        (l, offsets)
    }

    /// The name of layer `k`'s recurrent parameter: `W_hh` itself (`rnn.weight_hh_l{k}`) or,
    /// for orthogonal recurrence, the generator of its skew-symmetric logarithm
    /// (`rnn.skew_hh_l{k}`, see [`crate::cell::orthogonal`]).
    pub fn recurrent_param(&self, k: usize) -> String {
        match self.recurrence {
            Recurrence::Dense => format!("rnn.weight_hh_l{k}"),
            Recurrence::Orthogonal => format!("rnn.skew_hh_l{k}"),
        }
    }

    /// Whether layer 0 reads `rows = T * B` tokens itself ([`cell::Input::Tokens`]: `V`
    /// projected rows instead of `T * B`) rather than through a `[T, B, E]` embedding output:
    /// token input without dropout, and at least `V` rows.
    pub fn projects_tokens(&self, rows: usize) -> bool {
        self.input_size == 0 && self.dropout == 0.0 && rows >= self.vocab
    }

    /// Multiply-adds x 2 (FLOPs) of forward + backward per token, as DESIGN.md counts them:
    /// `3 * 2 * (in + H) * G * H` per layer plus `3 * 2 * H * V` for the decoder (with a
    /// projection: `3 * 2 * (in + P) * G * H + 3 * 2 * H * P` per layer, `3 * 2 * P * V`).
    pub fn train_flops_per_token(&self) -> f64 {
        let gh = (self.cell.gates() * self.hidden) as f64;
        let mut f = 0.0;
        for k in 0..self.layers {
            f += 6.0 * (self.layer_input(k) + self.h_size()) as f64 * gh;
            f += 6.0 * (self.proj_size * self.hidden) as f64;
        }
        if self.attention.is_on() {
            // W_c [H, 2H] (and W_q, W_k [H, H]); the per-pair scores depend on the window.
            let h = self.hidden as f64;
            let extra = if self.attention == Attention::Additive {
                2.0
            } else {
                0.0
            };
            f += 6.0 * (2.0 + extra) * h * h;
        }
        f + 6.0 * (self.h_size() * self.vocab) as f64
    }
}

/// Where each piece lives in the flat parameter buffer.
#[derive(Clone, Debug)]
struct Offsets {
    embedding: Range<usize>,
    /// One contiguous block `[w_ih | w_hh | b_ih | b_hh | extra | w_hr]` per layer.
    layers: Vec<Range<usize>>,
    /// The attention's block (see [`Attention::params`]); empty without attention.
    attention: Range<usize>,
    /// Equal to `embedding` when tied.
    decoder_w: Range<usize>,
    decoder_b: Range<usize>,
}

/// Recurrent state of every layer: `h [L, B, P]` (`P = H` without a projection) and, for the
/// LSTM, `c [L, B, H]`.
#[derive(Clone, Debug, PartialEq)]
pub struct State<T> {
    pub h: Vec<T>,
    pub c: Vec<T>,
}

impl<T: Float> State<T> {
    pub fn zeros(config: &ModelConfig, batch: usize) -> Self {
        let n = config.layers * batch * config.hidden;
        State {
            h: vec![T::ZERO; config.layers * batch * config.h_size()],
            c: vec![T::ZERO; if config.cell.keeps().cell_state { n } else { 0 }],
        }
    }

    /// Layer `k`'s part, with `bp = B * P` values of `h` and `bh = B * H` of `c` per layer.
    fn layer(&self, k: usize, bp: usize, bh: usize) -> StateIo<'_, T> {
        StateIo {
            h: &self.h[k * bp..(k + 1) * bp],
            c: if self.c.is_empty() {
                &[]
            } else {
                &self.c[k * bh..(k + 1) * bh]
            },
        }
    }
}

/// Per-step gradients recorded by backward: `dh[k]` (`[T, B, P]`) and `dc[k]` (`[T, B, H]`) for layer `k`
/// (`dc` only for the LSTM). They are the total derivatives `dL/dh_t`, `dL/dc_t`.
#[derive(Clone, Debug, Default)]
pub struct StepRecord<T> {
    pub dh: Vec<Vec<T>>,
    pub dc: Vec<Vec<T>>,
}

/// How the per-token losses `J_{t,b}` are weighted into the loss that backward differentiates.
pub enum LossWeights<'a, T> {
    /// `L = mean over all T * B tokens` (training).
    Mean,
    /// `L = sum_r w_r J_r` with `w` of length `T * B` (e.g. a single step `J^(i)`).
    PerToken(&'a [T]),
}

/// Buffers for one `(T, B)` shape, allocated once and reused every step.
#[derive(Default)]
pub struct Workspace<T> {
    dims: Option<(usize, usize)>,
    /// The model the buffers were sized for (sizes, dropout copies, token input all follow it).
    sized_for: Option<ModelConfig>,
    tokens: Vec<u32>,
    targets: Vec<u32>,
    /// Per layer `[T, B, in_k]`: the layer's input after dropout. Without dropout only layer 0
    /// has one (the embedding's output), and only when it does not read the tokens itself
    /// ([`ModelConfig::projects_tokens`]); layer `k > 0` reads layer `k - 1`'s outputs in its
    /// cache.
    layer_in: Vec<Vec<T>>,
    /// Per dropout site (layer inputs, then the decoder input) `[T, B, size]`; empty when off.
    masks: Vec<Vec<T>>,
    dropout_on: bool,
    pub caches: Vec<LayerCache<T>>,
    /// `[T, B, H]` decoder input after dropout; empty without dropout, when the decoder reads
    /// the top layer's outputs in its cache.
    top: Vec<T>,
    /// `[T * B, V]`: logits after forward, probabilities after `loss`, then logit gradients.
    pub logits: Vec<T>,
    /// `[T * B]` per-token losses `J_{t,b}` (time-major).
    pub step_loss: Vec<f64>,
    weights: Vec<T>,
    /// Per layer `[T, B, in_k]` gradient w.r.t. the layer input (empty for a layer 0 that reads
    /// tokens: its gradient goes straight to the embedding's).
    dlayer_in: Vec<Vec<T>>,
    /// Residual connections: per layer `[T, B, H]` `o^k = h^k + o^(k-1)` for `k >= 1` (empty
    /// otherwise), and backward's `dL/do^k` and the copy a layer's backward consumes.
    sums: Vec<Vec<T>>,
    d_sum: Vec<T>,
    d_up: Vec<T>,
    /// `[H, H]` `dL/dW_hh` of an orthogonal layer, before it is taken through `expm`.
    dw_hh: Vec<T>,
    /// Attention of the top layer: its forward values, and backward's `[T, B, H]` `dL/do`
    /// and the gradient it sends to the top layer's states (empty without attention).
    attention: attention::Cache<T>,
    d_att: Vec<T>,
    dh_att: Vec<T>,
    /// Whether `loss`/`loss_mse` has run since the last forward (backward needs it).
    loss_ready: bool,
    /// `[B, H]` scratch for `dL/dh_0`, `dL/dc_0` when the caller does not want them.
    dh0: Vec<T>,
    dc0: Vec<T>,
}

/// Input of layer `k`: the tokens `ids` through the `embedding` (layer 0 without a copy, see
/// [`ModelConfig::projects_tokens`]), else `[T, B, in_k]` from its own buffer `copy` (layer 0,
/// or any layer under dropout), else the outputs of layer `k - 1` in `below` (the caches of
/// layers `0..k`).
fn layer_input<'a, T: Float>(
    copy: &'a [T],
    ids: &'a [u32],
    embedding: &'a [T],
    below: &'a [LayerCache<T>],
    sums: &'a [Vec<T>],
    k: usize,
) -> Input<'a, T> {
    if k == 0 && copy.is_empty() {
        Input::Tokens { ids, embedding }
    } else if k == 0 || !copy.is_empty() {
        Input::Dense(copy)
    } else {
        Input::Dense(stack_output(below, sums, k - 1))
    }
}

/// What layer `k` hands up the stack, `[T, B, H]`: its outputs `h^k`, or with residual
/// connections `o^k = h^k + o^(k-1)` (held in `sums[k]` for `k >= 1`). `caches` holds layers
/// `0..=k`.
fn stack_output<'a, T: Float>(
    caches: &'a [LayerCache<T>],
    sums: &'a [Vec<T>],
    k: usize,
) -> &'a [T] {
    match sums.get(k) {
        Some(o) if !o.is_empty() => o,
        _ => caches[k].outputs(),
    }
}

/// Input of the decoder, `[T, B, H]`: the dropout copy `top`, else the attention's output
/// `attended` (empty without attention), else the top layer's output.
fn decoder_input<'a, T: Float>(
    top: &'a [T],
    attended: &'a [T],
    caches: &'a [LayerCache<T>],
    sums: &'a [Vec<T>],
) -> &'a [T] {
    if !top.is_empty() {
        top
    } else if !attended.is_empty() {
        attended
    } else {
        stack_output(caches, sums, caches.len() - 1)
    }
}

impl<T: Float> Workspace<T> {
    fn prepare(&mut self, c: &ModelConfig, steps: usize, batch: usize) {
        if self.dims == Some((steps, batch)) && self.sized_for.as_ref() == Some(c) {
            return;
        }
        let n = steps * batch;
        // Copies of the layers' outputs exist only for dropout to mask them (memory), and the
        // embedding's output only where layer 0 does not read the tokens itself.
        let copies = c.dropout > 0.0;
        let embedded = !c.projects_tokens(n);
        self.layer_in = (0..c.layers)
            .map(|k| {
                vec![
                    T::ZERO;
                    if (k == 0 && embedded) || (k > 0 && copies) {
                        n * c.layer_input(k)
                    } else {
                        0
                    }
                ]
            })
            .collect();
        self.dlayer_in = (0..c.layers)
            .map(|k| {
                vec![
                    T::ZERO;
                    if k > 0 || embedded {
                        n * c.layer_input(k)
                    } else {
                        0
                    }
                ]
            })
            .collect();
        self.caches = (0..c.layers).map(|_| LayerCache::default()).collect();
        self.masks = if c.dropout > 0.0 {
            (0..=c.layers)
                .map(|k| {
                    vec![
                        T::ZERO;
                        n * if k < c.layers {
                            c.layer_input(k)
                        } else {
                            c.h_size()
                        }
                    ]
                })
                .collect()
        } else {
            vec![Vec::new(); c.layers + 1]
        };
        self.top = vec![T::ZERO; if copies { n * c.h_size() } else { 0 }];
        let residual = |on: bool| vec![T::ZERO; if c.residual && on { n * c.h_size() } else { 0 }];
        self.sums = (0..c.layers).map(|k| residual(k > 0)).collect();
        self.d_sum = residual(true);
        self.d_up = residual(true);
        self.dw_hh = vec![
            T::ZERO;
            if c.recurrence == Recurrence::Orthogonal {
                c.hidden * c.hidden
            } else {
                0
            }
        ];
        let attended = vec![T::ZERO; if c.attention.is_on() { n * c.hidden } else { 0 }];
        self.attention = attention::Cache::default();
        self.d_att = attended.clone();
        self.dh_att = attended;
        self.logits = vec![T::ZERO; n * c.vocab];
        self.step_loss = vec![0.0; n];
        self.weights = vec![T::ZERO; n];
        self.dh0 = vec![T::ZERO; batch * c.h_size()];
        self.dc0 = vec![
            T::ZERO;
            if c.cell.keeps().cell_state {
                batch * c.hidden
            } else {
                0
            }
        ];
        self.dims = Some((steps, batch));
        self.sized_for = Some(c.clone());
    }

    /// `(T, B)` of the last forward pass.
    pub fn dims(&self) -> Option<(usize, usize)> {
        self.dims
    }

    /// The attention's forward values (weights, output) of the last forward pass.
    pub fn attention(&self) -> &attention::Cache<T> {
        &self.attention
    }

    /// Gradient w.r.t. the dense input `[T, B, input_size]` after backward (dense-input models).
    pub fn input_grad(&self) -> &[T] {
        self.dlayer_in.first().map_or(&[], |v| &v[..])
    }
}

/// A recurrent language model whose parameters live in one flat buffer.
///
/// The parameters are read with [`Self::params`] and changed only through
/// [`Self::params_mut`] or [`Self::set_params`], so that what is derived from them (the
/// orthogonal `W_hh = expm(A)` of each layer) can never be stale.
#[derive(Clone, Debug)]
pub struct LanguageModel<T> {
    pub config: ModelConfig,
    pub layout: ParamLayout,
    /// All parameters, laid out as `layout` says.
    params: Vec<T>,
    /// Per layer `[H, H]`: `W_hh` derived from the layer's parameters (orthogonal recurrence);
    /// empty for dense layers.
    derived: Vec<Vec<T>>,
    offsets: Offsets,
}

/// Mutable access to a model's parameters; when it goes out of scope the model re-derives
/// what depends on them.
pub struct ParamsMut<'a, T: Float> {
    model: &'a mut LanguageModel<T>,
}

impl<T: Float> std::ops::Deref for ParamsMut<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.model.params
    }
}

impl<T: Float> std::ops::DerefMut for ParamsMut<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.model.params
    }
}

impl<T: Float> Drop for ParamsMut<'_, T> {
    fn drop(&mut self) {
        self.model.derive();
    }
}

impl<T: Float> LanguageModel<T> {
    /// A model with all parameters zero (see [`crate::init`] to initialise it).
    pub fn zeros(config: ModelConfig) -> Result<Self> {
        config.validate()?;
        let (layout, offsets) = config.layout_and_offsets();
        let params = vec![T::ZERO; layout.total()];
        let mut m = LanguageModel {
            derived: vec![Vec::new(); config.layers],
            config,
            layout,
            params,
            offsets,
        };
        m.derive();
        Ok(m)
    }

    /// Checks tokens (and targets) `[T, B]` with `B = batch`, and an initial `state`, against
    /// this model (a token model whose vocabulary holds every id); returns `T`.
    pub fn check_inputs(
        &self,
        tokens: &[u32],
        targets: Option<&[u32]>,
        state: Option<&State<T>>,
        batch: usize,
    ) -> Result<usize> {
        let c = &self.config;
        if c.input_size != 0 {
            return Err(Error::Config(format!(
                "the model reads dense inputs (`input_size` = {}), not tokens: token input needs a model with a token embedding",
                c.input_size
            )));
        }
        if batch == 0 || tokens.is_empty() || !tokens.len().is_multiple_of(batch) {
            return Err(Error::Config(format!(
                "tokens ({}) must be a non-empty [T, B] block with B = {batch}",
                tokens.len()
            )));
        }
        let targets = targets.unwrap_or(tokens);
        if targets.len() != tokens.len() {
            return Err(Error::Config(format!(
                "targets ({}) must have the shape of tokens ({})",
                targets.len(),
                tokens.len()
            )));
        }
        if let Some(&bad) = tokens
            .iter()
            .chain(targets)
            .find(|&&x| x as usize >= c.vocab)
        {
            return Err(Error::Data(format!(
                "token {bad} is outside the model's vocabulary of {}",
                c.vocab
            )));
        }
        if let Some(s) = state {
            let n = c.layers * batch * c.h_size();
            let nc = if c.cell.keeps().cell_state {
                c.layers * batch * c.hidden
            } else {
                0
            };
            if s.h.len() != n || s.c.len() != nc {
                return Err(Error::Config(format!(
                    "state has {} + {} values; this model with batch {batch} needs {n} + {nc}",
                    s.h.len(),
                    s.c.len()
                )));
            }
        }
        Ok(tokens.len() / batch)
    }

    /// All parameters, laid out as `layout` says.
    pub fn params(&self) -> &[T] {
        &self.params
    }

    /// The parameters, to change them in place (see [`ParamsMut`]).
    pub fn params_mut(&mut self) -> ParamsMut<'_, T> {
        ParamsMut { model: self }
    }

    /// Replaces every parameter (`src` has the layout's length).
    pub fn set_params(&mut self, src: &[T]) {
        self.params_mut().copy_from_slice(src);
    }

    /// Recomputes each orthogonal layer's `W_hh = expm(A)` from its parameter, in f64. A
    /// generator that is not finite gives a `W_hh` of NaN, which the first loss reports.
    fn derive(&mut self) {
        if self.config.recurrence != Recurrence::Orthogonal {
            return;
        }
        let h = self.config.hidden;
        for k in 0..self.config.layers {
            let e = self
                .layout
                .get(&self.config.recurrent_param(k))
                .expect("the layout has every layer");
            let p: Vec<f64> = self.params[e.range()].iter().map(|v| v.to_f64()).collect();
            let w = orthogonal::weight(&p, h).unwrap_or_else(|_| vec![f64::NAN; h * h]);
            self.derived[k] = w.iter().map(|&v| T::from_f64(v)).collect();
        }
    }

    /// The parameters of layer `k`, with `w_hh` the recurrent weight the cell multiplies by
    /// (derived for orthogonal recurrence).
    pub fn layer_params(&self, k: usize) -> LayerParams<'_, T> {
        let c = &self.config;
        let mut p = LayerParams::split(
            &self.params[self.offsets.layers[k].clone()],
            c.cell.gates() * c.hidden,
            c.layer_input(k),
            c.hidden,
            c.proj_size,
        );
        if !self.derived[k].is_empty() {
            p.w_hh = &self.derived[k];
        }
        p
    }

    /// The attention's parameters (empty views without attention).
    pub fn attention_params(&self) -> attention::Params<'_, T> {
        attention::Params::split(
            self.config.attention,
            &self.params[self.offsets.attention.clone()],
            self.config.hidden,
        )
    }

    /// Adds `dL/dP = L(-A, G)` (see [`crate::cell::orthogonal`]) of orthogonal layer `k` into
    /// its generator's slot of `grads`, from `G = dL/dW_hh [H, H]`.
    fn add_generator_grad(&self, k: usize, g: &[T], grads: &mut [T]) -> Result<()> {
        let h = self.config.hidden;
        let e = self
            .layout
            .get(&self.config.recurrent_param(k))
            .expect("the layout has every layer");
        let p: Vec<f64> = self.params[e.range()].iter().map(|v| v.to_f64()).collect();
        let g: Vec<f64> = g.iter().map(|v| v.to_f64()).collect();
        let dp = orthogonal::parameter_grad(&p, &g, h)?;
        for (d, v) in grads[e.range()].iter_mut().zip(dp) {
            *d += T::from_f64(v);
        }
        Ok(())
    }

    /// Forward pass over `tokens [T, B]` (time-major) from `state`, leaving the logits in
    /// `ws.logits`. `dropout_rng` switches training-mode dropout on. Call [`Self::loss`] for
    /// the cross-entropy, or read the logits.
    pub fn forward(
        &self,
        ws: &mut Workspace<T>,
        tokens: &[u32],
        state: &State<T>,
        steps: usize,
        batch: usize,
        dropout_rng: Option<&mut StdRng>,
    ) {
        let c = &self.config;
        assert_eq!(
            c.input_size, 0,
            "forward reads tokens: use forward_dense for dense input"
        );
        assert_eq!(tokens.len(), steps * batch, "tokens must be [T, B]");
        self.begin(ws, steps, batch, dropout_rng);
        ws.tokens.clear();
        ws.tokens.extend_from_slice(tokens);
        if !ws.layer_in[0].is_empty() {
            let table = &self.params[self.offsets.embedding.clone()];
            layers::embedding_forward(&mut ws.layer_in[0], table, tokens, c.embedding);
        }
        self.forward_layers(ws, state, steps, batch, &Memory::default());
    }

    /// Sampling with attention: [`Self::forward`] (no dropout) with attention also reading
    /// the earlier top-layer states in `memory` (empty at the start of a sequence), to which
    /// this window's states are then appended. Without attention it is [`Self::forward`].
    /// The result is for reading the logits: it cannot be differentiated.
    pub fn forward_remembering(
        &self,
        ws: &mut Workspace<T>,
        tokens: &[u32],
        state: &State<T>,
        steps: usize,
        batch: usize,
        memory: &mut Memory<T>,
    ) {
        let c = &self.config;
        if !c.attention.is_on() {
            return self.forward(ws, tokens, state, steps, batch, None);
        }
        assert_eq!(c.input_size, 0, "forward_remembering reads tokens");
        assert_eq!(tokens.len(), steps * batch, "tokens must be [T, B]");
        self.begin(ws, steps, batch, None);
        ws.tokens.clear();
        ws.tokens.extend_from_slice(tokens);
        if !ws.layer_in[0].is_empty() {
            let table = &self.params[self.offsets.embedding.clone()];
            layers::embedding_forward(&mut ws.layer_in[0], table, tokens, c.embedding);
        }
        self.forward_layers(ws, state, steps, batch, memory);
        attention::remember(&ws.attention, memory, c.attention_span);
    }

    /// Forward pass over dense inputs `x [T, B, input_size]` (a model with `input_size > 0`).
    pub fn forward_dense(
        &self,
        ws: &mut Workspace<T>,
        x: &[T],
        state: &State<T>,
        steps: usize,
        batch: usize,
        dropout_rng: Option<&mut StdRng>,
    ) {
        let c = &self.config;
        assert!(
            c.input_size > 0,
            "forward_dense needs a model with input_size > 0"
        );
        assert_eq!(
            x.len(),
            steps * batch * c.input_size,
            "x must be [T, B, input_size]"
        );
        self.begin(ws, steps, batch, dropout_rng);
        ws.layer_in[0].copy_from_slice(x);
        self.forward_layers(ws, state, steps, batch, &Memory::default());
    }

    /// Sizes the workspace and draws this pass's dropout masks.
    fn begin(
        &self,
        ws: &mut Workspace<T>,
        steps: usize,
        batch: usize,
        dropout_rng: Option<&mut StdRng>,
    ) {
        let c = &self.config;
        ws.prepare(c, steps, batch);
        ws.loss_ready = false;
        ws.dropout_on = c.dropout > 0.0 && dropout_rng.is_some();
        if let Some(rng) = dropout_rng.filter(|_| ws.dropout_on) {
            for m in ws.masks.iter_mut() {
                layers::dropout_mask(m, c.dropout, rng);
            }
        }
    }

    /// Runs the cell stack, the attention (reading `memory` before the window) and the
    /// decoder on `ws.layer_in[0]`.
    fn forward_layers(
        &self,
        ws: &mut Workspace<T>,
        state: &State<T>,
        steps: usize,
        batch: usize,
        memory: &Memory<T>,
    ) {
        let c = &self.config;
        let (bp, bh) = (batch * c.h_size(), batch * c.hidden);
        for k in 0..c.layers {
            if ws.dropout_on {
                layers::apply_mask(&mut ws.layer_in[k], &ws.masks[k]);
            }
            let dims = c.dims(k, steps, batch);
            let (below, cache) = ws.caches.split_at_mut(k);
            cell::forward(
                c.cell(),
                &mut cache[0],
                layer_input(
                    &ws.layer_in[k],
                    &ws.tokens,
                    &self.params[self.offsets.embedding.clone()],
                    below,
                    &ws.sums,
                    k,
                ),
                state.layer(k, bp, bh),
                self.layer_params(k),
                dims,
            );
            if c.residual && k > 0 {
                // o^k = h^k + o^(k-1)
                let (done, this) = ws.sums.split_at_mut(k);
                this[0].copy_from_slice(ws.caches[k].outputs());
                add_assign(&mut this[0], stack_output(&ws.caches, done, k - 1));
            }
            // With dropout, the next layer (or the decoder) reads a copy that its mask scales.
            // With attention, the decoder's copy is of the attention's output (below).
            let next = if k + 1 < c.layers {
                Some(&mut ws.layer_in[k + 1])
            } else if c.attention.is_on() {
                None
            } else {
                Some(&mut ws.top)
            };
            if let Some(next) = next.filter(|n| !n.is_empty()) {
                next.copy_from_slice(stack_output(&ws.caches, &ws.sums, k));
            }
        }
        if c.attention.is_on() {
            attention::forward(
                c.attention,
                c.attention_span,
                &mut ws.attention,
                stack_output(&ws.caches, &ws.sums, c.layers - 1),
                memory,
                &self.attention_params(),
                steps,
                batch,
                c.hidden,
            );
            if !ws.top.is_empty() {
                ws.top.copy_from_slice(ws.attention.output());
            }
        }
        if ws.dropout_on {
            layers::apply_mask(&mut ws.top, &ws.masks[c.layers]);
        }
        // z = top W_dec^T + b_dec   ([T*B, P] x [V, P]^T)
        let n = steps * batch;
        matmul(
            &mut ws.logits,
            decoder_input(&ws.top, ws.attention.output(), &ws.caches, &ws.sums),
            Trans::No,
            &self.params[self.offsets.decoder_w.clone()],
            Trans::Yes,
            n,
            c.vocab,
            c.h_size(),
            false,
        );
        crate::tensor::add_row_bias(&mut ws.logits, &self.params[self.offsets.decoder_b.clone()]);
    }

    /// Cross-entropy of the last forward's logits against `targets [T, B]`: fills
    /// `ws.step_loss` and returns the mean. Overwrites the logits with probabilities.
    pub fn loss(&self, ws: &mut Workspace<T>, targets: &[u32]) -> f64 {
        assert_eq!(
            self.config.output,
            Output::Softmax,
            "loss is for a softmax head: use loss_mse"
        );
        assert_eq!(targets.len(), ws.step_loss.len(), "targets must be [T, B]");
        ws.targets.clear();
        ws.targets.extend_from_slice(targets);
        layers::softmax_cross_entropy(
            &mut ws.logits,
            targets,
            &mut ws.step_loss,
            self.config.vocab,
        );
        ws.loss_ready = true;
        ws.step_loss.iter().sum::<f64>() / ws.step_loss.len() as f64
    }

    /// Squared error of the last forward's outputs against `targets [T, B, vocab]`:
    /// `J_r = sum_k (z_rk - y_rk)^2` into `ws.step_loss`; returns the mean over rows. Overwrites
    /// the outputs with the residuals `z - y` (what backward needs).
    pub fn loss_mse(&self, ws: &mut Workspace<T>, targets: &[T]) -> f64 {
        let v = self.config.vocab;
        assert_eq!(
            self.config.output,
            Output::Mse,
            "loss_mse is for an mse head: use loss"
        );
        assert_eq!(
            targets.len(),
            ws.step_loss.len() * v,
            "targets must be [T, B, vocab]"
        );
        for ((z, y), loss) in ws
            .logits
            .chunks_exact_mut(v)
            .zip(targets.chunks_exact(v))
            .zip(ws.step_loss.iter_mut())
        {
            *loss = 0.0;
            for (z, &y) in z.iter_mut().zip(y) {
                *z -= y;
                *loss += z.to_f64() * z.to_f64();
            }
        }
        ws.loss_ready = true;
        ws.step_loss.iter().sum::<f64>() / ws.step_loss.len() as f64
    }

    /// Final state after the last forward pass (for carrying into the next window).
    pub fn final_state(&self, ws: &Workspace<T>, out: &mut State<T>) {
        let (steps, batch) = ws.dims.expect("forward has run");
        let (bp, bh) = (batch * self.config.h_size(), batch * self.config.hidden);
        for (k, cache) in ws.caches.iter().enumerate() {
            out.h[k * bp..(k + 1) * bp].copy_from_slice(cache.h_at(steps));
            if !out.c.is_empty() {
                out.c[k * bh..(k + 1) * bh].copy_from_slice(cache.c_at(steps));
            }
        }
    }

    /// Backward pass after [`Self::forward`] and [`Self::loss`] (it consumes them: the
    /// probabilities become logit gradients and the gates their gradients, so each backward
    /// needs its own forward and loss; without them it is an error and nothing changes):
    /// accumulates `dL/dparams` into `grads` (this model's layout), writes `dL/d state_0` into
    /// `dstate` when given, and the per-step `dL/dh_t` (and `dL/dc_t`) into `record` when given.
    pub fn backward(
        &self,
        ws: &mut Workspace<T>,
        grads: &mut [T],
        weights: LossWeights<T>,
        dstate: Option<&mut State<T>>,
        mut record: Option<&mut StepRecord<T>>,
    ) -> Result<()> {
        let c = &self.config;
        let (steps, batch) = match (ws.dims, ws.loss_ready) {
            (Some(d), true) => d,
            _ => {
                return Err(Error::Usage(
                    "backward needs a forward pass and a loss on this workspace first (each backward consumes its forward)".into(),
                ))
            }
        };
        ws.loss_ready = false;
        let n = steps * batch;
        assert_eq!(
            grads.len(),
            self.layout.total(),
            "grads must have the model's layout"
        );
        match weights {
            LossWeights::Mean => ws.weights.fill(T::from_f64(1.0 / n as f64)),
            LossWeights::PerToken(w) => ws.weights.copy_from_slice(w),
        }
        match c.output {
            Output::Softmax => layers::softmax_cross_entropy_backward(
                &mut ws.logits,
                &ws.targets,
                &ws.weights,
                c.vocab,
            ),
            // dJ/dz = 2 (z - y), the residual left by `loss_mse`.
            Output::Mse => {
                for (row, &w) in ws.logits.chunks_exact_mut(c.vocab).zip(&ws.weights) {
                    for v in row.iter_mut() {
                        *v *= T::from_f64(2.0) * w;
                    }
                }
            }
        }
        // dW_dec += dz^T top;  db_dec += sum dz
        matmul(
            &mut grads[self.offsets.decoder_w.clone()],
            &ws.logits,
            Trans::Yes,
            decoder_input(&ws.top, ws.attention.output(), &ws.caches, &ws.sums),
            Trans::No,
            c.vocab,
            c.h_size(),
            n,
            true,
        );
        sum_rows_into(&mut grads[self.offsets.decoder_b.clone()], &ws.logits);
        // dL/dh of the top layer, a chunk of steps at a time as its backward reaches them:
        // dz W_dec  ([rows, V] x [V, P]), times the decoder's dropout mask.
        let (dz, w_dec) = (&ws.logits, &self.params[self.offsets.decoder_w.clone()]);
        let top_mask = if ws.dropout_on {
            &ws.masks[c.layers][..]
        } else {
            &[]
        };
        let mut top_grad = |steps: Range<usize>, out: &mut [T]| {
            let rows = steps.start * batch..steps.end * batch;
            let dz = &dz[rows.start * c.vocab..rows.end * c.vocab];
            matmul(
                out,
                dz,
                Trans::No,
                w_dec,
                Trans::No,
                rows.len(),
                c.h_size(),
                c.vocab,
                false,
            );
            if !top_mask.is_empty() {
                let hs = c.h_size();
                layers::apply_mask(out, &top_mask[rows.start * hs..rows.end * hs]);
            }
        };
        if let Some(rec) = record.as_deref_mut() {
            rec.dh.resize(c.layers, Vec::new());
            rec.dc.resize(
                if c.cell.keeps().cell_state {
                    c.layers
                } else {
                    0
                },
                Vec::new(),
            );
            for v in rec.dh.iter_mut() {
                v.resize(n * c.h_size(), T::ZERO);
            }
            for v in rec.dc.iter_mut() {
                v.resize(n * c.hidden, T::ZERO);
            }
        }
        let (bp, bh) = (batch * c.h_size(), batch * c.hidden);
        let mut dstate = dstate;
        if c.attention.is_on() {
            // dL/do (attention output), whole, then through attention to the top layer.
            top_grad(0..steps, &mut ws.d_att);
            attention::backward(
                c.attention,
                &mut ws.attention,
                &mut ws.d_att,
                &mut ws.dh_att,
                &self.attention_params(),
                attention::Grads::split(
                    c.attention,
                    &mut grads[self.offsets.attention.clone()],
                    c.hidden,
                ),
            );
        }
        if c.residual {
            // dL/do^(L-1), whole: it also travels down the skip connections.
            if c.attention.is_on() {
                ws.d_sum.copy_from_slice(&ws.dh_att);
            } else {
                top_grad(0..steps, &mut ws.d_sum);
            }
        }
        for k in (0..c.layers).rev() {
            let dims_in = c.layer_input(k);
            // The gradient reaching this layer's outputs: the decoder's for the top layer, else
            // the next layer's input gradient (already multiplied by its dropout mask); with
            // residual connections dL/do^k, of which the layer consumes a copy.
            let (below, above) = ws.dlayer_in.split_at_mut(k + 1);
            let upstream = if c.residual {
                ws.d_up.copy_from_slice(&ws.d_sum);
                Upstream::Whole(&mut ws.d_up)
            } else if k + 1 == c.layers && c.attention.is_on() {
                Upstream::Whole(&mut ws.dh_att)
            } else if k + 1 == c.layers {
                Upstream::Chunked(&mut top_grad)
            } else {
                Upstream::Whole(&mut above[0])
            };
            let (d0h, d0c): (&mut [T], &mut [T]) = match dstate.as_deref_mut() {
                Some(s) => (
                    &mut s.h[k * bp..(k + 1) * bp],
                    if s.c.is_empty() {
                        &mut []
                    } else {
                        &mut s.c[k * bh..(k + 1) * bh]
                    },
                ),
                None => (&mut ws.dh0[..], &mut ws.dc0[..]),
            };
            let step_grads = record.as_deref_mut().map(|r| StepGrads {
                dh: &mut r.dh[k][..],
                dc: r.dc.get_mut(k).map(|v| &mut v[..]),
            });
            let (below_caches, cache) = ws.caches.split_at_mut(k);
            let input = layer_input(
                &ws.layer_in[k],
                &ws.tokens,
                &self.params[self.offsets.embedding.clone()],
                below_caches,
                &ws.sums,
                k,
            );
            // The embedding comes before the layers in the buffer; a token-reading layer 0
            // accumulates its gradient there directly.
            let (head, tail) = grads.split_at_mut(self.offsets.layers[k].start);
            let layer = &mut tail[..self.offsets.layers[k].len()];
            let dx = &mut below[k];
            let dx_out = match input {
                Input::Tokens { .. } => &mut head[self.offsets.embedding.clone()],
                Input::Dense(_) => &mut dx[..],
            };
            let mut g = LayerGrads::split(
                layer,
                c.cell.gates() * c.hidden,
                dims_in,
                c.hidden,
                c.proj_size,
            );
            let orthogonal = !ws.dw_hh.is_empty();
            if orthogonal {
                // dL/dW_hh first, then through expm into the generator's gradient (below).
                ws.dw_hh.fill(T::ZERO);
                g.w_hh = &mut ws.dw_hh;
            }
            cell::backward(
                c.cell(),
                BackwardOut {
                    dx: Some(dx_out),
                    dh0: d0h,
                    dc0: d0c,
                },
                g,
                &mut cache[0],
                upstream,
                input,
                self.layer_params(k),
                step_grads,
            )?;
            if orthogonal {
                self.add_generator_grad(k, &ws.dw_hh, grads)?;
            }
            if ws.dropout_on {
                layers::apply_mask(dx, &ws.masks[k]);
            }
            if c.residual && k > 0 {
                // dL/do^(k-1) = dL/do^k (the skip) + the input gradient of layer k
                add_assign(&mut ws.d_sum, &ws.dlayer_in[k]);
            }
        }
        if !ws.dlayer_in[0].is_empty() && c.input_size == 0 {
            layers::embedding_backward(
                &mut grads[self.offsets.embedding.clone()],
                &ws.dlayer_in[0],
                &ws.tokens,
                c.embedding,
            );
        }
        Ok(())
    }
}
