#!/usr/bin/env python3
"""PyTorch baseline for `rnnscope bench`: the same standard configurations (DESIGN.md).

Character LM, V=65, E=64, Adam, gradient-norm clip 5, float32, forward + backward + update,
time-major input. Runs each configuration with oneDNN (mkldnn) on and off and reports both.

    pip install torch
    python3 bench/pytorch_baseline.py [--threads N] [--seconds S] [--json]
"""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn

CONFIGS = [
    # name, cell, layers, hidden, batch, bptt
    ("rnn_h256_b32_t64", "rnn", 1, 256, 32, 64),
    ("lstm_h256x2_b32_t64", "lstm", 2, 256, 32, 64),
    ("lstm_h512_b64_t100", "lstm", 1, 512, 64, 100),
    ("gru_h256_b32_t64", "gru", 1, 256, 32, 64),
    ("rnn_h1024_b128_t64", "rnn", 1, 1024, 128, 64),
    # the size sweep (rnnscope bench --sweep)
    ("lstm_h64_b32_t64", "lstm", 1, 64, 32, 64),
    ("lstm_h128_b32_t64", "lstm", 1, 128, 32, 64),
    ("lstm_h256_b32_t64", "lstm", 1, 256, 32, 64),
    ("lstm_h512_b32_t64", "lstm", 1, 512, 32, 64),
    ("lstm_h1024_b32_t64", "lstm", 1, 1024, 32, 64),
]
V, E = 65, 64
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def flops_per_token(cell, layers, hidden):
    g = GATES[cell] * hidden
    f = sum(6 * ((E if k == 0 else hidden) + hidden) * g for k in range(layers))
    return f + 6 * hidden * V


class LM(nn.Module):
    def __init__(self, cell, layers, hidden):
        super().__init__()
        self.embedding = nn.Embedding(V, E)
        rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(E, hidden, layers)
        self.decoder = nn.Linear(hidden, V)

    def forward(self, x, h):
        out, h = self.rnn(self.embedding(x), h)
        return self.decoder(out), h


def measure(cell, layers, hidden, batch, bptt, seconds):
    torch.manual_seed(0)
    model = LM(cell, layers, hidden)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randint(V, (bptt, batch))
    y = torch.randint(V, (bptt, batch))
    h0 = torch.zeros(layers, batch, hidden)
    h = (h0, h0.clone()) if cell == "lstm" else h0
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        logits, _ = model(x, h)
        loss = loss_fn(logits.view(-1, V), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    for _ in range(2):
        step()
    start, steps = time.perf_counter(), 0
    while steps < 3 or time.perf_counter() - start < seconds:
        step()
        steps += 1
    return steps * batch * bptt / (time.perf_counter() - start)


def gemm_peak():
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best = float("inf")
    for _ in range(6):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * 1024**3 / best / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--config")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    peak = gemm_peak()
    rows = []
    for name, cell, layers, hidden, batch, bptt in CONFIGS:
        if args.config and name != args.config:
            continue
        row = {"name": name, "threads": threads, "gemm_peak_gflops": peak}
        for onednn in (True, False):
            torch.backends.mkldnn.enabled = onednn
            tps = measure(cell, layers, hidden, batch, bptt, args.seconds)
            key = "onednn_on" if onednn else "onednn_off"
            row[f"tokens_per_s_{key}"] = tps
        tps = max(row["tokens_per_s_onednn_on"], row["tokens_per_s_onednn_off"])
        row["tokens_per_s"] = tps
        row["gflops"] = tps * flops_per_token(cell, layers, hidden) / 1e9
        row["peak_fraction"] = row["gflops"] / peak
        row["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        rows.append(row)
        if not args.json:
            print(f"{name:<22} oneDNN on {row['tokens_per_s_onednn_on']:>10.0f}  off "
                  f"{row['tokens_per_s_onednn_off']:>10.0f} tokens/s  {row['gflops']:>7.1f} GFLOP/s",
                  flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"torch {torch.__version__}, {threads} threads, f32 GEMM peak {peak:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
