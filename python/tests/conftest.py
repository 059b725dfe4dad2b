"""Shared helpers: the repository's paths, the built `rnnscope` binary, and a numpy-only
reader of safetensors files (the fixtures PyTorch wrote; no torch or safetensors needed)."""

import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "reference" / "fixtures"

_DTYPES = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4"}


def read_safetensors(path):
    """`(tensors, metadata)` of a safetensors file: 8-byte header length, JSON header, data."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n :]
    out = {}
    for name, h in header.items():
        a, b = h["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=_DTYPES[h["dtype"]]).reshape(h["shape"])
    return out, meta


def rel_err(got, want):
    """Norm-wise relative error `|got - want| / |want|` (absolute when `want` is 0)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    d = np.linalg.norm(got - want)
    w = np.linalg.norm(want)
    return d / w if w > 0 else d


@pytest.fixture(scope="session")
def rnnscope_bin():
    """The built command (`RNNSCOPE_BIN`, set by tests/python.rs; else target/release)."""
    p = Path(os.environ.get("RNNSCOPE_BIN", ROOT / "target" / "release" / "rnnscope"))
    if not p.is_file():
        pytest.fail(f"{p} is missing: build it with `cargo build --release` or set RNNSCOPE_BIN")
    return p


def run_cli(binary, *args, cwd=None):
    r = subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, cwd=cwd)
    assert r.returncode == 0, f"rnnscope {' '.join(map(str, args))} failed:\n{r.stdout}{r.stderr}"
    return r.stdout
