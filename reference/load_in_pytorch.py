#!/usr/bin/env python3
"""Load an rnnscope checkpoint into torch.nn modules with load_state_dict(strict=True).

    pip install torch safetensors
    python3 reference/load_in_pytorch.py RUN_DIR/best.safetensors [--text "some prime"]

The checkpoint's metadata holds the model config (`rnnscope.config`) and, for models trained
on text, the vocabulary (`rnnscope.vocab`). Prints the config, the loaded modules and, with
--text, the next-token distribution after reading the text, cut into tokens as rnnscope
cuts a prime: characters, bytes, or whitespace-separated words with `<eos>` for every line
break in the text.
"""
import argparse
import json

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file


class LanguageModel(nn.Module):
    """nn.Embedding -> nn.RNN/LSTM/GRU -> nn.Linear, time-major, the names rnnscope uses."""

    def __init__(self, c):
        super().__init__()
        self.embedding = nn.Embedding(c["vocab"], c["embedding"])
        if c["cell"] == "rnn":
            if c["activation"] not in ("tanh", "relu"):
                raise SystemExit(f"torch.nn.RNN has no {c['activation']} nonlinearity")
            self.rnn = nn.RNN(c["embedding"], c["hidden"], c["layers"], nonlinearity=c["activation"])
        elif c["cell"] == "lstm":
            proj = c.get("proj_size", 0)
            self.rnn = nn.LSTM(c["embedding"], c["hidden"], c["layers"], proj_size=proj)
        else:
            self.rnn = nn.GRU(c["embedding"], c["hidden"], c["layers"])
        # h has proj_size values with a projection, hidden otherwise.
        self.decoder = nn.Linear(c.get("proj_size", 0) or c["hidden"], c["vocab"])
        if c["tie"]:
            self.decoder.weight = self.embedding.weight

    def forward(self, tokens):
        out, _ = self.rnn(self.embedding(tokens))
        return self.decoder(out)


def tokenize(kind, text):
    """The text's tokens as rnnscope's tokenizer of `kind` cuts a fragment (a prime)."""
    if kind == "char":
        return list(text)
    if kind == "byte":
        return [str(b) for b in text.encode("utf-8")]
    words = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        words.extend(line.split())
        if i + 1 < len(lines):
            words.append("<eos>")
    return words


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--text")
    args = ap.parse_args()
    with safe_open(args.checkpoint, "pt") as f:
        meta = f.metadata()
    config = json.loads(meta["rnnscope.config"])
    print("config:", config)
    model = LanguageModel(config)
    model.load_state_dict(load_file(args.checkpoint), strict=True)
    model.eval()
    print(model)
    if args.text:
        vocab = json.loads(meta["rnnscope.vocab"])
        tokens = vocab["tokens"]
        index = {t: i for i, t in enumerate(tokens)}
        unk = index.get("<unk>", 0)
        units = tokenize(vocab["kind"], args.text)
        print("tokens:", units)
        ids = torch.tensor([[index.get(u, unk)] for u in units])
        with torch.no_grad():
            probs = model(ids)[-1, 0].softmax(-1)
        top = probs.topk(5)
        print("next token:", [(tokens[i], round(p.item(), 4)) for p, i in zip(top.values, top.indices)])


if __name__ == "__main__":
    main()
