//! Attention over a layer's own earlier outputs (Luong et al. 2015 scores on a recurrent
//! language model, as Daniluk et al. 2017): forward and backward, all of its math.
//!
//! For the top layer's outputs `h_0..h_{T-1}` of one window (per batch element):
//! ```text
//! W_t   = { j : lo_t <= j < t },  lo_t = max(0, t - K)   (K = span; 0 = the whole window)
//! s_tj  = h_t . h_j / sqrt(H)                      (dot)
//!       = v^T tanh(W_q h_t + W_k h_j)              (additive; W_q, W_k [H, H], v [H])
//! a_tj  = softmax_{j in W_t}(s_tj)
//! c_t   = sum_{j in W_t} a_tj h_j                  (c_0 = 0: step 0 has no earlier state)
//! o_t   = tanh(W_c [h_t ; c_t])                    (W_c [H, 2H]; o_t feeds the decoder)
//! ```
//! A step never reads itself (`j < t`): its own state already reaches `o_t` through `W_c`.
//! Attention reads the states of the current window only, so a gradient never leaves it; in
//! sampling, a [`Memory`] of earlier states (detached, forward only) extends the window back.
//!
//! Backward, with `g_t = dL/do_t`:
//! ```text
//! dp_t  = g_t * (1 - o_t^2);  dW_c += dp^T [h ; c];  [dh_t ; dc_t] = dp_t W_c
//! dh_j += a_tj dc_t;  ds_tj = a_tj (dc_t . h_j - sum_k a_tk dc_t . h_k)
//! dot:      dh_t += sum_j ds_tj h_j / sqrt(H);  dh_j += ds_tj h_t / sqrt(H)
//! additive: u = tanh(q_t + k_j);  dv += ds_tj u;  e = ds_tj v * (1 - u^2);  dq_t += e;  dk_j += e
//!           dW_q += dq^T h;  dW_k += dk^T h;  dh += dq W_q + dk W_k
//! ```

use crate::error::{Error, Result};
use crate::tensor::{matmul, resize, Float, Trans};
use serde::{Deserialize, Serialize};

/// Whether and how the model attends to its earlier states.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Attention {
    /// No attention: the decoder reads the top layer's `h_t`.
    #[default]
    None,
    /// `s_tj = h_t . h_j / sqrt(H)`.
    Dot,
    /// `s_tj = v^T tanh(W_q h_t + W_k h_j)`.
    Additive,
}

impl Attention {
    pub fn name(self) -> &'static str {
        match self {
            Attention::None => "none",
            Attention::Dot => "dot",
            Attention::Additive => "additive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Attention::None),
            "dot" => Some(Attention::Dot),
            "additive" => Some(Attention::Additive),
            _ => None,
        }
    }

    pub fn is_on(self) -> bool {
        self != Attention::None
    }

    /// The parameter tensors, in buffer order: (name, shape) for hidden size `h`.
    pub fn params(self, h: usize) -> Vec<(&'static str, Vec<usize>)> {
        let combine = ("attention.combine.weight", vec![h, 2 * h]);
        match self {
            Attention::None => Vec::new(),
            Attention::Dot => vec![combine],
            Attention::Additive => vec![
                ("attention.query.weight", vec![h, h]),
                ("attention.key.weight", vec![h, h]),
                ("attention.score.weight", vec![1, h]),
                combine,
            ],
        }
    }

    /// Checks the pair of config fields `attention` and `attention_span`.
    pub fn validate(self, span: usize) -> Result<()> {
        if span > 0 && !self.is_on() {
            return Err(Error::Config(format!(
                "`attention_span` = {span} needs `attention` = \"dot\" or \"additive\""
            )));
        }
        Ok(())
    }
}

/// The attention parameters, views of one contiguous block laid out as [`Attention::params`]
/// (mutable for gradients via [`Params::split_mut`]).
pub struct Params<'a, T> {
    /// `[H, H]` (additive; empty for dot).
    pub w_q: &'a [T],
    pub w_k: &'a [T],
    /// `[H]` (additive).
    pub v: &'a [T],
    /// `[H, 2H]`.
    pub w_c: &'a [T],
}

impl<'a, T> Params<'a, T> {
    pub fn split(kind: Attention, block: &'a [T], h: usize) -> Self {
        let n = if kind == Attention::Additive {
            h * h
        } else {
            0
        };
        let (w_q, rest) = block.split_at(n);
        let (w_k, rest) = rest.split_at(n);
        let (v, w_c) = rest.split_at(if n > 0 { h } else { 0 });
        Params { w_q, w_k, v, w_c }
    }
}

/// Mutable gradients with the layout of [`Params`].
pub struct Grads<'a, T> {
    pub w_q: &'a mut [T],
    pub w_k: &'a mut [T],
    pub v: &'a mut [T],
    pub w_c: &'a mut [T],
}

impl<'a, T> Grads<'a, T> {
    pub fn split(kind: Attention, block: &'a mut [T], h: usize) -> Self {
        let n = if kind == Attention::Additive {
            h * h
        } else {
            0
        };
        let (w_q, rest) = block.split_at_mut(n);
        let (w_k, rest) = rest.split_at_mut(n);
        let (v, w_c) = rest.split_at_mut(if n > 0 { h } else { 0 });
        Grads { w_q, w_k, v, w_c }
    }
}

/// Earlier top-layer states that sampling keeps so that attention reads a growing window:
/// `h [P, B, H]` and, for additive scores, their key projections `k = h W_k^T [P, B, H]`.
/// Forward only: no gradient reaches them. With a span `K` only the last `K` are kept.
#[derive(Clone, Debug, Default)]
pub struct Memory<T> {
    pub h: Vec<T>,
    pub k: Vec<T>,
}

impl<T: Float> Memory<T> {
    /// Number of remembered steps `P` for `batch` rows of `hidden` values.
    pub fn steps(&self, batch: usize, hidden: usize) -> usize {
        self.h.len() / (batch * hidden).max(1)
    }

    pub fn clear(&mut self) {
        self.h.clear();
        self.k.clear();
    }
}

/// Forward values kept for backward, and backward's scratch; sized once per shape.
#[derive(Debug, Default)]
pub struct Cache<T> {
    /// `(steps, batch, hidden, width, remembered)` of the last forward.
    dims: Option<(usize, usize, usize, usize, usize)>,
    /// `[T, B, H]` the states attended over (a copy of the top layer's outputs).
    h: Vec<T>,
    /// Additive: `[T, B, H]` `q = h W_q^T` and `k = h W_k^T`; backward's `dq`, `dk`.
    q: Vec<T>,
    k: Vec<T>,
    dq: Vec<T>,
    dk: Vec<T>,
    /// `[T, B, W]` the weights `a_tj` of each step, `W` the widest window; entry `j - lo_t`.
    weights: Vec<T>,
    /// `[T, B, 2H]` `[h_t ; c_t]`; backward's `[dh_t ; dc_t]` after `W_c`.
    hc: Vec<T>,
    dhc: Vec<T>,
    /// `[T, B, H]` `o_t`.
    o: Vec<T>,
    /// `[W]` scratch for `dc_t . h_j`.
    da: Vec<T>,
}

impl<T: Float> Cache<T> {
    /// `o [T, B, H]` of the last forward.
    pub fn output(&self) -> &[T] {
        &self.o
    }

    /// The attention weights of step `t`, batch element `b`: `a_tj` for `j` in `lo_t..t`
    /// (window indices; with a [`Memory`] of `P` steps, `lo_t..P + t` counting it first).
    pub fn weights_at(&self, t: usize, b: usize) -> (usize, &[T]) {
        let (_, batch, _, width, past) = self.dims.expect("attention forward has run");
        let (lo, n) = window(past + t, width);
        let r = (t * batch + b) * width;
        (lo, &self.weights[r..r + n])
    }

    /// `(steps, batch, width)` of the last forward.
    pub fn shape(&self) -> Option<(usize, usize, usize)> {
        self.dims.map(|(t, b, _, w, _)| (t, b, w))
    }
}

/// The window of absolute step `a` with the weights buffer `width` wide: `(lo, a - lo)`.
fn window(a: usize, width: usize) -> (usize, usize) {
    let lo = a.saturating_sub(width);
    (lo, a - lo)
}

/// Widest window of `steps` steps after `past` remembered ones, with span `span` (0 = all).
fn width(steps: usize, past: usize, span: usize) -> usize {
    let widest = (past + steps).saturating_sub(1);
    if span > 0 {
        widest.min(span)
    } else {
        widest
    }
}

/// `a . b` with eight partial sums (vectorisable; one running sum is one long dependency
/// chain).
fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::ZERO; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: T = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .fold(T::ZERO, |s, (&x, &y)| s + x * y);
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().fold(tail, |s, &v| s + v)
}

/// `y += alpha x`.
fn axpy<T: Float>(y: &mut [T], alpha: T, x: &[T]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

/// `v . tanh(q + k)`.
fn additive_score<T: Float>(v: &[T], q: &[T], k: &[T]) -> T {
    let mut s = T::ZERO;
    for ((&v, &q), &k) in v.iter().zip(q).zip(k) {
        s += v * (q + k).tanh();
    }
    s
}

/// Forward over the top layer's outputs `h [T, B, H]`, after the remembered states `memory`
/// (empty in training), with span `span` (0 = the whole window). Leaves `o` in the cache.
#[allow(clippy::too_many_arguments)]
pub fn forward<T: Float>(
    kind: Attention,
    span: usize,
    cache: &mut Cache<T>,
    h_in: &[T],
    memory: &Memory<T>,
    p: &Params<T>,
    steps: usize,
    batch: usize,
    hidden: usize,
) {
    let (b_n, hh) = (batch, hidden);
    let n = steps * b_n;
    let past = memory.steps(b_n, hh);
    let w = width(steps, past, span);
    let additive = kind == Attention::Additive;
    if cache.dims != Some((steps, b_n, hh, w, past)) {
        let a = if additive { n * hh } else { 0 };
        resize(&mut cache.h, n * hh);
        resize(&mut cache.q, a);
        resize(&mut cache.k, a);
        resize(&mut cache.dq, a);
        resize(&mut cache.dk, a);
        resize(&mut cache.weights, n * w);
        resize(&mut cache.hc, n * 2 * hh);
        resize(&mut cache.dhc, n * 2 * hh);
        resize(&mut cache.o, n * hh);
        resize(&mut cache.da, w);
        cache.dims = Some((steps, b_n, hh, w, past));
    }
    cache.h.copy_from_slice(h_in);
    if additive {
        matmul(
            &mut cache.q,
            h_in,
            Trans::No,
            p.w_q,
            Trans::Yes,
            n,
            hh,
            hh,
            false,
        );
        matmul(
            &mut cache.k,
            h_in,
            Trans::No,
            p.w_k,
            Trans::Yes,
            n,
            hh,
            hh,
            false,
        );
    }
    let scale = T::from_f64(1.0 / (hh as f64).sqrt());
    // Row `(j, b)` of the states and keys, `j` counting the remembered steps first.
    let row = |j: usize, b: usize| -> (usize, bool) {
        if j < past {
            ((j * b_n + b) * hh, true)
        } else {
            (((j - past) * b_n + b) * hh, false)
        }
    };
    let Cache {
        h,
        q,
        k,
        weights,
        hc,
        ..
    } = cache;
    for t in 0..steps {
        let (lo, cnt) = window(past + t, w);
        for b in 0..b_n {
            let r = t * b_n + b;
            let ht = &h[r * hh..(r + 1) * hh];
            let wt = &mut weights[r * w..r * w + cnt];
            let mut max = T::from_f64(f64::NEG_INFINITY);
            for (i, s) in wt.iter_mut().enumerate() {
                let (o, in_mem) = row(lo + i, b);
                *s = if additive {
                    let kj = if in_mem {
                        &memory.k[o..o + hh]
                    } else {
                        &k[o..o + hh]
                    };
                    additive_score(p.v, &q[r * hh..(r + 1) * hh], kj)
                } else {
                    let hj = if in_mem {
                        &memory.h[o..o + hh]
                    } else {
                        &h[o..o + hh]
                    };
                    dot(ht, hj) * scale
                };
                max = max.max(*s);
            }
            let mut sum = T::ZERO;
            for s in wt.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            let inv = if cnt > 0 { T::ONE / sum } else { T::ZERO };
            let out = &mut hc[r * 2 * hh..(r + 1) * 2 * hh];
            let (oh, oc) = out.split_at_mut(hh);
            oh.copy_from_slice(ht);
            oc.fill(T::ZERO);
            for (i, a) in wt.iter_mut().enumerate() {
                *a *= inv;
                let (o, in_mem) = row(lo + i, b);
                let hj = if in_mem {
                    &memory.h[o..o + hh]
                } else {
                    &h[o..o + hh]
                };
                axpy(oc, *a, hj);
            }
        }
    }
    matmul(
        &mut cache.o,
        hc,
        Trans::No,
        p.w_c,
        Trans::Yes,
        n,
        hh,
        2 * hh,
        false,
    );
    for v in cache.o.iter_mut() {
        *v = v.tanh();
    }
}

/// Appends the last forward's states (and key projections) to `memory`, keeping only the
/// last `span` steps when `span > 0`.
pub fn remember<T: Float>(cache: &Cache<T>, memory: &mut Memory<T>, span: usize) {
    let (_, batch, hidden, _, _) = cache.dims.expect("attention forward has run");
    memory.h.extend_from_slice(&cache.h);
    memory.k.extend_from_slice(&cache.k);
    if span > 0 {
        let keep = span * batch * hidden;
        for v in [&mut memory.h, &mut memory.k] {
            if v.len() > keep {
                v.drain(..v.len() - keep);
            }
        }
    }
}

/// Backward after [`forward`] (without a memory): `d_o [T, B, H]`, the gradient reaching
/// `o`, is consumed; `dh [T, B, H]` receives (overwritten) the gradient reaching the states
/// through attention and `W_c`; parameter gradients are accumulated into `g`.
pub fn backward<T: Float>(
    kind: Attention,
    cache: &mut Cache<T>,
    d_o: &mut [T],
    dh: &mut [T],
    p: &Params<T>,
    g: Grads<T>,
) {
    let (steps, b_n, hh, w, past) = cache.dims.expect("attention forward has run");
    assert_eq!(
        past, 0,
        "attention backward runs on a window without memory"
    );
    let n = steps * b_n;
    let additive = kind == Attention::Additive;
    // dp = g * (1 - o^2);  dW_c += dp^T [h ; c];  [dh ; dc] = dp W_c
    for (d, &o) in d_o.iter_mut().zip(&cache.o) {
        *d *= T::ONE - o * o;
    }
    matmul(
        g.w_c,
        d_o,
        Trans::Yes,
        &cache.hc,
        Trans::No,
        hh,
        2 * hh,
        n,
        true,
    );
    matmul(
        &mut cache.dhc,
        d_o,
        Trans::No,
        p.w_c,
        Trans::No,
        n,
        2 * hh,
        hh,
        false,
    );
    for (d, s) in dh.chunks_exact_mut(hh).zip(cache.dhc.chunks_exact(2 * hh)) {
        d.copy_from_slice(&s[..hh]);
    }
    if additive {
        cache.dq.fill(T::ZERO);
        cache.dk.fill(T::ZERO);
    }
    let scale = T::from_f64(1.0 / (hh as f64).sqrt());
    let Cache {
        h,
        q,
        k,
        dq,
        dk,
        weights,
        dhc,
        da,
        ..
    } = cache;
    for t in 0..steps {
        let (lo, cnt) = window(t, w);
        for b in 0..b_n {
            let r = t * b_n + b;
            let dc = &dhc[r * 2 * hh + hh..(r + 1) * 2 * hh];
            let wt = &weights[r * w..r * w + cnt];
            let mut mean = T::ZERO;
            for (i, (d, &a)) in da[..cnt].iter_mut().zip(wt).enumerate() {
                let j = (lo + i) * b_n + b;
                *d = dot(dc, &h[j * hh..(j + 1) * hh]);
                mean += a * *d;
                axpy(&mut dh[j * hh..(j + 1) * hh], a, dc);
            }
            for (i, (&d, &a)) in da[..cnt].iter().zip(wt).enumerate() {
                let j = (lo + i) * b_n + b;
                let ds = a * (d - mean);
                if additive {
                    let (qt, kj) = (&q[r * hh..(r + 1) * hh], &k[j * hh..(j + 1) * hh]);
                    for m in 0..hh {
                        let u = (qt[m] + kj[m]).tanh();
                        g.v[m] += ds * u;
                        let e = ds * p.v[m] * (T::ONE - u * u);
                        dq[r * hh + m] += e;
                        dk[j * hh + m] += e;
                    }
                } else {
                    // j < t: rows j and t of dh are disjoint.
                    let (head, tail) = dh.split_at_mut(r * hh);
                    axpy(&mut tail[..hh], ds * scale, &h[j * hh..(j + 1) * hh]);
                    axpy(
                        &mut head[j * hh..(j + 1) * hh],
                        ds * scale,
                        &h[r * hh..(r + 1) * hh],
                    );
                }
            }
        }
    }
    if additive {
        matmul(g.w_q, dq, Trans::Yes, h, Trans::No, hh, hh, n, true);
        matmul(g.w_k, dk, Trans::Yes, h, Trans::No, hh, hh, n, true);
        matmul(dh, dq, Trans::No, p.w_q, Trans::No, n, hh, hh, true);
        matmul(dh, dk, Trans::No, p.w_k, Trans::No, n, hh, hh, true);
    }
}

/// Scratch for [`target_vjp`], sized once for a cache.
#[derive(Debug, Default)]
pub struct VjpScratch<T> {
    /// `[H]` `dp`, `[2H]` `[dh ; dc]`, `[W]` `dc . h_j`, `[H]` `e`.
    dp: Vec<T>,
    dhc: Vec<T>,
    da: Vec<T>,
    e: Vec<T>,
}

/// The gradient of one target's loss through the attention of its own step `t` (batch
/// element `b`), from `g = dJ/do_t` `[H]`, after [`forward`] (no memory; before backward):
/// `dh_t` `[H]` (overwritten: through `W_c` and the query) and, for each `j` of the window
/// `lo_t..t`, the one-hop gradient `dJ/dh_j` through attention (value and key) into row
/// `j - lo_t` of `dh_window` `[W, H]` (overwritten). Returns `lo_t`. Same math as
/// [`backward`], one row at a time (the gradient-flow analysis separates the paths with it).
#[allow(clippy::too_many_arguments)]
pub fn target_vjp<T: Float>(
    kind: Attention,
    cache: &Cache<T>,
    p: &Params<T>,
    t: usize,
    b: usize,
    g: &[T],
    dh_t: &mut [T],
    dh_window: &mut [T],
    s: &mut VjpScratch<T>,
) -> usize {
    let (_, b_n, hh, w, past) = cache.dims.expect("attention forward has run");
    assert_eq!(past, 0, "the analysis runs on a window without memory");
    resize(&mut s.dp, hh);
    resize(&mut s.dhc, 2 * hh);
    resize(&mut s.da, w);
    resize(&mut s.e, hh);
    let r = t * b_n + b;
    for ((d, &g), &o) in s.dp.iter_mut().zip(g).zip(&cache.o[r * hh..(r + 1) * hh]) {
        *d = g * (T::ONE - o * o);
    }
    // [dh ; dc] = dp W_c   ([1, H] x [H, 2H])
    matmul(
        &mut s.dhc,
        &s.dp,
        Trans::No,
        p.w_c,
        Trans::No,
        1,
        2 * hh,
        hh,
        false,
    );
    dh_t.copy_from_slice(&s.dhc[..hh]);
    let dc = &s.dhc[hh..];
    let (lo, cnt) = window(t, w);
    let wt = &cache.weights[r * w..r * w + cnt];
    let h = &cache.h;
    let mut mean = T::ZERO;
    for (i, (d, &a)) in s.da[..cnt].iter_mut().zip(wt).enumerate() {
        let j = (lo + i) * b_n + b;
        *d = dot(dc, &h[j * hh..(j + 1) * hh]);
        mean += a * *d;
    }
    let scale = T::from_f64(1.0 / (hh as f64).sqrt());
    let ht = &h[r * hh..(r + 1) * hh];
    for (i, (&d, &a)) in s.da[..cnt].iter().zip(wt).enumerate() {
        let j = (lo + i) * b_n + b;
        let ds = a * (d - mean);
        let out = &mut dh_window[i * hh..(i + 1) * hh];
        for (o, &c) in out.iter_mut().zip(dc) {
            *o = a * c;
        }
        if kind == Attention::Additive {
            let (qt, kj) = (
                &cache.q[r * hh..(r + 1) * hh],
                &cache.k[j * hh..(j + 1) * hh],
            );
            for m in 0..hh {
                let u = (qt[m] + kj[m]).tanh();
                s.e[m] = ds * p.v[m] * (T::ONE - u * u);
            }
            // dh_j += e W_k;  dh_t += e W_q
            matmul(out, &s.e, Trans::No, p.w_k, Trans::No, 1, hh, hh, true);
            matmul(dh_t, &s.e, Trans::No, p.w_q, Trans::No, 1, hh, hh, true);
        } else {
            axpy(out, ds * scale, ht);
            axpy(dh_t, ds * scale, &h[j * hh..(j + 1) * hh]);
        }
    }
    lo
}
