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

Usage:  python3 reference/make_fixtures.py      (writes reference/fixtures/)
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

# ---------------------------------------------------------------------------
# Sizes and cases
# ---------------------------------------------------------------------------
E, H, V, T, B, L = 7, 11, 13, 9, 4, 2

# name -> (cell, nonlinearity, tied, seed)
CASES = {
    "rnn_tanh": ("rnn", "tanh", False, 1001),
    "rnn_relu": ("rnn", "relu", False, 1002),
    "lstm": ("lstm", "none", False, 1003),
    "gru": ("gru", "none", False, 1004),
    "lstm_tied": ("lstm", "none", True, 1005),
}

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

# Tolerance for comparing two float64 computations of the same quantity.
TOL64 = 1e-12


class LM(nn.Module):
    """embedding -> multi-layer RNN -> linear decoder (time-major)."""

    def __init__(self, cell: str, nonlinearity: str, emb: int, tied: bool):
        super().__init__()
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


def single_layer_module(cell, nonlinearity, in_size, params):
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
def make_case(name, cell, nonlinearity, tied, seed):
    emb = H if tied else E
    is_lstm = cell == "lstm"

    # 1. Deterministic float32 construction.
    torch.manual_seed(seed)
    model = LM(cell, nonlinearity, emb, tied)
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
        m0 = single_layer_module(cell, nonlinearity, emb, p0)
        m1 = single_layer_module(cell, nonlinearity, H, p1)
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
    fd_check(model, tokens, target, state, is_lstm)
    if tied:
        check_tied_grad(model, tokens, target, state, is_lstm)

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


def fd_check(model, tokens, target, state, is_lstm, eps=1e-6):
    """Compare a handful of autograd gradient entries with central differences."""
    h0 = state[0] if is_lstm else state

    def loss_fn():
        with torch.no_grad():
            logits, _, _ = model(tokens, state)
            return F.cross_entropy(logits.reshape(T * B, V), target.reshape(T * B)).item()

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


def check_tied_grad(model, tokens, target, state, is_lstm):
    """The tied gradient must equal the sum of the embedding-use and decoder-use
    gradients of an otherwise identical untied model."""
    import copy

    untied = copy.deepcopy(model)
    untied.decoder.weight = nn.Parameter(model.embedding.weight.detach().clone())
    assert untied.decoder.weight is not untied.embedding.weight
    st = tuple(s.detach() for s in state) if is_lstm else state.detach()
    logits, _, _ = untied(tokens, st)
    F.cross_entropy(logits.reshape(T * B, V), target.reshape(T * B)).backward()
    summed = untied.embedding.weight.grad + untied.decoder.weight.grad
    assert maxdiff(summed, model.embedding.weight.grad) < TOL64


def main():
    torch.use_deterministic_algorithms(True)
    os.makedirs(OUT_DIR, exist_ok=True)
    print(f"torch {torch.__version__}")
    paths = [make_case(name, *spec) for name, spec in CASES.items()]

    # Re-load every file and list its contents.
    for path in paths:
        data = load_file(path)
        with safe_open(path, "numpy") as f:
            meta = dict(sorted(f.metadata().items()))
        print(f"\n{os.path.basename(path)} ({os.path.getsize(path)} bytes)  metadata: {meta}")
        for k in sorted(data):
            print(f"  {k:24s} {str(data[k].dtype):8s} {list(data[k].shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
