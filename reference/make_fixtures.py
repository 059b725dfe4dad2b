#!/usr/bin/env python3
"""Generate small PyTorch reference fixtures for the rnnscope Rust tests.

Each fixture is one tiny recurrent language model

    embedding = nn.Embedding(V, E)
    rnn       = nn.RNN / nn.LSTM / nn.GRU(E, H, num_layers=L)   (time-major)
    decoder   = nn.Linear(H, V)

    logits    = decoder(rnn(embedding(input), h0)[0])            [T, B, V]
    step_loss = cross_entropy(logits, target, reduction='none')  [T, B]
    loss      = step_loss.mean()                                 (over all T*B tokens)

together with its forward intermediates and the gradients of `loss` with
respect to every parameter and the initial state(s).

Procedure for each case:
  1. torch.manual_seed(<case seed>); build the model with PyTorch's default init
     (float32); for LSTM add 0.5 to every bias_hh so the biases are not just the
     default init; draw h0 (and c0) = randn(L, B, H) * 0.5; draw input and target
     = randint(V, (T, B)).  Everything is therefore exactly float32-representable.
  2. Convert the model and the states to float64 and run forward + backward in
     float64 (a more accurate reference than a float32 run).
  3. Recompute per-layer hidden states (and LSTM cell states) independently and
     assert they agree with PyTorch's output.
  4. Store every float tensor as float32 (tokens as int64) in
     reference/fixtures/<case>.safetensors, with the sizes in the metadata.

Tensor names in each file (the Rust tests rely on these exact names):
  input, target                      [T,B] int64
  <parameter state-dict names>       e.g. embedding.weight, rnn.weight_ih_l0, ...
                                     (tied case: decoder.weight omitted; it IS
                                     embedding.weight)
  h0 [L,B,H], c0 [L,B,H] (lstm)      initial states
  hidden_l0, hidden_l1 [T,B,H]       per-step hidden output of each layer
  cell_l0, cell_l1 [T,B,H] (lstm)    per-step cell state of each layer
  hT [L,B,H], cT [L,B,H] (lstm)      final states
  logits [T,B,V], step_loss [T,B], loss [1]
  grad.<parameter name>, grad.h0, grad.c0 (lstm)   d loss / d ...

Gate layouts follow PyTorch: LSTM rows are [i, f, g, o], GRU rows are [r, z, n]
(with n = tanh(W_in x + b_in + r * (W_hn h + b_hn))).

Two more kinds of fixture (see their functions for the tensor names):
  optimizers.safetensors          several torch.optim steps of every optimizer
                                  (make_optimizer_fixture)
  tied_state_dict.safetensors     model.state_dict() of a tied model, as PyTorch
  tied_state_dict_data.safetensors  saves it, and the loss it gives
                                  (make_state_dict_fixture)

And the remedies (make_remedy_case): orthogonal_rnn_* (W_hh = matrix_exp of a skew-symmetric
generator, tanh and modReLU) and residual_* (3-layer stacks with o^k = h^k + o^(k-1)), written
out with torch autograd, their rnnscope config in the metadata.

And attention_* (make_attention_case): a torch.nn cell whose top layer's states are attended
over (dot or additive scores, optional span), its rnnscope config in the metadata.

And lstm_proj* (make_projection_case; wlm_lstm_proj, a word_language_model state dict with a
projection: make_projected_model_fixture): nn.LSTM(proj_size=P) language models, h_t = W_hr (o *
tanh(c_t)) with P values (weight_hr_l{k} [P, H], weight_hh_l{k} [4H, P], decoder [V, P]); the
tensors of the cases above with hidden_l*, hT, h0 [.., P] and cell_l*, cT, c0 [.., H].

Usage:  python3 reference/make_fixtures.py      (writes reference/fixtures/)
        python3 reference/make_fixtures.py attention   (only the attention_* fixtures)
"""

from __future__ import annotations

import json
import os
import sys
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

# ---------------------------------------------------------------------------
# Sizes and cases
# ---------------------------------------------------------------------------
class Sizes(NamedTuple):
    E: int  # embedding (H when tied)
    H: int  # hidden
    V: int  # vocabulary
    T: int  # steps
    B: int  # batch
    L: int  # layers


SMALL = Sizes(E=7, H=11, V=13, T=9, B=4, L=2)
# Long passes: T*B >= 64 rows, so rnnscope multiplies by its packed W_hh step by step (H = 20:
# ragged 16-column panels). TOKENS: T*B >= V without dropout, so layer 0 reads its input per
# vocabulary row (`ModelConfig::projects_tokens`); EMBEDDED: V > T*B, so layer 0 reads the
# [T, B, E] embedding output.
LONG_TOKENS = Sizes(E=7, H=20, V=13, T=9, B=8, L=2)
LONG_EMBEDDED = Sizes(E=7, H=20, V=65, T=8, B=8, L=2)

# name -> (cell, nonlinearity, tied, seed, sizes)
CASES = {
    "rnn_tanh": ("rnn", "tanh", False, 1001, SMALL),
    "rnn_relu": ("rnn", "relu", False, 1002, SMALL),
    "lstm": ("lstm", "none", False, 1003, SMALL),
    "gru": ("gru", "none", False, 1004, SMALL),
    "lstm_tied": ("lstm", "none", True, 1005, SMALL),
    "long_tokens_rnn_tanh": ("rnn", "tanh", False, 1011, LONG_TOKENS),
    "long_tokens_lstm": ("lstm", "none", False, 1012, LONG_TOKENS),
    "long_tokens_gru": ("gru", "none", False, 1013, LONG_TOKENS),
    "long_embedded_rnn_tanh": ("rnn", "tanh", False, 1021, LONG_EMBEDDED),
    "long_embedded_lstm": ("lstm", "none", False, 1022, LONG_EMBEDDED),
    "long_embedded_gru": ("gru", "none", False, 1023, LONG_EMBEDDED),
}

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

# Tolerance for comparing two float64 computations of the same quantity.
TOL64 = 1e-12


class LM(nn.Module):
    """embedding -> multi-layer RNN -> linear decoder (time-major)."""

    def __init__(self, cell: str, nonlinearity: str, sz: Sizes, tied: bool):
        super().__init__()
        H, V, L, emb = sz.H, sz.V, sz.L, sz.E
        self.embedding = nn.Embedding(V, emb)
        if cell == "rnn":
            self.rnn = nn.RNN(emb, H, num_layers=L, nonlinearity=nonlinearity)
        elif cell == "lstm":
            self.rnn = nn.LSTM(emb, H, num_layers=L)
        elif cell == "gru":
            self.rnn = nn.GRU(emb, H, num_layers=L)
        else:
            raise ValueError(cell)
        self.decoder = nn.Linear(H, V)
        if tied:
            assert emb == H, "tying needs E == H"
            self.decoder.weight = self.embedding.weight  # same Parameter object

    def forward(self, tokens, state):
        out, final = self.rnn(self.embedding(tokens), state)
        return self.decoder(out), out, final


# ---------------------------------------------------------------------------
# Independent float64 re-implementations of one layer (for checking)
# ---------------------------------------------------------------------------
def layer_params(rnn: nn.Module, k: int):
    return tuple(
        getattr(rnn, f"{n}_l{k}").detach()
        for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    )


def manual_layer(cell, nonlinearity, params, xs, h, c=None, preacts=None):
    """Run one layer over xs [T,B,in] from h (and c). Returns (hs, cs or None).
    For the plain RNN, the pre-activations are appended to `preacts` if given."""
    w_ih, w_hh, b_ih, b_hh = params
    hs, cs = [], []
    for x in xs:
        gi = x @ w_ih.T + b_ih
        gh = h @ w_hh.T + b_hh
        if cell == "rnn":
            a = gi + gh
            if preacts is not None:
                preacts.append(a)
            h = torch.tanh(a) if nonlinearity == "tanh" else torch.relu(a)
        elif cell == "lstm":
            i, f, g, o = (gi + gh).chunk(4, dim=-1)
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            c = f * c + i * g
            h = o * torch.tanh(c)
            cs.append(c)
        elif cell == "gru":
            ir, iz, in_ = gi.chunk(3, dim=-1)
            hr, hz, hn = gh.chunk(3, dim=-1)
            r = torch.sigmoid(ir + hr)
            z = torch.sigmoid(iz + hz)
            n = torch.tanh(in_ + r * hn)
            h = (1 - z) * n + z * h
        hs.append(h)
    return torch.stack(hs), (torch.stack(cs) if cs else None)


def single_layer_module(cell, nonlinearity, in_size, H, params):
    """A 1-layer PyTorch module of the same type with the given layer weights."""
    if cell == "rnn":
        m = nn.RNN(in_size, H, num_layers=1, nonlinearity=nonlinearity)
    elif cell == "lstm":
        m = nn.LSTM(in_size, H, num_layers=1)
    else:
        m = nn.GRU(in_size, H, num_layers=1)
    m = m.double()
    with torch.no_grad():
        for name, p in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), params):
            getattr(m, f"{name}_l0").copy_(p)
    return m


def maxdiff(a, b):
    return (a - b).abs().max().item()


# ---------------------------------------------------------------------------
# One case
# ---------------------------------------------------------------------------
def make_case(name, cell, nonlinearity, tied, seed, sz):
    if tied:
        sz = sz._replace(E=sz.H)
    emb, H, V, T, B, L = sz
    is_lstm = cell == "lstm"

    # 1. Deterministic float32 construction.
    torch.manual_seed(seed)
    model = LM(cell, nonlinearity, sz, tied)
    if is_lstm:
        with torch.no_grad():
            for k in range(L):
                getattr(model.rnn, f"bias_hh_l{k}").add_(0.5)
    h0_32 = torch.randn(L, B, H) * 0.5
    c0_32 = torch.randn(L, B, H) * 0.5 if is_lstm else None
    tokens = torch.randint(V, (T, B))
    target = torch.randint(V, (T, B))
    for p in model.parameters():
        assert p.dtype == torch.float32

    # 2. float64 forward/backward.
    model = model.double()
    if tied:
        # .double() converts in place, but re-assert the tie to be safe.
        model.decoder.weight = model.embedding.weight
        assert model.decoder.weight is model.embedding.weight
    h0 = h0_32.double().requires_grad_(True)
    c0 = c0_32.double().requires_grad_(True) if is_lstm else None
    state = (h0, c0) if is_lstm else h0

    logits, out, final = model(tokens, state)
    step_loss = F.cross_entropy(
        logits.reshape(T * B, V), target.reshape(T * B), reduction="none"
    ).reshape(T, B)
    loss = step_loss.mean()
    model.zero_grad(set_to_none=True)
    loss.backward()

    hT, cT = (final if is_lstm else (final, None))

    # 3. Per-layer hidden states via PyTorch 1-layer modules.
    with torch.no_grad():
        x0 = model.embedding(tokens)
        p0, p1 = layer_params(model.rnn, 0), layer_params(model.rnn, 1)
        m0 = single_layer_module(cell, nonlinearity, emb, H, p0)
        m1 = single_layer_module(cell, nonlinearity, H, H, p1)
        s0 = (h0[0:1], c0[0:1]) if is_lstm else h0[0:1]
        s1 = (h0[1:2], c0[1:2]) if is_lstm else h0[1:2]
        hidden_l0, _ = m0(x0, s0)
        hidden_l1, _ = m1(hidden_l0, s1)
        # Layer 0 must feed layer 1 consistently with the 2-layer module.
        assert maxdiff(hidden_l1, out) < TOL64, maxdiff(hidden_l1, out)
        assert maxdiff(hidden_l0[-1], hT[0]) < TOL64
        assert maxdiff(hidden_l1[-1], hT[1]) < TOL64

        # Explicit re-implementation of the cell equations (all cell types;
        # mandatory for LSTM because it is where the cell states come from).
        preacts = []
        mh0, mc0 = manual_layer(cell, nonlinearity, p0, x0, h0[0], c0[0] if is_lstm else None, preacts)
        mh1, mc1 = manual_layer(cell, nonlinearity, p1, mh0, h0[1], c0[1] if is_lstm else None, preacts)
        d0, d1 = maxdiff(mh0, hidden_l0), maxdiff(mh1, hidden_l1)
        assert d0 < TOL64 and d1 < TOL64, (d0, d1)
        if is_lstm:
            assert maxdiff(mc0[-1], cT[0]) < TOL64
            assert maxdiff(mc1[-1], cT[1]) < TOL64
        if nonlinearity == "relu":
            # No pre-activation may sit so close to the ReLU kink that a float32
            # implementation could land on the other side of it.
            margin = min(a.abs().min().item() for a in preacts)
            assert margin > 1e-4, f"ReLU pre-activation too close to 0: {margin}"
        manual_logits = model.decoder(mh1)
        assert maxdiff(manual_logits, logits) < TOL64

    # Spot-check a few gradient entries by central finite differences (float64).
    fd_check(model, tokens, target, state, is_lstm, V)
    if tied:
        check_tied_grad(model, tokens, target, state, is_lstm, V)

    # 4. Collect tensors (float32 except tokens).
    def f32(t):
        return t.detach().to(torch.float32).contiguous().numpy()

    tensors = {
        "input": tokens.to(torch.int64).numpy(),
        "target": target.to(torch.int64).numpy(),
    }
    params = list(model.named_parameters())  # shared params are listed once
    names = [n for n, _ in params]
    if tied:
        assert "decoder.weight" not in names and "embedding.weight" in names
    for n, p in params:
        tensors[n] = f32(p)
    tensors["h0"] = f32(h0)
    if is_lstm:
        tensors["c0"] = f32(c0)
    tensors["hidden_l0"] = f32(hidden_l0)
    tensors["hidden_l1"] = f32(hidden_l1)
    if is_lstm:
        tensors["cell_l0"] = f32(mc0)
        tensors["cell_l1"] = f32(mc1)
    tensors["hT"] = f32(hT)
    if is_lstm:
        tensors["cT"] = f32(cT)
    tensors["logits"] = f32(logits)
    tensors["step_loss"] = f32(step_loss)
    tensors["loss"] = f32(loss.reshape(1))
    for n, p in params:
        tensors[f"grad.{n}"] = f32(p.grad)
    tensors["grad.h0"] = f32(h0.grad)
    if is_lstm:
        tensors["grad.c0"] = f32(c0.grad)

    metadata = {
        "E": str(emb), "H": str(H), "V": str(V), "T": str(T), "B": str(B), "L": str(L),
        "cell": cell, "nonlinearity": nonlinearity, "tied": "true" if tied else "false",
        "seed": str(seed), "torch_version": torch.__version__,
    }
    path = os.path.join(OUT_DIR, f"{name}.safetensors")
    save_file(tensors, path, metadata=metadata)
    canonicalise_metadata_order(path)
    print(f"{name}: loss = {loss.item():.10f}  (manual-vs-torch max diff {max(d0, d1):.1e})")
    return path


def canonicalise_metadata_order(path):
    """safetensors writes the metadata dict in hash-map (random) order; rewrite the
    header with sorted metadata keys so regenerating gives byte-identical files.
    Only key order changes, so the header length and all data offsets stay the same."""
    import json
    import struct

    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    raw = blob[8 : 8 + n]
    header = json.loads(raw)
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    new = json.dumps(header, separators=(",", ":")).encode()
    new = new + b" " * (n - len(new))  # keep the original (8-aligned) length
    assert len(new) == n and json.loads(new) == json.loads(raw)
    with open(path, "wb") as f:
        f.write(blob[:8] + new + blob[8 + n :])
    os.chmod(path, 0o644)  # safetensors creates files owner-only (0600)


def fd_check(model, tokens, target, state, is_lstm, V, eps=1e-6):
    """Compare a handful of autograd gradient entries with central differences."""
    h0 = state[0] if is_lstm else state

    def loss_fn():
        with torch.no_grad():
            logits, _, _ = model(tokens, state)
            return F.cross_entropy(logits.reshape(-1, V), target.reshape(-1)).item()

    probes = [(p, p.grad) for _, p in model.named_parameters()] + [(h0, h0.grad)]
    if is_lstm:
        probes.append((state[1], state[1].grad))
    for tensor, grad in probes:
        flat, gflat = tensor.data.view(-1), grad.view(-1)
        for idx in (0, flat.numel() // 2, flat.numel() - 1):
            old = flat[idx].item()
            flat[idx] = old + eps
            lp = loss_fn()
            flat[idx] = old - eps
            lm = loss_fn()
            flat[idx] = old
            fd = (lp - lm) / (2 * eps)
            assert abs(fd - gflat[idx].item()) < 1e-7, (fd, gflat[idx].item())


def check_tied_grad(model, tokens, target, state, is_lstm, V):
    """The tied gradient must equal the sum of the embedding-use and decoder-use
    gradients of an otherwise identical untied model."""
    import copy

    untied = copy.deepcopy(model)
    untied.decoder.weight = nn.Parameter(model.embedding.weight.detach().clone())
    assert untied.decoder.weight is not untied.embedding.weight
    st = tuple(s.detach() for s in state) if is_lstm else state.detach()
    logits, _, _ = untied(tokens, st)
    F.cross_entropy(logits.reshape(-1, V), target.reshape(-1)).backward()
    summed = untied.embedding.weight.grad + untied.decoder.weight.grad
    assert maxdiff(summed, model.embedding.weight.grad) < TOL64


# ---------------------------------------------------------------------------
# Optimizers: several steps of torch.optim from the same parameters and gradients
# ---------------------------------------------------------------------------
OPT_N, OPT_STEPS, OPT_SEED = 24, 5, 2001
# Learning rate of each step, as a multiple of the case's `lr` (a schedule in miniature:
# AdamW's decoupled decay uses the current rate).
OPT_LR_FACTORS = [1.0, 0.5, 0.25, 1.0, 2.0]

# name -> (torch.optim class, its keyword arguments). A large eps (1e-3, against gradients
# down to 1e-3) makes where eps enters the update matter; betas other than the defaults make
# Adam's moments after its first step matter.
OPT_CASES = {
    "sgd": ("SGD", dict(lr=0.1)),
    "sgd_momentum": ("SGD", dict(lr=0.1, momentum=0.9)),
    "sgd_momentum_l2": ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.05)),
    "adagrad": ("Adagrad", dict(lr=0.1, eps=1e-3)),
    "adagrad_l2": ("Adagrad", dict(lr=0.1, eps=1e-3, weight_decay=0.05)),
    "rmsprop": ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-3)),
    "rmsprop_l2": ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-3, weight_decay=0.05)),
    "adam": ("Adam", dict(lr=0.01, betas=(0.8, 0.95), eps=1e-3)),
    "adam_defaults": ("Adam", dict(lr=0.01)),
    "adam_l2": ("Adam", dict(lr=0.01, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.05)),
    "adamw": ("AdamW", dict(lr=0.05, betas=(0.8, 0.95), eps=1e-3, weight_decay=0.5)),
}


def manual_optimizer(cls, kw, p, grads, lrs):
    """torch.optim's documented update rules, written out (float64), for checking torch."""
    mom, wd = kw.get("momentum", 0.0), kw.get("weight_decay", 0.0)
    b1, b2 = kw.get("betas", (0.9, 0.999))
    alpha = kw.get("alpha", 0.99)
    eps = kw.get("eps", {"Adagrad": 1e-10}.get(cls, 1e-8))
    m, v, out = torch.zeros_like(p), torch.zeros_like(p), []
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        if cls == "AdamW":
            p = p * (1 - lr * wd)
        elif wd:
            g = g + wd * p
        if cls == "SGD":
            m = mom * m + g
            p = p - lr * m
        elif cls == "Adagrad":
            m = m + g * g
            p = p - lr * g / (m.sqrt() + eps)
        elif cls == "RMSprop":
            v = alpha * v + (1 - alpha) * g * g
            p = p - lr * g / (v.sqrt() + eps)
        else:
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            p = p - lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
        out.append(p)
    return torch.stack(out)


def make_optimizer_fixture():
    """optimizers.safetensors (float64): params0 [N], grads [S, N], and for each case
    `<case>.lr` [S] (the rate of each step) and `<case>.params` [S, N] (after each step);
    metadata `<case>` is the optimizer as JSON (`optimizer`, `lr`, `momentum`, `betas`, `alpha`,
    `eps`, `weight_decay`, with torch.optim's defaults filled in)."""
    g = torch.Generator().manual_seed(OPT_SEED)
    p0 = torch.randn(OPT_N, generator=g, dtype=torch.float64)
    # Gradient scales from 1e-3 to 1e1 per coordinate; signs change from step to step, and
    # step 3 has zero gradients in three coordinates (state, not gradient, moves them then).
    scale = torch.logspace(-3, 1, OPT_N, dtype=torch.float64)
    grads = torch.randn(OPT_STEPS, OPT_N, generator=g, dtype=torch.float64) * scale
    grads[2, :3] = 0.0
    tensors = {"params0": p0.numpy(), "grads": grads.numpy()}
    metadata = {"N": str(OPT_N), "steps": str(OPT_STEPS), "torch_version": torch.__version__}
    for name, (cls, kw) in OPT_CASES.items():
        lrs = [kw["lr"] * f for f in OPT_LR_FACTORS]
        p = p0.clone().requires_grad_(True)
        opt = getattr(torch.optim, cls)([p], foreach=False, **kw)
        after = []
        for grad, lr in zip(grads, lrs):
            for group in opt.param_groups:
                group["lr"] = lr
            p.grad = grad.clone()
            opt.step()
            after.append(p.detach().clone())
        after = torch.stack(after)
        manual = manual_optimizer(cls, kw, p0.clone(), grads, lrs)
        assert maxdiff(after, manual) < TOL64, (name, maxdiff(after, manual))
        d = opt.param_groups[0]
        hyper = {
            "optimizer": cls.lower(),
            "lr": kw["lr"],
            "momentum": d.get("momentum", 0.0),
            "betas": list(d.get("betas", (0.9, 0.999))),
            "alpha": d.get("alpha", 0.99),
            "eps": d["eps"] if "eps" in d else 0.0,
            "weight_decay": d.get("weight_decay", 0.0),
        }
        assert d.get("dampening", 0.0) == 0.0 and not d.get("nesterov", False)
        assert not d.get("centered", False) and not d.get("amsgrad", False)
        assert d.get("lr_decay", 0.0) == 0.0 and d.get("initial_accumulator_value", 0.0) == 0.0
        metadata[name] = json.dumps(hyper, sort_keys=True)
        tensors[f"{name}.lr"] = np.array(lrs, dtype=np.float64)
        tensors[f"{name}.params"] = after.numpy()
    path = os.path.join(OUT_DIR, "optimizers.safetensors")
    save_file(tensors, path, metadata=metadata)
    canonicalise_metadata_order(path)
    print(f"optimizers: {len(OPT_CASES)} cases x {OPT_STEPS} steps")
    return path


# ---------------------------------------------------------------------------
# A tied model saved the way a PyTorch user saves one: its state_dict
# ---------------------------------------------------------------------------
def make_state_dict_fixture():
    """tied_state_dict.safetensors: exactly `model.state_dict()` of a tied GRU language model
    (float32, both `embedding.weight` and `decoder.weight`, no metadata), written with
    safetensors.torch.save_file after cloning each tensor (save_file refuses shared storage).
    tied_state_dict_data.safetensors: input, target [T,B] int64 and, from a zero initial state,
    logits [T,B,V], step_loss [T,B] and loss [1] (computed in float64, stored as float32)."""
    from safetensors.torch import save_file as save_torch

    sz = SMALL._replace(E=SMALL.H)
    torch.manual_seed(1031)
    model = LM("gru", "none", sz, tied=True)
    tokens = torch.randint(sz.V, (sz.T, sz.B))
    target = torch.randint(sz.V, (sz.T, sz.B))
    sd = model.state_dict()
    assert "embedding.weight" in sd and "decoder.weight" in sd
    assert sd["embedding.weight"].data_ptr() == sd["decoder.weight"].data_ptr()
    path = os.path.join(OUT_DIR, "tied_state_dict.safetensors")
    save_torch({k: v.detach().clone() for k, v in sd.items()}, path)
    os.chmod(path, 0o644)

    m64 = model.double()
    with torch.no_grad():
        out, _ = m64.rnn(m64.embedding(tokens))  # zero initial state
        logits = m64.decoder(out)
        step_loss = F.cross_entropy(
            logits.reshape(-1, sz.V), target.reshape(-1), reduction="none"
        ).reshape(sz.T, sz.B)
    data = {
        "input": tokens.numpy(),
        "target": target.numpy(),
        "logits": logits.to(torch.float32).numpy(),
        "step_loss": step_loss.to(torch.float32).numpy(),
        "loss": step_loss.mean().reshape(1).to(torch.float32).numpy(),
    }
    meta = {"T": str(sz.T), "B": str(sz.B), "torch_version": torch.__version__}
    data_path = os.path.join(OUT_DIR, "tied_state_dict_data.safetensors")
    save_file(data, data_path, metadata=meta)
    canonicalise_metadata_order(data_path)
    print(f"tied_state_dict: loss = {step_loss.mean().item():.10f}")
    return [path, data_path]


# ---------------------------------------------------------------------------
# Models as PyTorch users save them: word_language_model and a bare nn.LSTM
# ---------------------------------------------------------------------------
WLM_TRAIN = """the cat sat on the mat
the dog sat on the log
a cat saw a dog <unk>
the dog saw the cat on the mat
a bird sat on the dog
"""
# Held-out text: `fish` is not in the vocabulary (read as `<unk>`).
WLM_EVAL = """the bird saw a cat
a dog sat on the fish
"""


class RNNModel(nn.Module):
    """PyTorch's examples/word_language_model/model.py (RNNModel, LSTM/GRU branch), verbatim in
    its names: encoder, rnn, decoder."""

    def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False):
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input, hidden=None):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        return self.decoder(self.drop(output)), hidden


def wlm_tokenize(text, idx2word, word2idx, add):
    """word_language_model's data.py: words split on whitespace, `<eos>` after every line,
    words added to the dictionary in order of first appearance. Unknown words (add=False) are
    read as `<unk>`."""
    ids = []
    for line in text.splitlines():
        for w in line.split() + ["<eos>"]:
            if w not in word2idx:
                if add:
                    word2idx[w] = len(idx2word)
                    idx2word.append(w)
                else:
                    w = "<unk>"
            ids.append(word2idx[w])
    return torch.tensor(ids)


def train_briefly(model, forward, ids, steps=150):
    """A few full-batch Adam steps on `ids` (so that greedy samples follow the text)."""
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        logits = forward(ids[:-1].unsqueeze(1))
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[1:]).backward()
        opt.step()
    model.eval()


def greedy(forward, prime, n):
    """Greedy continuation of `prime` (token ids) by `n` tokens; the state runs on from the
    prime. Returns the new ids and the smallest gap between the best and second-best logit."""
    out, gap, state = [], float("inf"), None
    x = torch.tensor(prime).unsqueeze(1)
    with torch.no_grad():
        for _ in range(n):
            logits, state = forward(x, state)
            top = torch.topk(logits[-1, 0], 2).values
            gap = min(gap, (top[0] - top[1]).item())
            nxt = int(logits[-1, 0].argmax())
            out.append(nxt)
            x = torch.tensor([[nxt]])
    return out, gap


def make_pytorch_model_fixtures():
    """wlm_lstm.safetensors: `model.state_dict()` of word_language_model's RNNModel('LSTM', V,
    8, 10, 2, tied=False) after a few Adam steps on WLM_TRAIN, cloned and saved with
    safetensors.torch.save_file as a user would; wlm_vocab.txt: its dictionary, one word per
    line (`idx2word`; `<unk>` is not token 0); wlm_eval.txt: held-out text.
    bare_lstm.safetensors: `nn.LSTM(V, V).state_dict()` (names `weight_ih_l0`, ... without a
    module prefix) of a char model reading one-hot characters and emitting logits as its output,
    trained likewise on WLM_TRAIN (bare_lstm.pt: the same, written by torch.save); bare_vocab.json: its characters as a JSON list (no `<unk>`).
    pytorch_models_data.safetensors (float64): for each model `<m>.loss` [1] on its eval text
    (one pass from a zero state, as `rnnscope eval --batch 1`), and in the metadata `<m>.prime`
    and `<m>.greedy`: the greedy continuation of the prime as the text rnnscope prints."""
    from safetensors.torch import save_file as save_torch

    paths, data, meta = [], {}, {"torch_version": torch.__version__}

    # word_language_model
    idx2word, word2idx = [], {}
    train_ids = wlm_tokenize(WLM_TRAIN, idx2word, word2idx, add=True)
    assert idx2word.index("<unk>") > 1
    V = len(idx2word)
    torch.manual_seed(1201)
    wlm = RNNModel("LSTM", V, 8, 10, 2, dropout=0.0)
    train_briefly(wlm, lambda x: wlm(x)[0], train_ids)
    path = os.path.join(OUT_DIR, "wlm_lstm.safetensors")
    save_torch({k: v.detach().contiguous().clone() for k, v in wlm.state_dict().items()}, path)
    os.chmod(path, 0o644)
    paths.append(path)
    with open(os.path.join(OUT_DIR, "wlm_vocab.txt"), "w") as f:
        f.write("\n".join(idx2word) + "\n")
    with open(os.path.join(OUT_DIR, "wlm_eval.txt"), "w") as f:
        f.write(WLM_EVAL)
    w64 = wlm.double()
    eval_ids = wlm_tokenize(WLM_EVAL, idx2word, word2idx, add=False)
    with torch.no_grad():
        logits = w64(eval_ids[:-1].unsqueeze(1))[0]
        data["wlm.loss"] = F.cross_entropy(logits.reshape(-1, V), eval_ids[1:]).reshape(1)
    prime = "the dog"
    ids, gap = greedy(w64, [word2idx[w] for w in prime.split()], 12)
    assert gap > 1e-3, gap
    text = prime
    for i in ids:
        text += "\n" if idx2word[i] == "<eos>" else ("" if text.endswith("\n") else " ") + idx2word[i]
    meta["wlm.prime"], meta["wlm.greedy"] = prime, text
    print(f"wlm_lstm: eval loss = {data['wlm.loss'].item():.10f}; greedy: {text!r}")

    # a bare nn.LSTM over one-hot characters whose output is the logits
    chars = sorted(set(WLM_TRAIN))
    C = len(chars)
    cid = {c: i for i, c in enumerate(chars)}
    torch.manual_seed(1202)
    bare = nn.LSTM(C, C)
    onehot = lambda x: F.one_hot(x, C).to(next(bare.parameters()).dtype)
    char_ids = torch.tensor([cid[c] for c in WLM_TRAIN])
    train_briefly(bare, lambda x: bare(onehot(x))[0], char_ids, steps=300)
    path = os.path.join(OUT_DIR, "bare_lstm.safetensors")
    save_torch({k: v.detach().contiguous().clone() for k, v in bare.state_dict().items()}, path)
    os.chmod(path, 0o644)
    paths.append(path)
    # The same state dict as torch.save writes it (a zip of pickles), which rnnscope refuses
    # with the conversion command.
    torch.save(bare.state_dict(), os.path.join(OUT_DIR, "bare_lstm.pt"))
    with open(os.path.join(OUT_DIR, "bare_vocab.json"), "w") as f:
        json.dump(chars, f)
    bare64 = bare.double()
    eval_text = "the cat saw a bird\n"
    ev = torch.tensor([cid[c] for c in eval_text])
    with torch.no_grad():
        logits = bare64(onehot(ev[:-1].unsqueeze(1)))[0]
        data["bare.loss"] = F.cross_entropy(logits.reshape(-1, C), ev[1:]).reshape(1)
    prime = "the "
    ids, gap = greedy(lambda x, s: bare64(onehot(x), s), [cid[c] for c in prime], 20)
    assert gap > 1e-3, gap
    meta["bare.eval"] = eval_text
    meta["bare.prime"], meta["bare.greedy"] = prime, prime + "".join(chars[i] for i in ids)
    print(f"bare_lstm: eval loss = {data['bare.loss'].item():.10f}; greedy: {meta['bare.greedy']!r}")

    data_path = os.path.join(OUT_DIR, "pytorch_models_data.safetensors")
    save_file({k: v.numpy() for k, v in data.items()}, data_path, metadata=meta)
    canonicalise_metadata_order(data_path)
    paths.append(data_path)
    return paths


# ---------------------------------------------------------------------------
# Remedies: orthogonal recurrence W_hh = matrix_exp(A) and residual stacks
# ---------------------------------------------------------------------------
# name -> (cell, nonlinearity, recurrence, residual, seed, sizes)
REMEDY_CASES = {
    "orthogonal_rnn_tanh": ("rnn", "tanh", "orthogonal", False, 1101, SMALL),
    "orthogonal_rnn_modrelu": ("rnn", "modrelu", "orthogonal", False, 1102, LONG_TOKENS),
    "residual_rnn_tanh": ("rnn", "tanh", "dense", True, 1111, SMALL._replace(L=3)),
    "residual_lstm": ("lstm", "none", "dense", True, 1112, SMALL._replace(L=3)),
    "residual_gru": ("gru", "none", "dense", True, 1113, SMALL._replace(L=3)),
}


def modrelu(a, b):
    """sign(a) max(|a| + b, 0) (Arjovsky et al. 2016; expRNN's real form)."""
    return torch.sign(a) * torch.relu(a.abs() + b)


def make_remedy_case(name, cell, nonlinearity, recurrence, residual, seed, sz):
    """The model written out with torch autograd doing the derivatives:

        orthogonal:  W_hh = torch.linalg.matrix_exp(tril(P, -1) - tril(P, -1)^T) from the
                     parameter P = rnn.skew_hh_l{k}; modrelu has the bias rnn.bias_modrelu_l{k}
        residual:    o^0 = h^0, o^k = h^k + o^(k-1), layer k+1 and the decoder read o

    Tensors as for the torch.nn cases (hidden_l{k} is h^k, not o^k), and the rnnscope model
    config in the metadata (`rnnscope.config`), since neither part has torch.nn names to infer
    it from."""
    emb, H, V, T, B, L = sz
    is_lstm = cell == "lstm"
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    torch.manual_seed(seed)
    k_h = 1.0 / H**0.5
    u = lambda *shape, a=k_h: (torch.rand(*shape, dtype=torch.float32) * 2 - 1) * a
    params = {"embedding.weight": torch.randn(V, emb)}
    for k in range(L):
        n_in = emb if k == 0 else H
        params[f"rnn.weight_ih_l{k}"] = u(G * H, n_in)
        hh = "skew_hh" if recurrence == "orthogonal" else "weight_hh"
        params[f"rnn.{hh}_l{k}"] = u(G * H, H, a=0.6 if recurrence == "orthogonal" else k_h)
        params[f"rnn.bias_ih_l{k}"] = u(G * H)
        params[f"rnn.bias_hh_l{k}"] = u(G * H)
        if nonlinearity == "modrelu":
            params[f"rnn.bias_modrelu_l{k}"] = u(H, a=0.01)
    params["decoder.weight"] = u(V, H)
    params["decoder.bias"] = u(V)
    h0_32 = torch.randn(L, B, H) * 0.5
    c0_32 = torch.randn(L, B, H) * 0.5 if is_lstm else None
    tokens = torch.randint(V, (T, B))
    target = torch.randint(V, (T, B))

    p64 = {n: v.double().requires_grad_(True) for n, v in params.items()}
    h0 = h0_32.double().requires_grad_(True)
    c0 = c0_32.double().requires_grad_(True) if is_lstm else None
    x = p64["embedding.weight"][tokens]
    hidden, cells, finals_h, finals_c = [], [], [], []
    below = None
    for k in range(L):
        w_ih, b_ih, b_hh = p64[f"rnn.weight_ih_l{k}"], p64[f"rnn.bias_ih_l{k}"], p64[f"rnn.bias_hh_l{k}"]
        if recurrence == "orthogonal":
            low = torch.tril(p64[f"rnn.skew_hh_l{k}"], -1)
            w_hh = torch.linalg.matrix_exp(low - low.T)
        else:
            w_hh = p64[f"rnn.weight_hh_l{k}"]
        if cell == "rnn" and nonlinearity == "modrelu":
            b = p64[f"rnn.bias_modrelu_l{k}"]
            h = h0[k]
            hs = []
            for xt in x:
                a = xt @ w_ih.T + b_ih + h @ w_hh.T + b_hh
                # no pre-activation near a kink of modReLU, where f32 and f64 could differ
                assert (a.abs().min() > 1e-4) and ((a.abs() + b).abs().min() > 1e-4)
                h = modrelu(a, b)
                hs.append(h)
            hs, cs = torch.stack(hs), None
        else:
            hs, cs = manual_layer(cell, nonlinearity, (w_ih, w_hh, b_ih, b_hh), x, h0[k],
                                  c0[k] if is_lstm else None)
        hidden.append(hs)
        cells.append(cs)
        finals_h.append(hs[-1])
        if is_lstm:
            finals_c.append(cs[-1])
        out = hs + below if (residual and below is not None) else hs
        below = out
        x = out
    logits = below @ p64["decoder.weight"].T + p64["decoder.bias"]
    step_loss = F.cross_entropy(logits.reshape(T * B, V), target.reshape(T * B),
                                reduction="none").reshape(T, B)
    loss = step_loss.mean()
    loss.backward()

    def f32(t):
        return t.detach().to(torch.float32).contiguous().numpy()

    tensors = {"input": tokens.to(torch.int64).numpy(), "target": target.to(torch.int64).numpy()}
    for n, v in p64.items():
        tensors[n] = f32(v)
        tensors[f"grad.{n}"] = f32(v.grad)
    tensors["h0"] = f32(h0)
    tensors["grad.h0"] = f32(h0.grad)
    if is_lstm:
        tensors["c0"] = f32(c0)
        tensors["grad.c0"] = f32(c0.grad)
        tensors["cT"] = f32(torch.stack(finals_c))
    for k in range(L):
        tensors[f"hidden_l{k}"] = f32(hidden[k])
        if is_lstm:
            tensors[f"cell_l{k}"] = f32(cells[k])
    tensors["hT"] = f32(torch.stack(finals_h))
    tensors["logits"] = f32(logits)
    tensors["step_loss"] = f32(step_loss)
    tensors["loss"] = f32(loss.reshape(1))
    config = {
        "cell": cell,
        "activation": "tanh" if nonlinearity == "none" else nonlinearity,
        "vocab": V, "embedding": emb, "hidden": H, "layers": L, "dropout": 0.0, "tie": False,
        "input_size": 0, "output": "softmax", "recurrence": recurrence, "residual": residual,
    }
    metadata = {
        "E": str(emb), "H": str(H), "V": str(V), "T": str(T), "B": str(B), "L": str(L),
        "cell": cell, "nonlinearity": nonlinearity, "tied": "false", "seed": str(seed),
        "torch_version": torch.__version__,
        "rnnscope.config": json.dumps(config, separators=(",", ":")),
    }
    path = os.path.join(OUT_DIR, f"{name}.safetensors")
    save_file(tensors, path, metadata=metadata)
    canonicalise_metadata_order(path)
    print(f"{name}: loss = {loss.item():.10f}")
    return path


# ---------------------------------------------------------------------------
# Attention of the top layer over its earlier states (rnnscope's src/layers/attention.rs)
# ---------------------------------------------------------------------------
# name -> (cell, score, span, seed, sizes)
ATTENTION_CASES = {
    "attention_rnn_dot": ("rnn", "dot", 0, 1201, SMALL),
    "attention_lstm_additive": ("lstm", "additive", 0, 1202, SMALL),
    "attention_gru_dot_span": ("gru", "dot", 3, 1203, SMALL),
    "attention_rnn_additive_span_long": ("rnn", "additive", 4, 1204, LONG_TOKENS),
}


class AttentiveLM(nn.Module):
    """embedding -> torch.nn RNN/LSTM/GRU -> attention over the top layer's earlier states ->
    linear decoder. With out = h_0..h_{T-1} of the top layer (time-major, per batch element):

        W_t  = { j : max(0, t - K) <= j < t }        (K = span; 0 = the whole window)
        s_tj = h_t . h_j / sqrt(H)                   (dot)
             = v^T tanh(W_q h_t + W_k h_j)           (additive: query, key, score)
        a_t  = softmax over W_t;  c_t = sum a_tj h_j  (c_0 = 0)
        o_t  = tanh(W_c [h_t ; c_t])                 (combine); logits = decoder(o_t)
    """

    def __init__(self, cell, sz, score, span):
        super().__init__()
        emb, H, V, L = sz.E, sz.H, sz.V, sz.L
        self.score_kind, self.span = score, span
        self.embedding = nn.Embedding(V, emb)
        self.rnn = {"rnn": lambda: nn.RNN(emb, H, num_layers=L, nonlinearity="tanh"),
                    "lstm": lambda: nn.LSTM(emb, H, num_layers=L),
                    "gru": lambda: nn.GRU(emb, H, num_layers=L)}[cell]()
        self.attention = nn.Module()
        if score == "additive":
            self.attention.query = nn.Linear(H, H, bias=False)
            self.attention.key = nn.Linear(H, H, bias=False)
            self.attention.score = nn.Linear(H, 1, bias=False)
        self.attention.combine = nn.Linear(2 * H, H, bias=False)
        self.decoder = nn.Linear(H, V)

    def forward(self, tokens, state):
        out, final = self.rnn(self.embedding(tokens), state)
        T, B, H = out.shape
        att = self.attention
        o = []
        for t in range(T):
            lo = max(0, t - self.span) if self.span > 0 else 0
            h_t = out[t]
            if t == lo:
                c = torch.zeros_like(h_t)
            else:
                keys = out[lo:t]  # [n, B, H]
                if self.score_kind == "dot":
                    s = (keys * h_t).sum(-1) / H**0.5
                else:
                    s = att.score(torch.tanh(att.query(h_t) + att.key(keys))).squeeze(-1)
                a = torch.softmax(s, dim=0)
                c = (a.unsqueeze(-1) * keys).sum(0)
            o.append(torch.tanh(att.combine(torch.cat([h_t, c], -1))))
        return self.decoder(torch.stack(o)), out, final


def make_attention_case(name, cell, score, span, seed, sz):
    """An attentive model: torch.nn cell and nn.Linear attention weights at PyTorch's default
    init (float32), forward and backward in float64 under autograd. Tensors as for the torch.nn
    cases, and the rnnscope config in the metadata."""
    emb, H, V, T, B, L = sz
    is_lstm = cell == "lstm"
    torch.manual_seed(seed)
    model = AttentiveLM(cell, sz, score, span)
    h0_32 = torch.randn(L, B, H) * 0.5
    c0_32 = torch.randn(L, B, H) * 0.5 if is_lstm else None
    tokens = torch.randint(V, (T, B))
    target = torch.randint(V, (T, B))
    model = model.double()
    h0 = h0_32.double().requires_grad_(True)
    c0 = c0_32.double().requires_grad_(True) if is_lstm else None
    state = (h0, c0) if is_lstm else h0
    logits, out, final = model(tokens, state)
    step_loss = F.cross_entropy(logits.reshape(T * B, V), target.reshape(T * B),
                                reduction="none").reshape(T, B)
    loss = step_loss.mean()
    loss.backward()

    def f32(t):
        return t.detach().to(torch.float32).contiguous().numpy()

    tensors = {"input": tokens.to(torch.int64).numpy(), "target": target.to(torch.int64).numpy()}
    for n, v in model.named_parameters():
        tensors[n] = f32(v)
        tensors[f"grad.{n}"] = f32(v.grad)
    tensors["h0"] = f32(h0)
    tensors["grad.h0"] = f32(h0.grad)
    if is_lstm:
        tensors["c0"] = f32(c0)
        tensors["grad.c0"] = f32(c0.grad)
        tensors["cT"] = f32(final[1])
    # Only the top layer's states come out of torch.nn; the layers below are checked through
    # every gradient.
    tensors[f"hidden_l{L - 1}"] = f32(out)
    tensors["hT"] = f32(final[0] if is_lstm else final)
    tensors["logits"] = f32(logits)
    tensors["step_loss"] = f32(step_loss)
    tensors["loss"] = f32(loss.reshape(1))
    config = {
        "cell": cell, "activation": "tanh", "vocab": V, "embedding": emb, "hidden": H,
        "layers": L, "dropout": 0.0, "tie": False, "input_size": 0, "output": "softmax",
        "recurrence": "dense", "residual": False, "attention": score, "attention_span": span,
    }
    metadata = {
        "E": str(emb), "H": str(H), "V": str(V), "T": str(T), "B": str(B), "L": str(L),
        "cell": cell, "tied": "false", "seed": str(seed), "torch_version": torch.__version__,
        "rnnscope.config": json.dumps(config, separators=(",", ":")),
    }
    path = os.path.join(OUT_DIR, f"{name}.safetensors")
    save_file(tensors, path, metadata=metadata)
    canonicalise_metadata_order(path)
    print(f"{name}: loss = {loss.item():.10f}")
    return path


# ---------------------------------------------------------------------------
# LSTM with a projection: nn.LSTM(proj_size=P)
# ---------------------------------------------------------------------------
# name -> (tied, seed, sizes, P). The long case (T*B = 72 >= 64 rows) multiplies by the packed
# W_hh [4H, P]; tied needs E = P.
PROJECTION_CASES = {
    "lstm_proj": (False, 3001, SMALL, 5),
    "lstm_proj_tied_long": (True, 3002, LONG_TOKENS, 5),
}


class ProjectedLM(nn.Module):
    """embedding -> nn.LSTM(proj_size=P) -> linear decoder [V, P] (time-major)."""

    def __init__(self, sz: Sizes, P: int, tied: bool):
        super().__init__()
        self.embedding = nn.Embedding(sz.V, sz.E)
        self.rnn = nn.LSTM(sz.E, sz.H, num_layers=sz.L, proj_size=P)
        self.decoder = nn.Linear(P, sz.V)
        if tied:
            assert sz.E == P, "tying needs E == P"
            self.decoder.weight = self.embedding.weight

    def forward(self, tokens, state):
        out, final = self.rnn(self.embedding(tokens), state)
        return self.decoder(out), out, final


def manual_projected_layer(rnn, k, xs, h, c):
    """The projected LSTM's equations written out (float64): h_t = W_hr (o * tanh(c_t))."""
    w_ih, w_hh, b_ih, b_hh, w_hr = (
        getattr(rnn, f"{n}_l{k}").detach()
        for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
    )
    hs, cs = [], []
    for x in xs:
        i, f, g, o = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=-1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c + i * g
        h = (o * torch.tanh(c)) @ w_hr.T
        hs.append(h)
        cs.append(c)
    return torch.stack(hs), torch.stack(cs)


def make_projection_case(name, tied, seed, sz, P):
    if tied:
        sz = sz._replace(E=P)
    emb, H, V, T, B, L = sz
    torch.manual_seed(seed)
    model = ProjectedLM(sz, P, tied)
    with torch.no_grad():
        for k in range(L):
            getattr(model.rnn, f"bias_hh_l{k}").add_(0.5)
    h0_32 = torch.randn(L, B, P) * 0.5
    c0_32 = torch.randn(L, B, H) * 0.5
    tokens = torch.randint(V, (T, B))
    target = torch.randint(V, (T, B))

    model = model.double()
    if tied:
        model.decoder.weight = model.embedding.weight
    h0 = h0_32.double().requires_grad_(True)
    c0 = c0_32.double().requires_grad_(True)
    state = (h0, c0)
    logits, out, (hT, cT) = model(tokens, state)
    step_loss = F.cross_entropy(
        logits.reshape(T * B, V), target.reshape(T * B), reduction="none"
    ).reshape(T, B)
    loss = step_loss.mean()
    model.zero_grad(set_to_none=True)
    loss.backward()

    with torch.no_grad():
        x = model.embedding(tokens)
        hidden, cells = [], []
        for k in range(L):
            x, cs = manual_projected_layer(model.rnn, k, x, h0[k], c0[k])
            hidden.append(x)
            cells.append(cs)
        assert maxdiff(hidden[-1], out) < TOL64, maxdiff(hidden[-1], out)
        for k in range(L):
            assert maxdiff(hidden[k][-1], hT[k]) < TOL64
            assert maxdiff(cells[k][-1], cT[k]) < TOL64
    fd_check(model, tokens, target, state, True, V)
    if tied:
        check_tied_grad(model, tokens, target, state, True, V)

    def f32(t):
        return t.detach().to(torch.float32).contiguous().numpy()

    tensors = {
        "input": tokens.to(torch.int64).numpy(),
        "target": target.to(torch.int64).numpy(),
    }
    params = list(model.named_parameters())
    for n, p in params:
        tensors[n] = f32(p)
        tensors[f"grad.{n}"] = f32(p.grad)
    tensors.update({"h0": f32(h0), "c0": f32(c0), "hT": f32(hT), "cT": f32(cT)})
    for k in range(L):
        tensors[f"hidden_l{k}"] = f32(hidden[k])
        tensors[f"cell_l{k}"] = f32(cells[k])
    tensors.update({
        "logits": f32(logits), "step_loss": f32(step_loss), "loss": f32(loss.reshape(1)),
        "grad.h0": f32(h0.grad), "grad.c0": f32(c0.grad),
    })
    metadata = {
        "E": str(emb), "H": str(H), "P": str(P), "V": str(V), "T": str(T), "B": str(B),
        "L": str(L), "cell": "lstm", "nonlinearity": "none",
        "tied": "true" if tied else "false", "seed": str(seed),
        "torch_version": torch.__version__,
    }
    path = os.path.join(OUT_DIR, f"{name}.safetensors")
    save_file(tensors, path, metadata=metadata)
    canonicalise_metadata_order(path)
    print(f"{name}: loss = {loss.item():.10f}")
    return path


def make_projected_model_fixture():
    """wlm_lstm_proj.safetensors: `model.state_dict()` of word_language_model's RNNModel('LSTM',
    V, 8, 10, 2) with its LSTM replaced by nn.LSTM(8, 10, 2, proj_size=6) and its decoder by
    nn.Linear(6, V) (names encoder, rnn, decoder; `rnn.weight_hr_l{k}`), trained briefly on
    WLM_TRAIN and saved as a user would; it reads wlm_vocab.txt and wlm_eval.txt (written by the
    `pytorch_models` group, unchanged here). wlm_proj_data.safetensors (float64): `proj.loss` [1]
    on the eval text (one pass from a zero state), and in the metadata `proj.prime` and
    `proj.greedy`, the greedy continuation as rnnscope prints it."""
    from safetensors.torch import save_file as save_torch

    idx2word, word2idx = [], {}
    train_ids = wlm_tokenize(WLM_TRAIN, idx2word, word2idx, add=True)
    with open(os.path.join(OUT_DIR, "wlm_vocab.txt")) as f:
        assert f.read() == "\n".join(idx2word) + "\n", "wlm_vocab.txt is stale: regenerate pytorch_models"
    V = len(idx2word)
    torch.manual_seed(1203)
    model = RNNModel("LSTM", V, 8, 10, 2, dropout=0.0)
    model.rnn = nn.LSTM(8, 10, 2, proj_size=6)
    model.decoder = nn.Linear(6, V)
    train_briefly(model, lambda x: model(x)[0], train_ids)
    path = os.path.join(OUT_DIR, "wlm_lstm_proj.safetensors")
    sd = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    assert sd["rnn.weight_hr_l1"].shape == (6, 10) and sd["rnn.weight_hh_l0"].shape == (40, 6)
    save_torch(sd, path)
    os.chmod(path, 0o644)
    m64 = model.double()
    eval_ids = wlm_tokenize(WLM_EVAL, idx2word, word2idx, add=False)
    data, meta = {}, {"torch_version": torch.__version__}
    with torch.no_grad():
        logits = m64(eval_ids[:-1].unsqueeze(1))[0]
        data["proj.loss"] = F.cross_entropy(logits.reshape(-1, V), eval_ids[1:]).reshape(1)
    prime = "the cat"
    ids, gap = greedy(m64, [word2idx[w] for w in prime.split()], 12)
    assert gap > 1e-3, gap
    text = prime
    for i in ids:
        text += "\n" if idx2word[i] == "<eos>" else ("" if text.endswith("\n") else " ") + idx2word[i]
    meta["proj.prime"], meta["proj.greedy"] = prime, text
    print(f"wlm_lstm_proj: eval loss = {data['proj.loss'].item():.10f}; greedy: {text!r}")
    data_path = os.path.join(OUT_DIR, "wlm_proj_data.safetensors")
    save_file({k: v.numpy() for k, v in data.items()}, data_path, metadata=meta)
    canonicalise_metadata_order(data_path)
    return [path, data_path]


def main():
    """Writes every fixture, or only the groups named on the command line (`cases`,
    `optimizers`, `state_dict`, `remedies`, `pytorch_models`, `attention`, `projection`,
    `projected_model`)."""
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT_DIR, exist_ok=True)
    print(f"torch {torch.__version__}")
    groups = {
        "cases": lambda: [make_case(name, *spec) for name, spec in CASES.items()],
        "optimizers": lambda: [make_optimizer_fixture()],
        "state_dict": make_state_dict_fixture,
        "remedies": lambda: [make_remedy_case(n, *spec) for n, spec in REMEDY_CASES.items()],
        "pytorch_models": make_pytorch_model_fixtures,
        "attention": lambda: [make_attention_case(n, *spec) for n, spec in ATTENTION_CASES.items()],
        "projection": lambda: [
            make_projection_case(n, *spec) for n, spec in PROJECTION_CASES.items()
        ],
        "projected_model": make_projected_model_fixture,
    }
    wanted = sys.argv[1:] or list(groups)
    unknown = [g for g in wanted if g not in groups]
    if unknown:
        sys.exit(f"unknown fixture group(s) {unknown}: choose from {list(groups)}")
    paths = [p for g in wanted for p in groups[g]()]

    # Re-load every file and list its contents.
    for path in paths:
        data = load_file(path)
        with safe_open(path, "numpy") as f:
            meta = dict(sorted((f.metadata() or {}).items()))
        print(f"\n{os.path.basename(path)} ({os.path.getsize(path)} bytes)  metadata: {meta}")
        for k in sorted(data):
            print(f"  {k:24s} {str(data[k].dtype):8s} {list(data[k].shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
