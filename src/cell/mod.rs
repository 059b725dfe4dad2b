//! Recurrent cells: one file per cell with all of its math, and the passes over a whole
//! sequence that drive them.
//!
//! Every cell follows the PyTorch definitions (`torch.nn.RNN`, `torch.nn.LSTM`, `torch.nn.GRU`);
//! parameters of one layer are `W_ih [G*H, in]`, `W_hh [G*H, H]`, `b_ih [G*H]`, `b_hh [G*H]`
//! with `G` gate blocks. Activations are time-major `[T][B][H]`. An LSTM with a projection
//! (`proj_size = P`, see [`Dims::proj`]) has `h` of size `P`: `W_hh [4H, P]`, `W_hr [P, H]`,
//! and `h` buffers `[T][B][P]` (the cell state stays `[T][B][H]`).
//!
//! A cell ([`StepMath`]) says how one time step goes forward and backward for a block of batch
//! rows; this module runs those steps over time and batch ([`forward`], [`backward`]), and the
//! analysis calls the same backward step for its vector-Jacobian products ([`StepVjp`]), so each
//! cell's derivative is written exactly once. The input projection `X W_ih^T` for all time
//! steps is one GEMM (or, for token input, one GEMM over the vocabulary and a row lookup, see
//! [`Input::Tokens`]), the weight gradients are one GEMM each over all time steps (or over
//! chunks of a few hundred rows, see [`Upstream::Chunked`]); only the recurrent products
//! `h_{t-1} W_hh^T` and `da_t W_hh` run step by step.
//!
//! # Adding a cell
//! Write `src/cell/NAME.rs` with a type implementing [`StepMath`] (forward step, backward step,
//! and where it differs from the default, its recurrent weight gradients), declare the module
//! below and add one line to the `cells!` registry. Every pass, the gradient-flow analysis, the
//! parameter layout and the checkpoint names follow from the registry.

mod gru;
mod lstm;
pub mod orthogonal;
mod rnn;

pub use orthogonal::Recurrence;
pub use rnn::Activation;

use crate::error::{Error, Result};
use crate::tensor::{
    add_assign, for_each_row_block, matmul, matmul_on, resize, sum_rows_into, Float, PackedRhs,
    Rows, RowsMut, Trans,
};
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Declares the cells: the [`CellKind`] enum with its names, and `with_cell!`, which runs a
/// generic body with the cell's [`StepMath`] type (static dispatch: each pass is compiled once
/// per cell). The leading `$` is passed in so that the generated macro can have arguments.
macro_rules! cells {
    ($d:tt $($(#[$doc:meta])* $variant:ident = $name:literal => $ty:ty),+ $(,)?) => {
        /// Which recurrent cell a layer uses.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
        #[serde(rename_all = "lowercase")]
        pub enum CellKind {
            $($(#[$doc])* $variant,)+
        }

        impl CellKind {
            /// Every cell, in registry order.
            pub const ALL: &'static [CellKind] = &[$(CellKind::$variant),+];

            /// Number of gate blocks `G` stacked in the weight rows.
            pub fn gates(self) -> usize {
                match self {
                    $(CellKind::$variant => <$ty as StepMath>::GATES,)+
                }
            }

            /// Names of the gate blocks, in weight-row order.
            pub fn gate_names(self) -> &'static [&'static str] {
                match self {
                    $(CellKind::$variant => <$ty as StepMath>::GATE_NAMES,)+
                }
            }

            /// What the cell keeps per step for backward.
            pub fn keeps(self) -> Keeps {
                match self {
                    $(CellKind::$variant => <$ty as StepMath>::KEEPS,)+
                }
            }

            pub fn name(self) -> &'static str {
                match self {
                    $(CellKind::$variant => $name,)+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($name => Some(CellKind::$variant),)+
                    _ => None,
                }
            }
        }

        /// `with_cell!(cell, |c| body)`: `body` with `c` the [`StepMath`] value of `cell`.
        macro_rules! with_cell {
            ($d cell:expr, |$d c:ident| $d body:expr) => {{
                let cell: $crate::cell::Cell = $d cell;
                match cell.kind {
                    $($crate::cell::CellKind::$variant => {
                        let $d c = <$ty as $crate::cell::StepMath>::new(cell);
                        $d body
                    })+
                }
            }};
        }
    };
}

cells! { $
    /// Elman RNN `h_t = s(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)`.
    Rnn = "rnn" => rnn::Rnn,
    /// LSTM, gates `i, f, g, o` (Hochreiter and Schmidhuber 1997, as `torch.nn.LSTM`).
    Lstm = "lstm" => lstm::Lstm,
    /// GRU, gates `r, z, n`, reset after the matmul (Cho et al. 2014, as `torch.nn.GRU`).
    Gru = "gru" => gru::Gru,
}

/// What `cell` keeps per step for its backward step with sizes `dims`: the cell's own
/// [`StepMath::KEEPS`], and with a projection (`dims.proj > 0`) also `aux` (the LSTM's
/// `m_t = o * tanh(c_t)`, which `dW_hr` needs) and `scratch` (its `dm_t`).
fn keeps(cell: Cell, dims: Dims) -> Keeps {
    let mut k = cell.kind.keeps();
    if dims.proj > 0 {
        k.aux = true;
        k.scratch = true;
    }
    k
}

/// What a cell keeps per step for its backward step, besides `h_0..h_T`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keeps {
    /// `c_0..c_T` `[(T+1), B, H]` (LSTM).
    pub cell_state: bool,
    /// The activated gates `[T, B, G*H]`. Without them the input projection is written into
    /// `h_1..h_T` (the RNN's pre-activations), and the pre-activation gradients over the
    /// upstream gradient; with them both go into the gates.
    pub gates: bool,
    /// One more `[T, B, H]` per-step value (GRU: `W_hn h_{t-1} + b_hn`).
    pub aux: bool,
    /// A `[B, G*H]` scratch for the step in flight (GRU: the recurrent pre-activations in
    /// forward, the recurrent-side gradient in backward).
    pub scratch: bool,
    /// Whether the input projection adds `b_hh` too (GRU: no, `b_hn` sits inside `r * (..)`).
    pub input_has_b_hh: bool,
}

/// One step of a cell for a block of `R` batch rows, forward: every buffer holds this step's
/// rows only. Buffers a cell does not keep (see [`Keeps`]) are empty.
pub struct ForwardStep<'a, T> {
    /// `H`.
    pub hidden: usize,
    /// `[R, G*H]`: the input side `x_t W_ih^T + b_ih (+ b_hh)` on entry, the kept gate values
    /// on exit.
    pub gates: &'a mut [T],
    /// `[R, P]` `h_{t-1}` (`P = H` without a projection).
    pub h_prev: &'a [T],
    /// `[R, P]` `h_t` on exit (without gates: the input side on entry).
    pub h: &'a mut [T],
    /// `[R, H]` `c_{t-1}` and `c_t`.
    pub c_prev: &'a [T],
    pub c: &'a mut [T],
    /// `[R, H]` the cell's extra per-step value.
    pub aux: &'a mut [T],
    /// `[R, G*H]` scratch.
    pub scratch: &'a mut [T],
}

/// One step of a cell for a block of `R` rows, backward. Each row is one gradient travelling
/// back; its forward values (`gates`, `h_prev`, ..., as [`ForwardStep`] left them) are the
/// values of the batch element it belongs to.
pub struct BackwardStep<'a, T> {
    /// `H`.
    pub hidden: usize,
    /// `[P, H]` the LSTM's projection `W_hr`; empty without one.
    pub w_hr: &'a [T],
    /// `[R, P]` the gradient reaching `h_t` from outside the recurrence (the layer's output).
    /// Without kept gates: the pre-activation gradient `da_t` on exit; with a projection: the
    /// total `dL/dh_t` on exit.
    pub up: &'a mut [T],
    /// `[R, G*H]` the gate values on entry; the pre-activation gradient `da_t` on exit.
    pub gates: &'a mut [T],
    pub h_prev: &'a [T],
    pub h: &'a [T],
    pub c_prev: &'a [T],
    pub c: &'a [T],
    /// `[R, H]` the extra per-step value on entry; the cell may overwrite it (GRU: with the
    /// part of the recurrent-side gradient that differs from `da`).
    pub aux: &'a mut [T],
    /// `[R, G*H]` scratch.
    pub scratch: &'a mut [T],
    /// `[R, P]` the gradient reaching `h_t` from step `t + 1` on entry; `dL/dh_{t-1}` through
    /// this step on exit.
    pub dh: &'a mut [T],
    /// `[R, H]` the same for the cell state (LSTM).
    pub dc: &'a mut [T],
    /// When given, `[R, P]` receives the total `dL/dh_t` (and `[R, H]` `dL/dc_t`).
    pub record_dh: Option<&'a mut [T]>,
    pub record_dc: Option<&'a mut [T]>,
}

/// The math of one recurrent cell, one time step at a time over a block of batch rows.
///
/// The backward step is the vector-Jacobian product of the step: with `up = 0` it maps a row
/// `g = (dh, dc)` to `g J_t`, where `J_t = d state_t / d state_{t-1}` with the input held
/// fixed. Training, the batched gradient-flow sweep and the Jacobian analysis all call it.
pub trait StepMath: Copy + Send + Sync {
    /// Gate blocks `G`.
    const GATES: usize;
    /// The gate blocks' names in weight-row order (`G` of them).
    const GATE_NAMES: &'static [&'static str];
    /// What the cell keeps per step.
    const KEEPS: Keeps;
    fn new(cell: Cell) -> Self;
    /// `h_t` (and `c_t`) from `h_{t-1}` and the step's input side; `w_hh` is `W_hh^T`
    /// (`[H, G*H]`); `p` gives the biases and the cell's extra parameters.
    fn forward_step<T: Float>(
        self,
        s: ForwardStep<'_, T>,
        w_hh: Recurrent<'_, T>,
        p: &LayerParams<'_, T>,
    );
    /// The pre-activation gradient of the step and the gradient to `h_{t-1}` (and `c_{t-1}`);
    /// `w_hh` is `W_hh` (`[G*H, H]`).
    fn backward_step<T: Float>(self, s: BackwardStep<'_, T>, w_hh: Recurrent<'_, T>);
    /// The name of a per-unit `[H]` parameter the cell has besides the four of `torch.nn`
    /// (stored per layer as `rnn.NAME_l{k}`), if any.
    fn extra_param(self) -> Option<&'static str> {
        None
    }
    /// The recurrent-side parameter gradients of a chunk of rows after backward walked it: by
    /// default [`dense_recurrent_grads`].
    fn recurrent_grads<T: Float>(self, g: &mut LayerGrads<'_, T>, v: ChunkValues<'_, T>) {
        dense_recurrent_grads(g, &v);
    }
}

/// `dW_hh += dA^T H_prev` (`[G*H, rows] x [rows, P]`), `db_hh += sum dA`.
pub fn dense_recurrent_grads<T: Float>(g: &mut LayerGrads<'_, T>, v: &ChunkValues<'_, T>) {
    let gh = g.b_hh.len();
    let rows = v.da.len() / gh;
    matmul(
        &mut *g.w_hh,
        v.da,
        Trans::Yes,
        v.h_prev,
        Trans::No,
        gh,
        v.h_prev.len() / rows.max(1),
        rows,
        true,
    );
    sum_rows_into(&mut *g.b_hh, v.da);
}

/// What backward leaves for the parameter gradients of a chunk of `rows` rows (time-major
/// `[steps, B]` rows of one chunk).
pub struct ChunkValues<'a, T> {
    /// `[rows, G*H]` the input-side pre-activation gradients.
    pub da: &'a [T],
    /// `[rows, H]` the cell's `aux` values as backward left them (empty if it keeps none).
    pub aux: &'a [T],
    /// `[rows, P]` the upstream gradients as backward left them (with a projection: the total
    /// `dL/dh_t`).
    pub up: &'a [T],
    /// `[rows, P]` `h_{t-1}` and `h_t` of every row.
    pub h_prev: &'a [T],
    pub h: &'a [T],
    pub hidden: usize,
}

/// A cell type with its activation (the activation matters only for the vanilla RNN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    pub kind: CellKind,
    pub activation: Activation,
}

impl Cell {
    /// The name of the cell's per-unit extra parameter, if it has one (see
    /// [`StepMath::extra_param`]).
    pub fn extra_param(self) -> Option<&'static str> {
        with_cell!(self, |c| c.extra_param())
    }
}

/// Sizes of one layer's pass: `steps` = T, `batch` = B, `input` = in, `hidden` = H.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub steps: usize,
    pub batch: usize,
    pub input: usize,
    pub hidden: usize,
    /// The LSTM's projection size `P` (`torch.nn.LSTM(proj_size = P)`), 0 for none.
    pub proj: usize,
}

impl Dims {
    /// Size of `h`: `P` with a projection, else `H`.
    pub fn h_size(&self) -> usize {
        if self.proj > 0 {
            self.proj
        } else {
            self.hidden
        }
    }
}

/// Borrowed parameters of one layer.
#[derive(Clone, Copy)]
pub struct LayerParams<'a, T> {
    /// `[G*H, in]`
    pub w_ih: &'a [T],
    /// `[G*H, P]` (`P = H` without a projection)
    pub w_hh: &'a [T],
    /// `[G*H]`
    pub b_ih: &'a [T],
    /// `[G*H]`
    pub b_hh: &'a [T],
    /// `[H]` the cell's extra parameter ([`StepMath::extra_param`]), else empty.
    pub extra: &'a [T],
    /// `[P, H]` the LSTM's projection `W_hr`, else empty.
    pub w_hr: &'a [T],
}

impl<'a, T: Float> LayerParams<'a, T> {
    /// Splits one layer's contiguous block `[w_ih | w_hh | b_ih | b_hh | extra | w_hr]`
    /// (`extra` is `[H]` when the cell has one, `w_hr` is `[P, H]` when `proj > 0`).
    pub fn split(block: &'a [T], gh: usize, input: usize, hidden: usize, proj: usize) -> Self {
        let hs = if proj > 0 { proj } else { hidden };
        let (w_ih, rest) = block.split_at(gh * input);
        let (w_hh, rest) = rest.split_at(gh * hs);
        let (b_ih, rest) = rest.split_at(gh);
        let (b_hh, rest) = rest.split_at(gh);
        let (extra, w_hr) = rest.split_at(rest.len() - proj * hidden);
        LayerParams {
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            extra,
            w_hr,
        }
    }
}

/// Mutable gradients of one layer, same layout as [`LayerParams`].
pub struct LayerGrads<'a, T> {
    pub w_ih: &'a mut [T],
    pub w_hh: &'a mut [T],
    pub b_ih: &'a mut [T],
    pub b_hh: &'a mut [T],
    pub extra: &'a mut [T],
    pub w_hr: &'a mut [T],
}

impl<'a, T: Float> LayerGrads<'a, T> {
    pub fn split(block: &'a mut [T], gh: usize, input: usize, hidden: usize, proj: usize) -> Self {
        let hs = if proj > 0 { proj } else { hidden };
        let (w_ih, rest) = block.split_at_mut(gh * input);
        let (w_hh, rest) = rest.split_at_mut(gh * hs);
        let (b_ih, rest) = rest.split_at_mut(gh);
        let (b_hh, rest) = rest.split_at_mut(gh);
        let at = rest.len() - proj * hidden;
        let (extra, w_hr) = rest.split_at_mut(at);
        LayerGrads {
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            extra,
            w_hr,
        }
    }
}

/// Where a [`LayerCache`] stands: its gate values are overwritten by backward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Phase {
    #[default]
    Empty,
    /// Forward has run: every buffer holds forward values.
    Forward,
    /// Backward has run: the gates (and the GRU's `aux`) hold gradients now.
    Backward,
}

/// What forward keeps for backward, and backward's scratch, sized once per shape.
///
/// ```text
/// h      [(T+1), B, P]   h[0] = initial state, h[t+1] = h_t  (P = H without a projection)
/// c      [(T+1), B, H]   LSTM cell states, same indexing
/// gates  [T, B, G*H]     activated gates (LSTM: i f g o; GRU: r z n); empty for the RNN
/// aux    [T, B, H]       GRU: W_hn h_{t-1} + b_hn, needed because r multiplies it;
///                        projected LSTM: m_t = o * tanh(c_t)
/// ```
/// Backward keeps no buffer of its own for `dA`, the gradient w.r.t. the pre-activations fed by
/// `W_ih`: the LSTM and GRU write it over `gates`, the RNN over its upstream gradient, step by
/// step, as each step's values are read for the last time. The GRU's gradient w.r.t. the
/// pre-activations fed by `W_hh` differs from `dA` only in its n-block, `dan * r`, which
/// backward writes over `aux`. So after backward, only `h` and `c` still hold forward values.
#[derive(Default, Debug)]
pub struct LayerCache<T> {
    dims: Option<Dims>,
    cell: Option<Cell>,
    phase: Phase,
    h: Vec<T>,
    c: Vec<T>,
    gates: Vec<T>,
    aux: Vec<T>,
    /// `[B, G*H]` (see [`Keeps::scratch`]).
    scratch: Vec<T>,
    /// `[B, P]` (`[B, H]`) gradient flowing into `h_{t-1}` (`c_{t-1}`) from step `t`.
    dh_carry: Vec<T>,
    dc_carry: Vec<T>,
    /// `W_hh^T [H, G*H]` packed by forward, then `W_hh [G*H, H]` packed by backward, once per
    /// long pass (see `PACK_MIN_ROWS`), for the per-step products `h_{t-1} W_hh^T` and
    /// `da_t W_hh` (packing on every step cost 17% of an LSTM step).
    w_packed: PackedRhs<T>,
    /// `[V, G*H]` for token input ([`Input::Tokens`]): `E W_ih^T + b` in forward, the per-token
    /// sums of `dA` in backward.
    token_rows: Vec<T>,
    /// `[steps, B, H]` one chunk of [`Upstream::Chunked`].
    dh_chunk: Vec<T>,
}

impl<T: Float> LayerCache<T> {
    /// Sizes every buffer for `cell` and `dims`; a no-op when both are unchanged (no per-step
    /// allocation).
    fn prepare(&mut self, cell: Cell, dims: Dims) {
        if self.dims == Some(dims) && self.cell == Some(cell) {
            return;
        }
        let Dims {
            steps: t,
            batch: b,
            hidden: h,
            ..
        } = dims;
        let keeps = keeps(cell, dims);
        let gh = cell.kind.gates() * h;
        let size = |on: bool, n: usize| if on { n } else { 0 };
        resize(&mut self.h, (t + 1) * b * dims.h_size());
        resize(&mut self.c, size(keeps.cell_state, (t + 1) * b * h));
        resize(&mut self.gates, size(keeps.gates, t * b * gh));
        resize(&mut self.aux, size(keeps.aux, t * b * h));
        resize(&mut self.scratch, size(keeps.scratch, b * gh));
        resize(&mut self.dh_carry, b * dims.h_size());
        resize(&mut self.dc_carry, size(keeps.cell_state, b * h));
        self.dims = Some(dims);
        self.cell = Some(cell);
    }

    /// The shape of the last forward pass (`None` before the first).
    pub fn dims(&self) -> Option<Dims> {
        self.dims
    }

    fn forward_dims(&self, what: &str) -> Dims {
        match (self.phase, self.dims) {
            (Phase::Empty, _) | (_, None) => panic!("LayerCache::{what}: no forward pass yet"),
            (_, Some(d)) => d,
        }
    }

    /// Hidden state `h_t` for `t` in `0..=T` (`t = 0` is the initial state), `[B, P]`.
    pub fn h_at(&self, t: usize) -> &[T] {
        let d = self.forward_dims("h_at");
        let n = d.batch * d.h_size();
        &self.h[t * n..(t + 1) * n]
    }

    /// Outputs `h_1..h_T` as one `[T, B, P]` slice.
    pub fn outputs(&self) -> &[T] {
        let d = self.forward_dims("outputs");
        &self.h[d.batch * d.h_size()..]
    }

    /// LSTM cell states `c_1..c_T` as one `[T, B, H]` slice (empty for other cells).
    pub fn cell_outputs(&self) -> &[T] {
        let d = self.forward_dims("cell_outputs");
        if self.c.is_empty() {
            return &[];
        }
        &self.c[d.batch * d.hidden..]
    }

    /// LSTM cell state `c_t` for `t` in `0..=T`, `[B, H]` (empty for other cells).
    pub fn c_at(&self, t: usize) -> &[T] {
        let d = self.forward_dims("c_at");
        let n = d.batch * d.hidden;
        if self.c.is_empty() {
            return &[];
        }
        &self.c[t * n..(t + 1) * n]
    }

    /// The gate values of step `t` (`0..T`), `[B, G*H]` (empty for cells that keep none).
    /// Only between forward and backward: backward overwrites them with their gradients.
    pub fn gate_values_at(&self, t: usize) -> &[T] {
        let d = self.forward_dims("gate_values_at");
        assert!(
            self.phase == Phase::Forward,
            "LayerCache::gate_values_at: backward has overwritten the gates with their gradients; run forward again"
        );
        let n = self.gates.len() / d.steps.max(1);
        &self.gates[t * n..(t + 1) * n]
    }

    /// The forward values of step `t` for all batch rows, as a backward step reads them.
    fn step_values(&self, t: usize) -> StepValues<'_, T> {
        let d = self.forward_dims("step_values");
        assert!(
            self.phase == Phase::Forward,
            "LayerCache: backward has overwritten the gate values; run forward again"
        );
        let (bh, bp) = (d.batch * d.hidden, d.batch * d.h_size());
        fn at<T>(v: &[T], t: usize, n: usize) -> &[T] {
            if v.is_empty() {
                &[]
            } else {
                &v[t * n..(t + 1) * n]
            }
        }
        let gn = self.gates.len() / d.steps.max(1);
        StepValues {
            gates: at(&self.gates, t, gn),
            h_prev: at(&self.h, t, bp),
            h: at(&self.h, t + 1, bp),
            c_prev: at(&self.c, t, bh),
            c: at(&self.c, t + 1, bh),
            aux: at(&self.aux, t, bh),
        }
    }
}

/// One step's forward values for all `B` rows (each `[B, width]`, empty when not kept).
struct StepValues<'a, T> {
    gates: &'a [T],
    h_prev: &'a [T],
    h: &'a [T],
    c_prev: &'a [T],
    c: &'a [T],
    aux: &'a [T],
}

/// Where backward writes the per-step gradients `dL/dh_t` `[T, B, P]` (and `dL/dc_t`
/// `[T, B, H]` for the LSTM), when a caller asks for them; `None` costs nothing.
pub struct StepGrads<'a, T> {
    pub dh: &'a mut [T],
    pub dc: Option<&'a mut [T]>,
}

/// The initial state of one layer: `h [B, P]` and, for the LSTM, `c [B, H]` (empty otherwise).
pub struct StateIo<'a, T> {
    pub h: &'a [T],
    pub c: &'a [T],
}

/// A layer's input over all `T` steps.
#[derive(Clone, Copy)]
pub enum Input<'a, T> {
    /// Vectors `x [T, B, in]`.
    Dense(&'a [T]),
    /// Tokens `ids [T * B]` read through an embedding `E [V, in]`: `x_r = E[ids_r]`. The input
    /// projections of all steps are then rows of `E W_ih^T [V, G*H]` (`V` products instead of
    /// `T * B`), and backward sums `dA` per token before it meets `E` and `W_ih`. Worth it when
    /// `T * B >= V`.
    Tokens { ids: &'a [u32], embedding: &'a [T] },
}

/// Rows `T * B` from which a pass packs `W_hh` once instead of reading it as stored.
const PACK_MIN_ROWS: usize = 64;

/// The recurrent weight as a per-step product reads it: forward `h_{t-1} W_hh^T`, backward
/// `da_t W_hh`, both `[R, k] x [k, n]`.
#[derive(Clone, Copy)]
pub enum Recurrent<'a, T> {
    /// Packed once for this pass.
    Packed(&'a PackedRhs<T>),
    /// `op(w)` read as stored.
    Plain {
        w: &'a [T],
        trans: Trans,
        k: usize,
        n: usize,
    },
}

impl<'a, T: Float> Recurrent<'a, T> {
    /// `C (+)= A op(W)` on the calling thread: `A [rows, k]`, `C [rows, n]`.
    pub fn matmul(self, c: &mut [T], a: &[T], rows: usize, accumulate: bool) {
        match self {
            Recurrent::Packed(w) => w.matmul(c, a, rows, accumulate),
            Recurrent::Plain { w, trans, k, n } => {
                matmul_on(c, a, Trans::No, w, trans, rows, n, k, accumulate, 1)
            }
        }
    }

    /// `op(w_hh)` for `rows` products per step: packed into `packed` when `rows` is at least
    /// `PACK_MIN_ROWS` (short passes, e.g. sampling one token at a time, read it as stored).
    /// Forward uses `W_hh^T [P, G*H]` (`Trans::Yes`), backward `W_hh [G*H, P]`.
    fn new(
        packed: &'a mut PackedRhs<T>,
        w_hh: &'a [T],
        trans: Trans,
        gh: usize,
        h_size: usize,
        rows: usize,
    ) -> Self {
        let (k, n) = match trans {
            Trans::Yes => (h_size, gh),
            Trans::No => (gh, h_size),
        };
        if rows >= PACK_MIN_ROWS {
            packed.pack(w_hh, trans, k, n);
            Recurrent::Packed(packed)
        } else {
            Recurrent::Plain {
                w: w_hh,
                trans,
                k,
                n,
            }
        }
    }
}

/// Runs one layer forward over all `T` steps.
///
/// `state` holds `h_0` (and `c_0`). Results land in `cache`.
pub fn forward<T: Float>(
    cell: Cell,
    cache: &mut LayerCache<T>,
    x: Input<T>,
    state: StateIo<T>,
    p: LayerParams<T>,
    dims: Dims,
) {
    cache.prepare(cell, dims);
    let keeps = keeps(cell, dims);
    let (bh, bp) = (dims.batch * dims.hidden, dims.batch * dims.h_size());
    cache.h[..bp].copy_from_slice(state.h);
    if keeps.cell_state {
        cache.c[..bh].copy_from_slice(state.c);
    }
    let gh = p.b_hh.len();
    let projection = if keeps.gates {
        &mut cache.gates[..]
    } else {
        &mut cache.h[bp..]
    };
    input_projection(
        projection,
        &mut cache.token_rows,
        x,
        p,
        keeps.input_has_b_hh,
        dims,
    );
    let mut packed = std::mem::take(&mut cache.w_packed);
    let w_hh = Recurrent::new(
        &mut packed,
        p.w_hh,
        Trans::Yes,
        gh,
        dims.h_size(),
        dims.steps * dims.batch,
    );
    with_cell!(cell, |c| forward_pass(c, cache, w_hh, &p, dims));
    cache.w_packed = packed;
    cache.phase = Phase::Forward;
}

/// The loop over time, each thread on its own block of batch rows (see
/// [`for_each_row_block`]).
fn forward_pass<C: StepMath, T: Float>(
    cell: C,
    cache: &mut LayerCache<T>,
    w_hh: Recurrent<T>,
    p: &LayerParams<T>,
    dims: Dims,
) {
    let (b, h, gh) = (dims.batch, dims.hidden, C::GATES * dims.hidden);
    let views = (
        RowsMut::new(&mut cache.h, b, dims.h_size()),
        RowsMut::new(&mut cache.c, b, h),
        RowsMut::new(&mut cache.gates, b, gh),
        RowsMut::new(&mut cache.aux, b, h),
        RowsMut::new(&mut cache.scratch, b, gh),
    );
    for_each_row_block(
        b,
        views,
        |(mut hs, mut cs, mut gates, mut aux, mut scratch)| {
            for t in 0..dims.steps {
                let (h_prev, h_next) = hs.pair(t);
                let (c_prev, c_next) = cs.pair(t);
                let s = ForwardStep {
                    hidden: h,
                    gates: gates.at(t),
                    h_prev,
                    h: h_next,
                    c_prev,
                    c: c_next,
                    aux: aux.at(t),
                    scratch: scratch.at(0),
                };
                cell.forward_step(s, w_hh, p);
            }
        },
    );
}

/// Gradient outputs of one layer's backward pass.
pub struct BackwardOut<'a, T> {
    /// Gradient w.r.t. the layer input, or `None` when nobody needs it: `[T, B, in]`
    /// (overwritten) for [`Input::Dense`], the embedding's `[V, in]` (accumulated) for
    /// [`Input::Tokens`].
    pub dx: Option<&'a mut [T]>,
    /// `[B, P]` gradient w.r.t. `h_0` (overwritten).
    pub dh0: &'a mut [T],
    /// `[B, H]` gradient w.r.t. `c_0` (LSTM; overwritten; empty otherwise).
    pub dc0: &'a mut [T],
}

/// The gradient reaching a layer's outputs `h_1..h_T` from above.
pub enum Upstream<'a, T> {
    /// All steps at once, `[T, B, P]`; consumed (the RNN leaves `dA` in it).
    Whole(&'a mut [T]),
    /// Produced for a few steps at a time by `fill(steps, out)` (`out` `[steps.len(), B, P]`)
    /// just before backward walks those steps, so no `[T, B, H]` buffer exists: the top layer's
    /// `dz W_dec`. Each chunk holds about [`CHUNK_ROWS`] rows, and the weight gradients are
    /// taken chunk by chunk.
    Chunked(&'a mut dyn FnMut(Range<usize>, &mut [T])),
}

/// Rows (`steps x B`) per chunk of [`Upstream::Chunked`]: enough for the weight-gradient GEMMs
/// to run at full speed, few enough that the chunk is a small fraction of the activations.
pub const CHUNK_ROWS: usize = 512;

/// Runs one layer backward over all `T` steps after [`forward`] on the same cache, from the
/// last step to the first, one chunk of steps at a time (see [`Upstream`]); no gradient
/// reaches the final state from outside the window. Weight gradients are accumulated into `g`.
///
/// Backward consumes the cache (it writes gradients over the gate values), so each backward
/// needs its own forward: called without one, it returns an error and changes nothing.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Float>(
    cell: Cell,
    out: BackwardOut<T>,
    g: LayerGrads<T>,
    cache: &mut LayerCache<T>,
    upstream: Upstream<T>,
    x: Input<T>,
    p: LayerParams<T>,
    record: Option<StepGrads<T>>,
) -> Result<()> {
    if cache.phase != Phase::Forward || cache.cell != Some(cell) {
        return Err(Error::Usage(
            "backward needs a forward pass of the same cell on this cache first (each backward consumes its forward)".into(),
        ));
    }
    with_cell!(cell, |c| backward_pass(
        c, out, g, cache, upstream, x, p, record
    ));
    cache.phase = Phase::Backward;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn backward_pass<C: StepMath, T: Float>(
    cell: C,
    out: BackwardOut<T>,
    mut g: LayerGrads<T>,
    cache: &mut LayerCache<T>,
    mut upstream: Upstream<T>,
    x: Input<T>,
    p: LayerParams<T>,
    mut record: Option<StepGrads<T>>,
) {
    let dims = cache.dims.expect("checked by backward");
    let (b, h, hs) = (dims.batch, dims.hidden, dims.h_size());
    let (bp, gh) = (b * hs, C::GATES * h);
    let keeps = keeps(cache.cell.expect("checked by backward"), dims);
    cache.dh_carry.fill(T::ZERO);
    cache.dc_carry.fill(T::ZERO);
    let per_chunk = match upstream {
        Upstream::Whole(_) => dims.steps.max(1),
        Upstream::Chunked(_) => (CHUNK_ROWS / b.max(1)).clamp(1, dims.steps.max(1)),
    };
    let mut chunk = std::mem::take(&mut cache.dh_chunk);
    if let Upstream::Chunked(_) = upstream {
        resize(&mut chunk, per_chunk * bp);
    }
    let mut token_rows = std::mem::take(&mut cache.token_rows);
    if let Input::Tokens { embedding, .. } = x {
        resize(&mut token_rows, embedding.len() / dims.input * gh);
        token_rows.fill(T::ZERO);
    }
    let mut packed = std::mem::take(&mut cache.w_packed);
    let w_hh = Recurrent::new(&mut packed, p.w_hh, Trans::No, gh, hs, dims.steps * b);
    let mut dx = out.dx;
    let mut end = dims.steps;
    while end > 0 {
        let steps = end.saturating_sub(per_chunk)..end;
        let dh_out: &mut [T] = match &mut upstream {
            Upstream::Whole(all) => &mut all[steps.start * bp..steps.end * bp],
            Upstream::Chunked(fill) => {
                let dh = &mut chunk[..steps.len() * bp];
                fill(steps.clone(), dh);
                dh
            }
        };
        let rec = record.as_mut().map(|r| {
            (
                RowsMut::new(&mut *r.dh, b, hs),
                r.dc.as_deref_mut().map(|d| RowsMut::new(d, b, h)),
            )
        });
        let views = (
            (
                RowsMut::new(&mut *dh_out, b, hs),
                RowsMut::new(&mut cache.gates, b, gh),
                RowsMut::new(&mut cache.aux, b, h),
                RowsMut::new(&mut cache.scratch, b, gh),
            ),
            (Rows::new(&cache.h, b, hs), Rows::new(&cache.c, b, h)),
            (
                RowsMut::new(&mut cache.dh_carry, b, hs),
                RowsMut::new(&mut cache.dc_carry, b, h),
            ),
            rec,
        );
        let first = steps.start;
        for_each_row_block(
            b,
            views,
            |((mut up, mut gates, mut aux, mut scratch), (hs, cs), (mut dh, mut dc), mut rec)| {
                for t in steps.clone().rev() {
                    let (record_dh, record_dc) = match rec.as_mut() {
                        Some((rh, rc)) => (Some(rh.at(t)), rc.as_mut().map(|r| r.at(t))),
                        None => (None, None),
                    };
                    let s = BackwardStep {
                        hidden: h,
                        w_hr: p.w_hr,
                        up: up.at(t - first),
                        gates: gates.at(t),
                        h_prev: hs.at(t),
                        h: hs.at(t + 1),
                        c_prev: cs.at(t),
                        c: cs.at(t + 1),
                        aux: aux.at(t),
                        scratch: scratch.at(0),
                        dh: dh.at(0),
                        dc: dc.at(0),
                        record_dh,
                        record_dc,
                    };
                    cell.backward_step(s, w_hh);
                }
            },
        );
        // This chunk's rows of every [T, B, _] buffer.
        let rows = steps.start * b..steps.end * b;
        let da = if C::KEEPS.gates {
            &cache.gates[rows.start * gh..rows.end * gh]
        } else {
            &*dh_out
        };
        let aux = if keeps.aux {
            &cache.aux[rows.start * h..rows.end * h]
        } else {
            &[]
        };
        cell.recurrent_grads(
            &mut g,
            ChunkValues {
                da,
                aux,
                up: dh_out,
                h_prev: &cache.h[rows.start * hs..rows.end * hs],
                h: &cache.h[(rows.start + b) * hs..(rows.end + b) * hs],
                hidden: h,
            },
        );
        let input = match x {
            Input::Dense(x) => Input::Dense(&x[rows.start * dims.input..rows.end * dims.input]),
            Input::Tokens { ids, embedding } => Input::Tokens {
                ids: &ids[rows.clone()],
                embedding,
            },
        };
        let dx_rows = match (x, dx.as_deref_mut()) {
            (Input::Dense(_), Some(d)) => {
                Some(&mut d[rows.start * dims.input..rows.end * dims.input])
            }
            _ => None,
        };
        input_weight_grads(dx_rows, &mut g, da, &mut token_rows, input, p, dims);
        end = steps.start;
    }
    if let Input::Tokens { embedding, .. } = x {
        token_grads(
            &mut g,
            dx.unwrap_or_default(),
            &token_rows,
            embedding,
            p,
            dims,
        );
    }
    cache.w_packed = packed;
    cache.token_rows = token_rows;
    cache.dh_chunk = chunk;
    out.dh0.copy_from_slice(&cache.dh_carry);
    if C::KEEPS.cell_state {
        out.dc0.copy_from_slice(&cache.dc_carry);
    }
}

/// The input-side gradients of one chunk of rows from the pre-activation gradients
/// `da [rows, G*H]`:
/// ```text
/// dW_ih += dA^T X        db_ih += sum dA        dX = dA W_ih
/// ```
/// For token input, `X = S E` with `S` the one-hot rows of the ids: this only adds the chunk's
/// per-token sums of `dA` into `token_rows [V, G*H]` (`D = S^T dA`), and [`token_grads`] takes
/// the rest once.
fn input_weight_grads<T: Float>(
    dx: Option<&mut [T]>,
    g: &mut LayerGrads<T>,
    da: &[T],
    token_rows: &mut [T],
    x: Input<T>,
    p: LayerParams<T>,
    dims: Dims,
) {
    let gh = p.b_ih.len();
    let rows = da.len() / gh;
    match x {
        Input::Dense(x) => {
            matmul(
                g.w_ih,
                da,
                Trans::Yes,
                x,
                Trans::No,
                gh,
                dims.input,
                rows,
                true,
            );
            if let Some(dx) = dx {
                matmul(
                    dx,
                    da,
                    Trans::No,
                    p.w_ih,
                    Trans::No,
                    rows,
                    dims.input,
                    gh,
                    false,
                );
            }
        }
        Input::Tokens { ids, .. } => {
            for (row, &id) in da.chunks_exact(gh).zip(ids) {
                add_assign(&mut token_rows[id as usize * gh..][..gh], row);
            }
        }
    }
    sum_rows_into(g.b_ih, da);
}

/// The input-side gradients of token input from the per-token sums `D [V, G*H]`:
/// `dW_ih += D^T E` and, into the embedding's gradient `de [V, in]` (empty: not wanted),
/// `dE += D W_ih`.
fn token_grads<T: Float>(
    g: &mut LayerGrads<T>,
    de: &mut [T],
    d: &[T],
    embedding: &[T],
    p: LayerParams<T>,
    dims: Dims,
) {
    let gh = p.b_ih.len();
    let vocab = embedding.len() / dims.input;
    matmul(
        g.w_ih,
        d,
        Trans::Yes,
        embedding,
        Trans::No,
        gh,
        dims.input,
        vocab,
        true,
    );
    if !de.is_empty() {
        matmul(
            de,
            d,
            Trans::No,
            p.w_ih,
            Trans::No,
            vocab,
            dims.input,
            gh,
            true,
        );
    }
}

/// `out = x W_ih^T + b_ih (+ b_hh)` for all steps at once: `x [T*B, in]`, `out [T*B, G*H]`.
/// Token input computes the `V` distinct rows once, in `token_rows [V, G*H]`, and copies them.
fn input_projection<T: Float>(
    out: &mut [T],
    token_rows: &mut Vec<T>,
    x: Input<T>,
    p: LayerParams<T>,
    with_b_hh: bool,
    dims: Dims,
) {
    let gh = p.b_ih.len();
    let project = |out: &mut [T], x: &[T]| {
        let rows = x.len() / dims.input;
        matmul(
            out,
            x,
            Trans::No,
            p.w_ih,
            Trans::Yes,
            rows,
            gh,
            dims.input,
            false,
        );
        crate::tensor::add_row_bias(out, p.b_ih);
        if with_b_hh {
            crate::tensor::add_row_bias(out, p.b_hh);
        }
    };
    match x {
        Input::Dense(x) => project(out, x),
        Input::Tokens { ids, embedding } => {
            resize(token_rows, embedding.len() / dims.input * gh);
            project(token_rows, embedding);
            for (row, &id) in out.chunks_exact_mut(gh).zip(ids) {
                row.copy_from_slice(&token_rows[id as usize * gh..][..gh]);
            }
        }
    }
}

/// Whose forward values each row of a [`StepVjp`] block reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowOwners {
    /// `blocks` consecutive blocks of `B` rows: row `r` belongs to batch element `r % B` (the
    /// batched sweep: one block per target).
    Blocks(usize),
    /// `rows` rows, all of batch element `b` (one-step Jacobians: one row per basis vector).
    Element { b: usize, rows: usize },
}

impl RowOwners {
    fn rows(self, batch: usize) -> usize {
        match self {
            RowOwners::Blocks(n) => n * batch,
            RowOwners::Element { rows, .. } => rows,
        }
    }
}

/// Vector-Jacobian products through one cached step, for many gradient rows at once: the
/// analysis's view of a cell's backward step. It copies the step's forward values for each row
/// (they are overwritten by the step), then runs the cell's own [`StepMath::backward_step`].
#[derive(Default)]
pub struct StepVjp<T> {
    gates: Vec<T>,
    h_prev: Vec<T>,
    h: Vec<T>,
    c_prev: Vec<T>,
    c: Vec<T>,
    aux: Vec<T>,
    scratch: Vec<T>,
    packed: PackedRhs<T>,
    /// `W_hh` the packed copy was made from (address and length).
    packed_from: Option<(usize, usize)>,
}

/// The gradient rows of a [`StepVjp::run`], each `[R, P]` for `h` and `[R, H]` for `c`.
pub struct VjpRows<'a, T> {
    /// The gradient reaching `h_t` from outside the recurrence; the cells without kept gates
    /// leave the pre-activation gradient in it.
    pub up: &'a mut [T],
    /// The gradient reaching `h_t` (and `c_t`) from step `t + 1` on entry, `dL/dh_{t-1}` (and
    /// `dL/dc_{t-1}`) on exit.
    pub dh: &'a mut [T],
    pub dc: &'a mut [T],
    /// Receive the total `dL/dh_t` (and `dL/dc_t`).
    pub record_dh: &'a mut [T],
    pub record_dc: &'a mut [T],
}

impl<T: Float> StepVjp<T> {
    /// Runs step `t` of `cache` (after its forward, before its backward) backward for the rows
    /// `rows` (`owners` says whose forward values each reads), with the layer's parameters
    /// `p`. Returns the pre-activation gradients `da [R, G*H]`.
    pub fn run<'s>(
        &'s mut self,
        cell: Cell,
        cache: &LayerCache<T>,
        p: LayerParams<'_, T>,
        t: usize,
        owners: RowOwners,
        rows: VjpRows<'s, T>,
    ) -> &'s [T] {
        let d = cache.forward_dims("StepVjp");
        let (b, h, hs) = (d.batch, d.hidden, d.h_size());
        let w_hh = p.w_hh;
        let keeps = keeps(cell, d);
        let gh = cell.kind.gates() * h;
        let n = owners.rows(b);
        let v = cache.step_values(t);
        let fill = |dst: &mut Vec<T>, src: &[T], width: usize, on: bool| {
            resize(dst, if on { n * width } else { 0 });
            if !on {
                return;
            }
            match owners {
                RowOwners::Blocks(_) => {
                    for block in dst.chunks_exact_mut(src.len()) {
                        block.copy_from_slice(src);
                    }
                }
                RowOwners::Element { b, .. } => {
                    let row = &src[b * width..(b + 1) * width];
                    for r in dst.chunks_exact_mut(width) {
                        r.copy_from_slice(row);
                    }
                }
            }
        };
        fill(&mut self.gates, v.gates, gh, keeps.gates);
        fill(&mut self.h_prev, v.h_prev, hs, true);
        fill(&mut self.h, v.h, hs, true);
        fill(&mut self.c_prev, v.c_prev, h, keeps.cell_state);
        fill(&mut self.c, v.c, h, keeps.cell_state);
        fill(&mut self.aux, v.aux, h, keeps.aux);
        resize(&mut self.scratch, if keeps.scratch { n * gh } else { 0 });
        let key = (w_hh.as_ptr() as usize, w_hh.len());
        let w = if n >= PACK_MIN_ROWS {
            if self.packed_from != Some(key) {
                self.packed.pack(w_hh, Trans::No, gh, hs);
                self.packed_from = Some(key);
            }
            Recurrent::Packed(&self.packed)
        } else {
            Recurrent::Plain {
                w: w_hh,
                trans: Trans::No,
                k: gh,
                n: hs,
            }
        };
        let VjpRows {
            up,
            dh,
            dc,
            record_dh,
            record_dc,
        } = rows;
        let rec_dc = keeps
            .cell_state
            .then(|| RowsMut::new(&mut *record_dc, n, h));
        let views = (
            (
                RowsMut::new(&mut *up, n, hs),
                RowsMut::new(&mut self.gates, n, gh),
                RowsMut::new(&mut self.aux, n, h),
                RowsMut::new(&mut self.scratch, n, gh),
            ),
            (
                Rows::new(&self.h_prev, n, hs),
                Rows::new(&self.h, n, hs),
                Rows::new(&self.c_prev, n, h),
                Rows::new(&self.c, n, h),
            ),
            (
                RowsMut::new(&mut *dh, n, hs),
                RowsMut::new(if keeps.cell_state { &mut *dc } else { &mut [] }, n, h),
            ),
            (RowsMut::new(&mut *record_dh, n, hs), rec_dc),
        );
        with_cell!(cell, |c| for_each_row_block(
            n,
            views,
            |(
                (mut up, mut gates, mut aux, mut scratch),
                (hp, hs, cp, cs),
                (mut dh, mut dc),
                (mut rh, mut rc),
            )| {
                c.backward_step(
                    BackwardStep {
                        hidden: h,
                        w_hr: p.w_hr,
                        up: up.at(0),
                        gates: gates.at(0),
                        h_prev: hp.at(0),
                        h: hs.at(0),
                        c_prev: cp.at(0),
                        c: cs.at(0),
                        aux: aux.at(0),
                        scratch: scratch.at(0),
                        dh: dh.at(0),
                        dc: dc.at(0),
                        record_dh: Some(rh.at(0)),
                        record_dc: rc.as_mut().map(|r| r.at(0)),
                    },
                    w,
                )
            }
        ));
        if keeps.gates {
            &self.gates
        } else {
            up
        }
    }
}
