"""The model API: PyTorch fixtures through from_torch, finite differences, shapes and dtypes,
save and load, and every bad input raising its documented exception."""

import json

import numpy as np
import pytest

import rnnscope
from conftest import FIXTURES, read_safetensors, rel_err

PARAM_PREFIXES = ("embedding.", "rnn.", "decoder.")


def fixture_case(case):
    """A fixture of reference/make_fixtures.py: its state dict (the parameters, as PyTorch's
    modules name them), the rest of its tensors, and its metadata."""
    tensors, meta = read_safetensors(FIXTURES / f"{case}.safetensors")
    params = {k: v for k, v in tensors.items() if k.startswith(PARAM_PREFIXES)}
    return params, tensors, meta


@pytest.mark.parametrize("case", ["rnn_tanh", "rnn_relu", "lstm", "gru", "lstm_tied"])
def test_from_torch_state_dict_gives_the_fixture_loss_and_gradients(case):
    params, t, meta = fixture_case(case)
    model = rnnscope.Model.from_torch(params, nonlinearity=meta["nonlinearity"]
                                      if meta["cell"] == "rnn" else None)
    assert model.dtype == "float32"
    assert model.config["cell"] == meta["cell"]
    assert model.config["tie"] == (meta["tied"] == "true")
    state = (t["h0"], t.get("c0"))
    logits, (h, c) = model.forward(t["input"], state)
    assert logits.dtype == np.float32 and logits.shape == t["logits"].shape
    assert rel_err(logits, t["logits"]) <= 1e-4
    assert rel_err(h, t["hT"]) <= 1e-4
    if meta["cell"] == "lstm":
        assert rel_err(c, t["cT"]) <= 1e-4
    else:
        assert c is None
    loss, grads = model.loss_and_grads(t["input"], t["target"], state)
    assert abs(loss - t["loss"][0]) <= 1e-4 * abs(t["loss"][0])
    assert sorted(grads) == sorted(params), "one gradient per state-dict tensor, by its name"
    for name, g in grads.items():
        assert g.dtype == np.float32 and g.shape == params[name].shape, name
        assert rel_err(g, t[f"grad.{name}"]) <= 1e-4, name


def test_word_language_model_state_dict_scores_its_eval_text_as_pytorch():
    """PyTorch's word_language_model (names encoder/rnn/decoder): the loss of one pass over
    the eval text equals PyTorch's, and the gradients come back under the module's names."""
    sd, _ = read_safetensors(FIXTURES / "wlm_lstm.safetensors")
    data, _ = read_safetensors(FIXTURES / "pytorch_models_data.safetensors")
    words = (FIXTURES / "wlm_vocab.txt").read_text().split("\n")[:-1]
    index = {w: i for i, w in enumerate(words)}
    ids = [index.get(w, index["<unk>"]) for line in (FIXTURES / "wlm_eval.txt").read_text().splitlines()
           for w in line.split() + ["<eos>"]]
    model = rnnscope.Model.from_torch(sd, dtype="float64")
    ids = np.array(ids)
    loss, grads = model.loss_and_grads(ids[:-1], ids[1:])
    assert abs(loss - data["wlm.loss"][0]) <= 1e-4 * data["wlm.loss"][0]
    assert sorted(grads) == sorted(sd)
    assert all(g.dtype == np.float64 for g in grads.values())


def test_bare_lstm_reads_one_hot_tokens_and_returns_only_its_own_gradients():
    sd, _ = read_safetensors(FIXTURES / "bare_lstm.safetensors")
    data, meta = read_safetensors(FIXTURES / "pytorch_models_data.safetensors")
    chars = json.loads((FIXTURES / "bare_vocab.json").read_text())
    ids = np.array([chars.index(ch) for ch in meta["bare.eval"]])
    model = rnnscope.Model.from_torch(sd)
    loss, grads = model.loss_and_grads(ids[:-1], ids[1:])
    assert abs(loss - data["bare.loss"][0]) <= 1e-4 * data["bare.loss"][0]
    # The one-hot input and identity output are not the module's: no gradient for them.
    assert sorted(grads) == sorted(sd)


def random_model(cell, tmp_path, layers=1, dtype="float64", seed=0):
    """A small random model of `cell` saved by rnnscope, loaded back in `dtype`."""
    rng = np.random.default_rng(seed)
    V, E, H = 7, 5, 6
    g = {"rnn": 1, "gru": 3, "lstm": 4}[cell]
    sd = {"embedding.weight": rng.normal(size=(V, E)),
          "decoder.weight": rng.normal(size=(V, H)) * 0.5,
          "decoder.bias": rng.normal(size=V) * 0.1}
    for k in range(layers):
        sd[f"rnn.weight_ih_l{k}"] = rng.normal(size=(g * H, E if k == 0 else H)) * 0.5
        sd[f"rnn.weight_hh_l{k}"] = rng.normal(size=(g * H, H)) * 0.5
        sd[f"rnn.bias_ih_l{k}"] = rng.normal(size=g * H) * 0.1
        sd[f"rnn.bias_hh_l{k}"] = rng.normal(size=g * H) * 0.1
    path = tmp_path / f"{cell}.safetensors"
    rnnscope.Model.from_torch(sd, dtype="float64").save(path)
    return rnnscope.Model.load(path, dtype=dtype)


def mean_ce(logits, targets):
    """Mean cross-entropy of `[T, B, V]` logits (the test's own arithmetic)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return -np.take_along_axis(logp, targets[..., None], axis=-1).mean()


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_hidden_grads_equal_finite_differences_in_f64(cell, tmp_path):
    """dL/dh_t (and dL/dc_t) against central differences of the mean loss, with h_t (c_t)
    perturbed where the pass leaves it: the window is cut after step t, the first part's final
    state perturbed and carried into the second part, and the loss of step t recomputed from
    the perturbed h_t through the decoder by the test."""
    model = random_model(cell, tmp_path)
    assert model.dtype == "float64"
    rng = np.random.default_rng(1)
    T, B, V = 6, 3, model.config["vocab"]
    x = rng.integers(0, V, size=(T, B))
    y = rng.integers(0, V, size=(T, B))
    dh, dc = model.hidden_grads(x, y)
    assert len(dh) == 1 and dh[0].shape == (T, B, 6) and dh[0].dtype == np.float64
    assert (dc is not None) == (cell == "lstm")
    sd = model.state_dict()
    W, b = sd["decoder.weight"], sd["decoder.bias"]

    def loss_with(t, dh_t=None, dc_t=None):
        logits1, (h, c) = model.forward(x[: t + 1])
        h, c = h.copy(), None if c is None else c.copy()
        if dc_t is not None:
            # h_t = o_t tanh(c_t): the output gate, recovered from the pass, stays fixed.
            o = h[0] / np.tanh(c[0])
            c[0] += dc_t
            h[0] = o * np.tanh(c[0])
        if dh_t is not None:
            h[0] += dh_t
        total = mean_ce(logits1[:t], y[:t]) * t * B if t else 0.0
        total += mean_ce((h[0] @ W.T + b)[None], y[t : t + 1]) * B
        if t + 1 < T:
            logits2, _ = model.forward(x[t + 1 :], (h, c))
            total += mean_ce(logits2, y[t + 1 :]) * (T - t - 1) * B
        return total / (T * B)

    eps = 1e-5
    for t in range(T):
        for which, got in (("h", dh[0]), ("c", None if dc is None else dc[0])):
            if got is None:
                continue
            fd = np.zeros((B, 6))
            for i in range(B):
                for j in range(6):
                    e = np.zeros((B, 6))
                    e[i, j] = eps
                    kw = (lambda d: {"dh_t": d}) if which == "h" else (lambda d: {"dc_t": d})
                    fd[i, j] = (loss_with(t, **kw(e)) - loss_with(t, **kw(-e))) / (2 * eps)
            assert rel_err(got[t], fd) <= 1e-6, (cell, which, t, rel_err(got[t], fd))


def test_shapes_and_dtypes_as_documented(tmp_path):
    model = random_model("lstm", tmp_path, layers=2, dtype="float32")
    T, B = 5, 2
    x = np.zeros((T, B), dtype=np.int32)
    logits, (h, c) = model.forward(x)
    assert logits.shape == (T, B, 7) and logits.dtype == np.float32
    assert h.shape == c.shape == (2, B, 6) and h.dtype == c.dtype == np.float32
    loss, grads = model.loss_and_grads(x, x)
    assert isinstance(loss, float)
    assert grads["rnn.weight_hh_l1"].shape == (24, 6)
    dh, dc = model.hidden_grads(x, x)
    assert [a.shape for a in dh] == [(T, B, 6)] * 2 and [a.shape for a in dc] == [(T, B, 6)] * 2
    assert dh[0].dtype == np.float32
    # A 1-D sequence is one column.
    logits1, _ = model.forward(np.arange(T) % 7)
    assert logits1.shape == (T, 1, 7)
    m64 = model.astype("float64")
    assert m64.forward(x)[0].dtype == np.float64
    assert np.allclose(m64.forward(x)[0], logits, rtol=1e-5, atol=1e-6)


def test_save_then_load_gives_identical_outputs(tmp_path):
    model = random_model("gru", tmp_path, layers=2, dtype="float32")
    path = tmp_path / "copy.safetensors"
    model.save(path)
    again = rnnscope.Model.load(path)
    x = np.arange(12).reshape(4, 3) % 7
    assert np.array_equal(model.forward(x)[0], again.forward(x)[0])
    assert again.config == model.config


def test_every_bad_input_raises_its_documented_exception(tmp_path):
    model = random_model("lstm", tmp_path, dtype="float32")
    x = np.zeros((4, 2), dtype=np.int64)
    cases = [
        (FileNotFoundError, "missing.safetensors", lambda: rnnscope.Model.load(tmp_path / "missing.safetensors")),
        (ValueError, "not a valid safetensors", lambda: rnnscope.Model.load(FIXTURES / "wlm_vocab.txt")),
        (ValueError, "torch.save", lambda: rnnscope.Model.load(FIXTURES / "bare_lstm.pt")),
        (ValueError, "dtype", lambda: rnnscope.Model.load(tmp_path / "lstm.safetensors", dtype="float16")),
        (ValueError, "no recurrent layer", lambda: rnnscope.Model.from_torch({"w": np.zeros((2, 2))})),
        (ValueError, "non-finite", lambda: rnnscope.Model.from_torch(
            {**fixture_case("gru")[0], "rnn.weight_hh_l0": np.full((33, 11), np.nan)})),
        (ValueError, "bidirectional", lambda: rnnscope.Model.from_torch(
            {**fixture_case("gru")[0], "rnn.weight_ih_l0_reverse": np.zeros((33, 7))})),
        (TypeError, "mapping", lambda: rnnscope.Model.from_torch(42)),
        (TypeError, "integer", lambda: model.forward(np.zeros((4, 2)))),
        (ValueError, "outside the model's vocabulary", lambda: model.forward(x + 7)),
        (ValueError, "not a token id", lambda: model.forward(x - 1)),
        (ValueError, "[T, B]", lambda: model.forward(np.zeros((2, 2, 2), dtype=int))),
        (ValueError, "at least one token", lambda: model.forward(np.zeros((0, 2), dtype=int))),
        (ValueError, "shape of tokens", lambda: model.loss_and_grads(x, x[:3])),
        (ValueError, "state has", lambda: model.forward(x, (np.zeros((1, 3, 6)), np.zeros((1, 3, 6))))),
        (ValueError, "state has", lambda: model.forward(x, np.zeros((1, 2, 6)))),
        (ValueError, "non-finite", lambda: model.forward(x, (np.full((1, 2, 6), np.inf), np.zeros((1, 2, 6))))),
        (ValueError, "both tokens and targets", lambda: model.gradflow(tokens=x)),
        (ValueError, "bptt and --batch must be at least 1", lambda: model.gradflow(bptt=0)),
        (ValueError, "precision", lambda: model.gradflow(precision="f16")),
        (ValueError, "--jacobian-batch 2 must be below", lambda: model.gradflow(bptt=4, batch=2, jacobian_batch=2)),
        (ValueError, "no vocabulary", lambda: model.gradflow(text=FIXTURES / "wlm_eval.txt")),
        (FileNotFoundError, "nope.txt", lambda: rnnscope.Model.load(FIXTURES / "bare_lstm.safetensors").gradflow(
            text=tmp_path / "nope.txt", vocab_file=FIXTURES / "bare_vocab.json")),
        (FileNotFoundError, "no-such-dir", lambda: model.save(tmp_path / "no-such-dir" / "m.safetensors")),
    ]
    for exc, words, call in cases:
        with pytest.raises(exc) as info:
            call()
        msg = str(info.value)
        assert words in msg, (words, msg)
        assert "\n" not in msg, msg
