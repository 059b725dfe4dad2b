"""The cost of calling the engine from Python: `Model.load(...).gradflow(...)` against the
`rnnscope gradflow` command on the same checkpoint and options, run alternately.

    python examples/python/gradflow_overhead.py [path/to/rnnscope] [rounds]

The checkpoint is a random LSTM (V 65, E 32, H 256); the work: 16 random windows of 128
tokens, the full analysis in f64 (influence sweep, Jacobians, spectra).
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import rnnscope

binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/rnnscope"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
V, E, H = 65, 32, 256
rng = np.random.default_rng(0)
u = lambda *shape: rng.uniform(-H**-0.5, H**-0.5, size=shape)
sd = {"embedding.weight": rng.normal(size=(V, E)), "rnn.weight_ih_l0": u(4 * H, E),
      "rnn.weight_hh_l0": u(4 * H, H), "rnn.bias_ih_l0": u(4 * H), "rnn.bias_hh_l0": u(4 * H),
      "decoder.weight": u(V, H), "decoder.bias": u(V)}
d = tempfile.mkdtemp()
ck = os.path.join(d, "lstm.safetensors")
rnnscope.Model.from_torch(sd).save(ck)
args = ["--bptt", "128", "--batch", "16"]


def command():
    subprocess.run([binary, "gradflow", "--checkpoint", ck, *args, "--out",
                    os.path.join(d, "gf"), "--force", "--json"],
                   stdout=subprocess.DEVNULL, check=True)


def python():
    rnnscope.Model.load(ck).gradflow(bptt=128, batch=16)


times = {"command": [], "python": []}
for r in range(rounds + 1):
    for name, f in (("command", command), ("python", python)):
        t = time.perf_counter()
        f()
        if r > 0:  # round 0 warms the caches
            times[name].append(time.perf_counter() - t)
cmd, py = statistics.median(times["command"]), statistics.median(times["python"])
print(f"rnnscope gradflow --checkpoint lstm.safetensors {' '.join(args)}: median {cmd:.3f} s")
print(f"Model.load(...).gradflow(bptt=128, batch=16):            median {py:.3f} s")
print(f"python / command = {py / cmd:.3f} ({rounds} alternated rounds each)")
