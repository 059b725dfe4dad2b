//! Recurrent cells with explicit forward and backward passes over a whole sequence.
//!
//! Every cell follows the PyTorch definitions (`torch.nn.RNN`, `torch.nn.LSTM`, `torch.nn.GRU`);
//! parameters of one layer are `W_ih [G*H, in]`, `W_hh [G*H, H]`, `b_ih [G*H]`, `b_hh [G*H]`
//! with `G` gate blocks. Activations are time-major `[T][B][H]`.
//!
//! The input projection `X W_ih^T` for all time steps is one GEMM (or, for token input, one
//! GEMM over the vocabulary and a row lookup, see [`Input::Tokens`]), the weight gradients are
//! one GEMM each over all time steps (or over chunks of a few hundred rows, see
//! [`Upstream::Chunked`]); only the recurrent products `h_{t-1} W_hh^T` and `da_t W_hh` run step
//! by step.

mod gru;
mod lstm;
mod rnn;

use crate::tensor::{
    add_assign, matmul, matmul_on, matmul_strided, resize, sum_rows_into, Float, PackedRhs, Trans,
};
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::ops::Range;

/// Which recurrent cell a layer uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    Rnn,
    Lstm,
    Gru,
}

impl CellKind {
    /// Number of gate blocks `G` stacked in the weight rows: 1, 4 (i, f, g, o) or 3 (r, z, n).
    pub fn gates(self) -> usize {
        match self {
            CellKind::Rnn => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CellKind::Rnn => "rnn",
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rnn" => Some(CellKind::Rnn),
            "lstm" => Some(CellKind::Lstm),
            "gru" => Some(CellKind::Gru),
            _ => None,
        }
    }
}

/// The vanilla RNN's activation `s` in `h_t = s(a_t)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Tanh,
    Relu,
    Sigmoid,
    Identity,
}

impl Activation {
    #[inline(always)]
    pub fn apply<T: Float>(self, a: T) -> T {
        match self {
            Activation::Tanh => a.tanh(),
            Activation::Relu => a.max(T::ZERO),
            Activation::Sigmoid => crate::tensor::sigmoid(a),
            Activation::Identity => a,
        }
    }

    /// `s'(a)` expressed through the output `h = s(a)`, so backward needs only the stored `h`:
    /// ```text
    /// tanh: 1 - h^2    sigmoid: h (1 - h)    relu: [h > 0]    identity: 1
    /// ```
    #[inline(always)]
    pub fn derivative_from_output<T: Float>(self, h: T) -> T {
        match self {
            Activation::Tanh => T::ONE - h * h,
            Activation::Relu => {
                if h > T::ZERO {
                    T::ONE
                } else {
                    T::ZERO
                }
            }
            Activation::Sigmoid => h * (T::ONE - h),
            Activation::Identity => T::ONE,
        }
    }

    /// `gamma = max |s'|`: 1 for tanh, relu and identity, 1/4 for sigmoid (Pascanu et al. 2013).
    pub fn gamma(self) -> f64 {
        match self {
            Activation::Sigmoid => 0.25,
            _ => 1.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Identity => "identity",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tanh" => Some(Activation::Tanh),
            "relu" => Some(Activation::Relu),
            "sigmoid" => Some(Activation::Sigmoid),
            "identity" | "linear" => Some(Activation::Identity),
            _ => None,
        }
    }
}

/// A cell type with its activation (the activation matters only for the vanilla RNN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    pub kind: CellKind,
    pub activation: Activation,
}

/// Sizes of one layer's pass: `steps` = T, `batch` = B, `input` = in, `hidden` = H.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub steps: usize,
    pub batch: usize,
    pub input: usize,
    pub hidden: usize,
}

/// Borrowed parameters of one layer.
#[derive(Clone, Copy)]
pub struct LayerParams<'a, T> {
    /// `[G*H, in]`
    pub w_ih: &'a [T],
    /// `[G*H, H]`
    pub w_hh: &'a [T],
    /// `[G*H]`
    pub b_ih: &'a [T],
    /// `[G*H]`
    pub b_hh: &'a [T],
}

impl<'a, T: Float> LayerParams<'a, T> {
    /// Splits one layer's contiguous block `[w_ih | w_hh | b_ih | b_hh]`.
    pub fn split(block: &'a [T], gh: usize, input: usize, hidden: usize) -> Self {
        let (w_ih, rest) = block.split_at(gh * input);
        let (w_hh, rest) = rest.split_at(gh * hidden);
        let (b_ih, b_hh) = rest.split_at(gh);
        LayerParams {
            w_ih,
            w_hh,
            b_ih,
            b_hh,
        }
    }
}

/// Mutable gradients of one layer, same layout as [`LayerParams`].
pub struct LayerGrads<'a, T> {
    pub w_ih: &'a mut [T],
    pub w_hh: &'a mut [T],
    pub b_ih: &'a mut [T],
    pub b_hh: &'a mut [T],
}

impl<'a, T: Float> LayerGrads<'a, T> {
    pub fn split(block: &'a mut [T], gh: usize, input: usize, hidden: usize) -> Self {
        let (w_ih, rest) = block.split_at_mut(gh * input);
        let (w_hh, rest) = rest.split_at_mut(gh * hidden);
        let (b_ih, b_hh) = rest.split_at_mut(gh);
        LayerGrads {
            w_ih,
            w_hh,
            b_ih,
            b_hh,
        }
    }
}

/// What forward keeps for backward, and backward's scratch, sized once per shape.
///
/// ```text
/// h      [(T+1), B, H]   h[0] = initial state, h[t+1] = h_t
/// c      [(T+1), B, H]   LSTM cell states, same indexing
/// gates  [T, B, G*H]     activated gates (LSTM: i f g o; GRU: r z n); empty for the RNN
/// hn     [T, B, H]       GRU: W_hn h_{t-1} + b_hn, needed because r multiplies it
/// ```
/// Backward keeps no buffer of its own for `dA`, the gradient w.r.t. the pre-activations fed by
/// `W_ih`: the LSTM and GRU write it over `gates`, the RNN over its upstream gradient `dh_out`,
/// step by step, as each step's values are read for the last time. The GRU's gradient w.r.t.
/// the pre-activations fed by `W_hh` differs from `dA` only in its n-block, `dan * r`, which
/// backward writes over `hn`.
#[derive(Default, Debug)]
pub struct LayerCache<T> {
    pub dims: Option<Dims>,
    pub h: Vec<T>,
    pub c: Vec<T>,
    pub gates: Vec<T>,
    pub hn: Vec<T>,
    /// `[B, G*H]` GRU scratch: the recurrent pre-activation of the current step in forward,
    /// its gradient in backward.
    gh: Vec<T>,
    /// `[B, H]` gradient flowing into `h_{t-1}` from step `t`.
    dh_carry: Vec<T>,
    /// `W_hh^T [H, G*H]` packed by forward, then `W_hh [G*H, H]` packed by backward, once per
    /// long pass (see `PACK_MIN_ROWS`), for the per-step products `h_{t-1} W_hh^T` and
    /// `da_t W_hh` (packing on every step cost 17% of an LSTM step).
    w_packed: PackedRhs<T>,
    /// `[B, H]` gradient flowing into `c_{t-1}` from step `t` (LSTM).
    dc_carry: Vec<T>,
    /// `[V, G*H]` for token input ([`Input::Tokens`]): `E W_ih^T + b` in forward, the per-token
    /// sums of `dA` in backward.
    token_rows: Vec<T>,
    /// `[steps, B, H]` one chunk of [`Upstream::Chunked`].
    dh_chunk: Vec<T>,
}

impl<T: Float> LayerCache<T> {
    /// Sizes every buffer for `dims`; a no-op when the shape is unchanged (no per-step allocation).
    pub fn prepare(&mut self, cell: Cell, dims: Dims) {
        if self.dims == Some(dims) {
            return;
        }
        let Dims {
            steps: t,
            batch: b,
            hidden: h,
            ..
        } = dims;
        let gh = cell.kind.gates() * h;
        resize(&mut self.h, (t + 1) * b * h);
        resize(
            &mut self.c,
            if cell.kind == CellKind::Lstm {
                (t + 1) * b * h
            } else {
                0
            },
        );
        resize(
            &mut self.gates,
            if cell.kind == CellKind::Rnn {
                0
            } else {
                t * b * gh
            },
        );
        let gru = cell.kind == CellKind::Gru;
        resize(&mut self.hn, if gru { t * b * h } else { 0 });
        resize(&mut self.gh, if gru { b * gh } else { 0 });
        resize(&mut self.dh_carry, b * h);
        resize(&mut self.dc_carry, b * h);
        self.dims = Some(dims);
    }

    /// Hidden state `h_t` for `t` in `0..=T` (`t = 0` is the initial state), `[B, H]`.
    pub fn h_at(&self, t: usize) -> &[T] {
        let d = self.dims.expect("forward has run");
        let n = d.batch * d.hidden;
        &self.h[t * n..(t + 1) * n]
    }

    /// Outputs `h_1..h_T` as one `[T, B, H]` slice.
    pub fn outputs(&self) -> &[T] {
        let d = self.dims.expect("forward has run");
        &self.h[d.batch * d.hidden..]
    }

    /// LSTM cell state `c_t` for `t` in `0..=T`, `[B, H]`.
    pub fn c_at(&self, t: usize) -> &[T] {
        let d = self.dims.expect("forward has run");
        let n = d.batch * d.hidden;
        &self.c[t * n..(t + 1) * n]
    }
}

/// Where backward writes the per-step gradients `dL/dh_t` (and `dL/dc_t` for the LSTM), each
/// `[T, B, H]`, when a caller asks for them; `None` costs nothing.
pub struct StepGrads<'a, T> {
    pub dh: &'a mut [T],
    pub dc: Option<&'a mut [T]>,
}

/// Initial state of one layer and, after backward, the gradient with respect to it.
pub struct StateIo<'a, T> {
    /// `[B, H]`
    pub h: &'a [T],
    /// `[B, H]` (LSTM only; empty otherwise)
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
    let bh = dims.batch * dims.hidden;
    cache.h[..bh].copy_from_slice(state.h);
    if cell.kind == CellKind::Lstm {
        cache.c[..bh].copy_from_slice(state.c);
    }
    let gh = p.b_hh.len();
    let mut packed = std::mem::take(&mut cache.w_packed);
    let w_hh = if dims.steps * dims.batch >= PACK_MIN_ROWS {
        packed.pack(p.w_hh, Trans::Yes, dims.hidden, gh);
        Recurrent::Packed(&packed)
    } else {
        // Short passes (e.g. sampling one token at a time) read W_hh as stored rather than pay
        // for packing it on every call.
        Recurrent::Plain {
            w: p.w_hh,
            trans: Trans::Yes,
            k: dims.hidden,
            n: gh,
        }
    };
    // The RNN builds its pre-activations in h[1..]; the GRU keeps b_hh for its recurrent term.
    let (projection, with_b_hh) = match cell.kind {
        CellKind::Rnn => (&mut cache.h[bh..], true),
        CellKind::Lstm => (&mut cache.gates[..], true),
        CellKind::Gru => (&mut cache.gates[..], false),
    };
    input_projection(projection, &mut cache.token_rows, x, p, with_b_hh, dims);
    match cell.kind {
        CellKind::Rnn => rnn::forward(cell.activation, cache, w_hh, dims),
        CellKind::Lstm => lstm::forward(cache, w_hh, dims),
        CellKind::Gru => gru::forward(cache, p, w_hh, dims),
    }
    cache.w_packed = packed;
}

/// Runs `f` on blocks of batch rows in parallel, one block per GEMM thread, each for the
/// whole pass. Batch rows are independent through time, so each thread runs all `T` steps on
/// its own rows with no synchronisation per step; the arithmetic per row is the same as on one
/// thread, so results are identical. Small batches (under 16 rows) stay on one thread.
fn for_each_row_block(batch: usize, f: impl Fn(Range<usize>) + Sync) {
    let threads = crate::tensor::gemm_threads();
    let blocks = if threads > 1 && batch >= 16 {
        threads.min(batch / 8)
    } else {
        1
    };
    let block = |i: usize| batch * i / blocks..batch * (i + 1) / blocks;
    if blocks == 1 {
        return f(block(0));
    }
    rayon::scope(|s| {
        let f = &f;
        for i in 1..blocks {
            s.spawn(move |_| f(block(i)));
        }
        f(block(0));
    });
}

/// A time-major buffer `[steps, batch, width]` written by several threads at once, each only in
/// its own batch rows (see [`for_each_row_block`]).
#[derive(Clone, Copy)]
struct StepRows<'a, T> {
    ptr: *mut T,
    len: usize,
    batch: usize,
    width: usize,
    _buf: PhantomData<&'a mut [T]>,
}

// SAFETY: `StepRows` is a `&mut [T]` whose users promise (at `at`) to touch disjoint elements.
unsafe impl<T: Send> Send for StepRows<'_, T> {}
unsafe impl<T: Send> Sync for StepRows<'_, T> {}

impl<'a, T> StepRows<'a, T> {
    fn new(buf: &'a mut [T], batch: usize, width: usize) -> Self {
        StepRows {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            batch,
            width,
            _buf: PhantomData,
        }
    }

    /// Rows `rows` of step `t`, `[rows.len(), width]`.
    ///
    /// # Safety
    /// No two slices alive at the same time, on any thread, may share an element: threads pass
    /// disjoint `rows`, and one thread never holds two slices of the same step and rows.
    #[allow(clippy::mut_from_ref)]
    unsafe fn at(&self, t: usize, rows: &Range<usize>) -> &mut [T] {
        let start = (t * self.batch + rows.start) * self.width;
        let end = (t * self.batch + rows.end) * self.width;
        assert!(
            start <= end && end <= self.len,
            "StepRows: step {t} out of range"
        );
        std::slice::from_raw_parts_mut(self.ptr.add(start), end - start)
    }
}

/// Rows `rows` of step `t` of a read-only time-major buffer `[steps, batch, width]`.
fn step_rows<'a, T>(
    buf: &'a [T],
    t: usize,
    rows: &Range<usize>,
    batch: usize,
    width: usize,
) -> &'a [T] {
    &buf[(t * batch + rows.start) * width..(t * batch + rows.end) * width]
}

/// Rows `T * B` from which a pass packs `W_hh` once instead of reading it as stored.
const PACK_MIN_ROWS: usize = 64;

/// The recurrent weight as a per-step product reads it: forward `h_{t-1} W_hh^T`, backward
/// `da_t W_hh`, both `[R, k] x [k, n]`.
#[derive(Clone, Copy)]
enum Recurrent<'a, T> {
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
    fn matmul(self, c: &mut [T], a: &[T], rows: usize, accumulate: bool) {
        match self {
            Recurrent::Packed(w) => w.matmul(c, a, rows, accumulate),
            Recurrent::Plain { w, trans, k, n } => {
                matmul_on(c, a, Trans::No, w, trans, rows, n, k, accumulate, 1)
            }
        }
    }

    /// `W_hh` for backward's `da_t W_hh`, packed into `packed` when the pass is long.
    fn for_backward(
        packed: &'a mut PackedRhs<T>,
        w_hh: &'a [T],
        gh: usize,
        dims: Dims,
    ) -> Recurrent<'a, T> {
        if dims.steps * dims.batch >= PACK_MIN_ROWS {
            packed.pack(w_hh, Trans::No, gh, dims.hidden);
            Recurrent::Packed(packed)
        } else {
            Recurrent::Plain {
                w: w_hh,
                trans: Trans::No,
                k: gh,
                n: dims.hidden,
            }
        }
    }
}

/// Gradient outputs of one layer's backward pass.
pub struct BackwardOut<'a, T> {
    /// Gradient w.r.t. the layer input, or `None` when nobody needs it: `[T, B, in]`
    /// (overwritten) for [`Input::Dense`], the embedding's `[V, in]` (accumulated) for
    /// [`Input::Tokens`].
    pub dx: Option<&'a mut [T]>,
    /// `[B, H]` gradient w.r.t. `h_0` (overwritten).
    pub dh0: &'a mut [T],
    /// `[B, H]` gradient w.r.t. `c_0` (LSTM; overwritten; empty otherwise).
    pub dc0: &'a mut [T],
}

/// The gradient reaching a layer's outputs `h_1..h_T` from above.
pub enum Upstream<'a, T> {
    /// All steps at once, `[T, B, H]`; consumed (the RNN leaves `dA` in it).
    Whole(&'a mut [T]),
    /// Produced for a few steps at a time by `fill(steps, out)` (`out` `[steps.len(), B, H]`)
    /// just before backward walks those steps, so no `[T, B, H]` buffer exists: the top layer's
    /// `dz W_dec`. Each chunk holds about [`CHUNK_ROWS`] rows, and the weight gradients are
    /// taken chunk by chunk.
    Chunked(&'a mut dyn FnMut(Range<usize>, &mut [T])),
}

/// Rows (`steps x B`) per chunk of [`Upstream::Chunked`]: enough for the weight-gradient GEMMs
/// to run at full speed, few enough that the chunk is a small fraction of the activations.
pub const CHUNK_ROWS: usize = 512;

/// Runs one layer backward over all `T` steps (after [`forward`] on the same cache), from the
/// last step to the first, one chunk of steps at a time (see [`Upstream`]).
///
/// `dh_last`/`dc_last` `[B, H]` are the gradient reaching the final state (or `None`). Weight
/// gradients are accumulated into `g`.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Float>(
    cell: Cell,
    out: BackwardOut<T>,
    mut g: LayerGrads<T>,
    cache: &mut LayerCache<T>,
    mut upstream: Upstream<T>,
    dh_last: Option<&[T]>,
    dc_last: Option<&[T]>,
    x: Input<T>,
    p: LayerParams<T>,
    mut record: Option<StepGrads<T>>,
) {
    let dims = cache.dims.expect("backward needs a forward pass first");
    let (bh, gh) = (dims.batch * dims.hidden, p.b_hh.len());
    match dh_last {
        Some(d) => cache.dh_carry.copy_from_slice(d),
        None => cache.dh_carry.fill(T::ZERO),
    }
    match dc_last {
        Some(d) => cache.dc_carry.copy_from_slice(d),
        None => cache.dc_carry.fill(T::ZERO),
    }
    let per_chunk = match upstream {
        Upstream::Whole(_) => dims.steps.max(1),
        Upstream::Chunked(_) => (CHUNK_ROWS / dims.batch.max(1)).clamp(1, dims.steps.max(1)),
    };
    let mut chunk = std::mem::take(&mut cache.dh_chunk);
    if let Upstream::Chunked(_) = upstream {
        resize(&mut chunk, per_chunk * bh);
    }
    let mut token_rows = std::mem::take(&mut cache.token_rows);
    if let Input::Tokens { embedding, .. } = x {
        resize(&mut token_rows, embedding.len() / dims.input * gh);
        token_rows.fill(T::ZERO);
    }
    let mut packed = std::mem::take(&mut cache.w_packed);
    let w_hh = Recurrent::for_backward(&mut packed, p.w_hh, gh, dims);
    let mut dx = out.dx;
    let mut end = dims.steps;
    while end > 0 {
        let steps = end.saturating_sub(per_chunk)..end;
        let dh_out: &mut [T] = match &mut upstream {
            Upstream::Whole(all) => &mut all[steps.start * bh..steps.end * bh],
            Upstream::Chunked(fill) => {
                let dh = &mut chunk[..steps.len() * bh];
                fill(steps.clone(), dh);
                dh
            }
        };
        let rec = record.as_mut().map(|r| StepGrads {
            dh: &mut *r.dh,
            dc: r.dc.as_deref_mut(),
        });
        let (act, r) = (cell.activation, steps.clone());
        match cell.kind {
            CellKind::Rnn => rnn::backward_steps(act, cache, dh_out, w_hh, dims, r, rec),
            CellKind::Lstm => lstm::backward_steps(cache, &*dh_out, w_hh, dims, r, rec),
            CellKind::Gru => gru::backward_steps(cache, &*dh_out, w_hh, dims, r, rec),
        }
        // This chunk's rows of every [T, B, _] buffer.
        let rows = steps.start * dims.batch..steps.end * dims.batch;
        let da = match cell.kind {
            CellKind::Rnn => &*dh_out,
            _ => &cache.gates[rows.start * gh..rows.end * gh],
        };
        let hn = match cell.kind {
            CellKind::Gru => &cache.hn[rows.start * dims.hidden..rows.end * dims.hidden],
            _ => &[],
        };
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
        let h_prev = &cache.h[rows.start * dims.hidden..rows.end * dims.hidden];
        weight_grads(
            cell.kind,
            dx_rows,
            &mut g,
            da,
            h_prev,
            hn,
            &mut token_rows,
            input,
            p,
            dims,
        );
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
    if cell.kind == CellKind::Lstm {
        out.dc0.copy_from_slice(&cache.dc_carry);
    }
}

/// The weight gradients of one chunk of rows (all steps at once for [`Upstream::Whole`]), from
/// the pre-activation gradients `da [rows, G*H]`, the previous states `h_prev [rows, H]` and,
/// for the GRU, `hn [rows, H]` holding `dan * r`:
/// ```text
/// dW_ih += dA^T X        dW_hh += dA_hh^T H_prev     db_ih += sum dA    db_hh += sum dA_hh
/// dX = dA W_ih           (dA_hh = dA except for the GRU's n-block, dan * r)
/// ```
/// For token input, `X = S E` with `S` the one-hot rows of the ids: this only adds the chunk's
/// per-token sums of `dA` into `token_rows [V, G*H]` (`D = S^T dA`), and [`token_grads`] takes
/// the rest once.
#[allow(clippy::too_many_arguments)]
fn weight_grads<T: Float>(
    kind: CellKind,
    dx: Option<&mut [T]>,
    g: &mut LayerGrads<T>,
    da: &[T],
    h_prev: &[T],
    hn: &[T],
    token_rows: &mut [T],
    x: Input<T>,
    p: LayerParams<T>,
    dims: Dims,
) {
    let (input, hidden) = (dims.input, dims.hidden);
    let gh = kind.gates() * hidden;
    let rows = da.len() / gh;
    match x {
        Input::Dense(x) => {
            matmul(g.w_ih, da, Trans::Yes, x, Trans::No, gh, input, rows, true);
            if let Some(dx) = dx {
                matmul(dx, da, Trans::No, p.w_ih, Trans::No, rows, input, gh, false);
            }
        }
        Input::Tokens { ids, .. } => {
            for (row, &id) in da.chunks_exact(gh).zip(ids) {
                add_assign(&mut token_rows[id as usize * gh..][..gh], row);
            }
        }
    }
    sum_rows_into(g.b_ih, da);
    if kind == CellKind::Gru {
        // da_hh = [dar, daz | dan * r]: the first two blocks are those of `da`, the third was
        // written over `hn`.
        let (w_rz, w_n) = g.w_hh.split_at_mut(2 * hidden * hidden);
        matmul_strided(
            w_rz,
            da,
            gh,
            Trans::Yes,
            h_prev,
            Trans::No,
            2 * hidden,
            hidden,
            rows,
            true,
        );
        matmul(
            w_n,
            hn,
            Trans::Yes,
            h_prev,
            Trans::No,
            hidden,
            hidden,
            rows,
            true,
        );
        let (b_rz, b_n) = g.b_hh.split_at_mut(2 * hidden);
        for row in da.chunks_exact(gh) {
            add_assign(b_rz, &row[..2 * hidden]);
        }
        sum_rows_into(b_n, hn);
    } else {
        matmul(
            g.w_hh,
            da,
            Trans::Yes,
            h_prev,
            Trans::No,
            gh,
            hidden,
            rows,
            true,
        );
        sum_rows_into(g.b_hh, da);
    }
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
/// The RNN and LSTM add both biases here; the GRU keeps `b_hh` for the recurrent term.
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
