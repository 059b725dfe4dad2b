"""The cost of calling the engine from Python: `Model.load(...).gradflow(...)` against the
`rnnscope gradflow` command on the same checkpoint and options, run alternately.

    python examples/python/gradflow_overhead.py [path/to/rnnscope] [rounds]

The checkpoint is a random LSTM (V 65, E 32, H 256); the work: 16 random windows of 128
tokens, the full analysis in f64 (influence sweep, Jacobians, spectra). Prints the median wall
time and the median CPU time (user + system, all threads; steadier than wall time on a busy
machine) of each.
"""

import os
import resource
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


def cpu(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


times = {"command": [], "python": []}
cpus = {"command": [], "python": []}
for r in range(rounds + 1):
    for name, f in (("command", command), ("python", python)):
        who = resource.RUSAGE_CHILDREN if name == "command" else resource.RUSAGE_SELF
        t, c = time.perf_counter(), cpu(who)
        f()
        if r > 0:  # round 0 warms the caches
            times[name].append(time.perf_counter() - t)
            cpus[name].append(cpu(who) - c)
med = {k: (statistics.median(times[k]), statistics.median(cpus[k])) for k in times}
print(f"rnnscope gradflow --checkpoint lstm.safetensors {' '.join(args)}: "
      f"median {med['command'][0]:.3f} s wall, {med['command'][1]:.3f} s CPU")
print(f"Model.load(...).gradflow(bptt=128, batch=16): "
      f"median {med['python'][0]:.3f} s wall, {med['python'][1]:.3f} s CPU")
print(f"python / command: wall {med['python'][0] / med['command'][0]:.3f}, "
      f"CPU {med['python'][1] / med['command'][1]:.3f} ({rounds} alternated rounds each)")
