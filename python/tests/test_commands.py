"""Python against the command line: the same gradient flow on the same checkpoint and input,
training runs with the command's files, Ctrl-C then resume, and the commands' errors."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import rnnscope
from conftest import FIXTURES, read_safetensors, run_cli

# Wall times differ from run to run; everything else must be equal.
TIMES = {"influence_seconds"}


def without_times(v):
    if isinstance(v, dict):
        return {k: without_times(x) for k, x in v.items() if k not in TIMES}
    if isinstance(v, list):
        return [without_times(x) for x in v]
    return v


def corpus(path, lines=400):
    animals = ["cat", "dog", "owl", "fox", "hen"]
    text = "".join(
        f"the {animals[i % 5]} saw the {animals[(3 * i + 1) % 5]}.\n" for i in range(lines)
    )
    path.write_text(text)
    return path


TINY = dict(cell="lstm", hidden=16, embedding=8, batch=4, bptt=16, eval_every=10, seed=3,
            threads=1, quiet=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A char LSTM trained by `rnnscope.train` (its run directory and corpus)."""
    d = tmp_path_factory.mktemp("trained")
    text = corpus(d / "corpus.txt")
    rnnscope.train(corpus=text, out=d / "run", steps=40, **TINY)
    return d / "run", text


def test_train_writes_the_commands_files(trained):
    run, _ = trained
    for f in ["config.toml", "metrics.csv", "last.safetensors", "best.safetensors",
              "summary.json", "report.html"]:
        assert (run / f).is_file(), f
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "finished" and s["step"] == 40


@pytest.mark.parametrize("with_text", [False, True])
def test_gradflow_equals_the_commands_json(trained, rnnscope_bin, tmp_path, with_text):
    run, text = trained
    ck = run / "best.safetensors"
    extra = ["--text", text, "--show-targets", "3,15"] if with_text else []
    out = tmp_path / "gf"
    stdout = run_cli(rnnscope_bin, "gradflow", "--checkpoint", ck, "--bptt", 16, "--batch", 5,
                     "--seed", 7, "--out", out, "--json", *extra)
    gf = rnnscope.Model.load(ck).gradflow(
        bptt=16, batch=5, seed=7, **({"text": text, "show_targets": [3, 15]} if with_text else {}))
    file_json = json.loads((out / "gradflow.json").read_text())
    assert without_times(gf.to_dict()) == without_times(file_json)
    assert without_times(gf.summary) == without_times(json.loads(stdout))
    assert (gf.summary["input"]["kind"] == "text") == with_text
    # The influence matrix, as the command writes it (CSV, rows i, columns j).
    csv = [l for l in (out / "influence_l0.csv").read_text().splitlines()
           if l and not l.startswith("#")]
    m = np.array([[float(x) if x else 0.0 for x in r.split(",")] for r in csv])
    assert gf.influence.shape == (1, 16, 16) and gf.influence.dtype == np.float64
    assert np.array_equal(gf.influence[0], m)
    assert gf.influence_cell is not None and gf.influence_cell.shape == (1, 16, 16)
    assert gf.profile.shape == (1, 16) and abs(gf.profile[0, 0] - 1.0) <= 1e-12
    assert gf.profile_cell.shape == (1, 16)
    assert gf.pairs[0, 0] == 5 * 16 and gf.pairs[0, 15] == 5
    assert set(gf.spectrum[0]) == {"i", "f", "g", "o"}
    assert gf.spectrum[0]["f"].dtype == np.complex128 and gf.spectrum[0]["f"].shape == (16,)
    assert gf.jacobian_log_singular_values[0].shape[0] == len(gf.jacobian_distances[0]) > 0
    assert gf.regime == file_json["summary"]["regime"]


def test_gradflow_on_given_tokens_is_the_window_analysis(trained):
    """Explicit tokens give the analysis of exactly those windows: the random windows the
    command draws, handed over as arrays, give the same numbers."""
    run, _ = trained
    m = rnnscope.Model.load(run / "best.safetensors")
    drawn = m.gradflow(bptt=12, batch=3, seed=5, jacobian=False)
    rng_free = drawn.to_dict()["summary"]["input"]
    assert rng_free["kind"] == "random"
    # A window of the text through the model: the shape is what was given.
    x = np.arange(36).reshape(12, 3) % m.config["vocab"]
    gf = m.gradflow(x, np.roll(x, -1, axis=0), jacobian=False)
    assert gf.influence.shape == (1, 12, 12)
    assert gf.summary["input"]["kind"] == "unspecified"
    assert gf.summary["bptt"] == 12 and gf.summary["batch"] == 3


def _train_script(corpus_path, out, steps):
    opts = dict(TINY, hidden=32, steps=steps, eval_every=20)
    return (
        "import sys, rnnscope\n"
        "try:\n"
        f"    rnnscope.train(corpus={str(corpus_path)!r}, out={str(out)!r}, **{opts!r})\n"
        "except KeyboardInterrupt:\n"
        "    print('KeyboardInterrupt')\n"
        "    sys.exit(3)\n"
    )


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process")
def test_ctrl_c_stops_training_saved_and_resume_finishes_it_as_one_run(tmp_path):
    text = corpus(tmp_path / "corpus.txt", 1500)
    cut, full = tmp_path / "cut", tmp_path / "full"
    steps = 3000
    child = subprocess.Popen([sys.executable, "-c", _train_script(text, cut, steps)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start = time.time()
    metrics = cut / "metrics.csv"
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
        assert child.poll() is None, child.communicate()
        assert time.time() - start < 120, "training did not start"
        time.sleep(0.005)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 3, (out, err)
    assert "KeyboardInterrupt" in out
    s = json.loads((cut / "summary.json").read_text())
    assert s["status"] == "interrupted", "SIGINT came after the end"
    assert 0 < s["step"] < steps
    assert (cut / "last.safetensors").is_file()
    rnnscope.train(resume=cut, quiet=True)
    assert json.loads((cut / "summary.json").read_text())["status"] == "finished"
    rnnscope.train(corpus=text, out=full, **dict(TINY, hidden=32, steps=steps, eval_every=20))
    a, _ = read_safetensors(cut / "last.safetensors")
    b, _ = read_safetensors(full / "last.safetensors")
    assert sorted(a) == sorted(b)
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_task_and_report(tmp_path):
    out = tmp_path / "copy"
    rnnscope.task("copy", length=5, out=out, cell="lstm", hidden=16, steps=30,
                  eval_every=10, threads=1)
    assert (out / "summary.json").is_file()
    html = rnnscope.report(out, out=tmp_path / "r.html", no_plot_files=True)
    assert Path(html) == tmp_path / "r.html" and Path(html).read_text().startswith("<!DOCTYPE")


def test_command_errors_raise_with_the_commands_messages(tmp_path, trained):
    run, text = trained
    cases = [
        (FileNotFoundError, "missing.txt",
         lambda: rnnscope.train(corpus=tmp_path / "missing.txt", out=tmp_path / "a", quiet=True)),
        (ValueError, "already holds a run",
         lambda: rnnscope.train(corpus=text, out=run, steps=5, quiet=True)),
        (ValueError, "lr", lambda: rnnscope.train(corpus=text, out=tmp_path / "b", lr=-1.0)),
        (TypeError, "--no-such-option",
         lambda: rnnscope.train(corpus=text, out=tmp_path / "c", no_such_option=3)),
        (ValueError, "cell", lambda: rnnscope.train(corpus=text, out=tmp_path / "d", cell="tcn")),
        (ValueError, "no such run directory",
         lambda: rnnscope.train(resume=tmp_path / "never")),
        (ValueError, "", lambda: rnnscope.report(tmp_path / "empty-report-dir")),
    ]
    (tmp_path / "empty-report-dir").mkdir()
    for exc, words, call in cases:
        with pytest.raises(exc) as info:
            call()
        msg = str(info.value)
        assert words in msg, (words, msg)
        assert "\n" not in msg, msg
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
