#!/usr/bin/env python3
"""Text generation speed of PyTorch on an rnnscope checkpoint (batch 1), for comparison with
`rnnscope sample`.

    python3 bench/pytorch_sample.py CKPT [--length N] [--threads N]
"""
import argparse
import os
import sys
import time

import torch
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "reference"))
from load_in_pytorch import LanguageModel  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--length", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import json
    with safe_open(args.checkpoint, "pt") as f:
        config = json.loads(f.metadata()["rnnscope.config"])
    model = LanguageModel(config)
    model.load_state_dict(load_file(args.checkpoint), strict=True)
    model.eval()
    torch.manual_seed(0)
    best = {}
    for onednn in (True, False):
        torch.backends.mkldnn.enabled = onednn
        tok = torch.zeros(1, 1, dtype=torch.long)
        h = None
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(args.length):
                out, h = model.rnn(model.embedding(tok), h)
                probs = model.decoder(out[0, 0]).softmax(-1)
                tok = torch.multinomial(probs, 1).view(1, 1)
        best[onednn] = args.length / (time.perf_counter() - start)
    print(f"PyTorch {torch.__version__}: oneDNN on {best[True]:.0f} tokens/s, off {best[False]:.0f} tokens/s")


if __name__ == "__main__":
    main()
