"""rnnscope from Python: recurrent language models (vanilla RNN, LSTM, GRU) with exact,
hand-written backpropagation through time, and the gradient-flow analysis, numpy in and out.

The engine is the Rust library behind the ``rnnscope`` command; this package calls it in
process (no subprocess, no JSON parsing) and releases the GIL while it runs.

Shapes are time-major, as in ``torch.nn.LSTM`` without ``batch_first``: tokens and targets
``[T, B]`` (T steps, B sequences), logits ``[T, B, V]``, states ``h [L, B, H]`` (``[L, B, P]``
for an LSTM with ``proj_size`` P) and ``c [L, B, H]``.

Errors raise ``FileNotFoundError`` (a missing file or run directory), ``PermissionError`` and
other ``OSError`` (unreadable or unwritable files), ``ValueError`` (a bad checkpoint, state dict,
option or input, with the command line's one-line message), ``TypeError`` (tokens that are not
integers, an unknown option), ``ArithmeticError`` (training diverged) and ``KeyboardInterrupt``
(Ctrl-C during training, after the run was saved).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _rnnscope

__all__ = [
    "Model",
    "GradFlow",
    "train",
    "task",
    "experiment",
    "report",
    "__version__",
]

__version__ = _rnnscope.version()

PathLike = Union[str, "os.PathLike[str]"]


def _tokens(x: Any, name: str) -> np.ndarray:
    """``x`` as a C-contiguous int64 ``[T, B]`` block (a 1-D sequence is ``B = 1``)."""
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integer token ids, got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be [T, B] (or [T]), got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} must hold at least one token, got shape {a.shape}")
    if a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds a token id above the vocabulary")
    return np.ascontiguousarray(a, dtype=np.int64)


def _state(state: Any) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """An initial state ``h`` or ``(h, c)`` as float64 ``[L, B, H]`` arrays."""
    if state is None:
        return None, None
    if isinstance(state, (tuple, list)):
        if len(state) != 2:
            raise ValueError("state must be h or (h, c), each [L, B, H]")
        h, c = state
    else:
        h, c = state, None
    out = []
    for name, v in (("h", h), ("c", c)):
        if v is None:
            out.append(None)
            continue
        a = np.ascontiguousarray(np.asarray(v, dtype=np.float64))
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3:
            raise ValueError(f"state {name} must be [L, B, H], got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"state {name} holds a non-finite value")
        out.append(a)
    return out[0], out[1]


def _numpy(v: Any) -> np.ndarray:
    """A tensor (torch, or anything numpy reads) as a float64 array, without importing torch."""
    if hasattr(v, "detach"):
        v = v.detach()
        if hasattr(v, "cpu"):
            v = v.cpu()
        if hasattr(v, "double"):
            v = v.double()
        v = v.numpy()
    a = np.asarray(v)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"a tensor of dtype {a.dtype} is not numeric")
    return np.ascontiguousarray(a, dtype=np.float64)


def _state_dict(obj: Any, prefix: str = "") -> Dict[str, np.ndarray]:
    sd = obj.state_dict() if hasattr(obj, "state_dict") else obj
    if not isinstance(sd, Mapping) and not hasattr(sd, "items"):
        raise TypeError(
            "from_torch takes a torch.nn.Module or a state dict (a mapping of names to tensors), "
            f"got {type(obj).__name__}"
        )
    return {prefix + str(k): _numpy(v) for k, v in sd.items()}


def _nonlinearity(obj: Any) -> Optional[str]:
    """The ``nonlinearity`` of an ``nn.RNN`` in ``obj`` (itself or a submodule), if any."""
    mods = list(obj.modules()) if hasattr(obj, "modules") else [obj]
    for m in mods:
        n = getattr(m, "nonlinearity", None)
        if isinstance(n, str):
            return n
    return None


class Model:
    """A recurrent language model: embedding -> RNN/LSTM/GRU layers -> linear decoder.

    Create one with :meth:`load` (an rnnscope checkpoint or a PyTorch state dict saved as
    safetensors) or :meth:`from_torch`. ``dtype`` is ``"float32"`` (as models train) or
    ``"float64"`` (exact to rounding, e.g. for finite-difference checks); results come back
    in the model's dtype.
    """

    def __init__(self, net: Any) -> None:
        self._net = net

    # --- making and saving ---------------------------------------------------------------

    @classmethod
    def load(cls, path: PathLike, dtype: str = "float32") -> "Model":
        """Loads a checkpoint: one written by rnnscope, or a PyTorch ``state_dict()`` saved as
        safetensors (names as in README "Analyse your own PyTorch model"). Raises
        ``FileNotFoundError`` when the file is missing and ``ValueError`` when it is not a
        usable checkpoint."""
        return cls(_rnnscope.Net.load(os.fspath(path), dtype))

    @classmethod
    def from_torch(
        cls,
        module_or_state_dict: Any,
        embedding: Any = None,
        decoder: Any = None,
        nonlinearity: Optional[str] = None,
        dtype: str = "float32",
    ) -> "Model":
        """A model from PyTorch weights, read through numpy (rnnscope never imports torch).

        ``module_or_state_dict``: a ``torch.nn.Module`` or its ``state_dict()`` (any mapping of
        names to tensors or arrays): a whole language model (``word_language_model``'s
        ``encoder``/``rnn``/``decoder``, or any module names: one recurrent module, one
        bias-less embedding matrix, one decoder), or a bare ``nn.RNN``/``nn.LSTM``/``nn.GRU``
        (one-hot tokens in, the top layer's output as logits). ``embedding`` (an
        ``nn.Embedding``) and ``decoder`` (an ``nn.Linear``) put modules held apart around a
        bare recurrent module. ``nonlinearity`` (``"tanh"``/``"relu"``) of a vanilla RNN is
        read from the module when not given. Raises ``ValueError`` naming the tensor when the
        weights do not form a supported model.
        """
        if embedding is None and decoder is None:
            tensors = _state_dict(module_or_state_dict)
        else:
            tensors = _state_dict(module_or_state_dict, "rnn.")
            if embedding is not None:
                tensors.update(_state_dict(embedding, "embedding."))
            if decoder is not None:
                tensors.update(_state_dict(decoder, "decoder."))
        nl = nonlinearity or _nonlinearity(module_or_state_dict)
        meta = {"nonlinearity": nl} if nl else {}
        return cls(_rnnscope.Net.from_state_dict(tensors, meta, "state dict", dtype))

    def save(self, path: PathLike) -> None:
        """Saves a safetensors checkpoint with PyTorch names (the ``rnnscope`` command and
        ``torch``'s ``load_state_dict`` read it), atomically."""
        self._net.save(os.fspath(path))

    def astype(self, dtype: str) -> "Model":
        """A copy in ``"float32"`` or ``"float64"``."""
        return Model(self._net.astype(dtype))

    # --- what it is ----------------------------------------------------------------------

    @property
    def dtype(self) -> str:
        """``"float32"`` or ``"float64"``."""
        return self._net.dtype

    @property
    def config(self) -> Dict[str, Any]:
        """The architecture (cell, activation, vocab, embedding, hidden, layers, ...), as
        stored in checkpoints."""
        return json.loads(self._net.config_json())

    @property
    def metadata(self) -> Dict[str, str]:
        """The checkpoint's header metadata (vocabulary, training information)."""
        return self._net.metadata()

    def state_dict(self) -> Dict[str, np.ndarray]:
        """The parameters by PyTorch name, as numpy arrays of the model's dtype (names of the
        state dict the model came from, for :meth:`from_torch` and PyTorch files)."""
        return self._net.state_dict()

    def __repr__(self) -> str:
        c = self.config
        return (
            f"rnnscope.Model({c['cell']}, vocab={c['vocab']}, embedding={c['embedding']}, "
            f"hidden={c['hidden']}, layers={c['layers']}, dtype={self.dtype})"
        )

    # --- passes --------------------------------------------------------------------------

    def forward(
        self, tokens: Any, state: Any = None
    ) -> Tuple[np.ndarray, Tuple[np.ndarray, Optional[np.ndarray]]]:
        """Forward pass over ``tokens [T, B]`` (a 1-D array is one sequence) from ``state``
        (``h`` or ``(h, c)``, each ``[L, B, H]``; zeros when None). Returns ``(logits [T, B, V],
        (h, c))``: the final state, ``c`` None except for an LSTM."""
        h, c = _state(state)
        logits, h, c = self._net.forward(_tokens(tokens, "tokens"), h, c)
        return logits, (h, c)

    def loss_and_grads(
        self, tokens: Any, targets: Any, state: Any = None
    ) -> Tuple[float, Dict[str, np.ndarray]]:
        """The mean cross-entropy ``L`` over the ``T B`` tokens and ``dL/dparam`` for every
        parameter, by PyTorch name (as :meth:`state_dict`), exact BPTT through the whole window.
        ``targets [T, B]`` are the next tokens."""
        h, c = _state(state)
        return self._net.loss_and_grads(_tokens(tokens, "tokens"), _tokens(targets, "targets"), h, c)

    def hidden_grads(
        self, tokens: Any, targets: Any, state: Any = None
    ) -> Tuple[List[np.ndarray], Optional[List[np.ndarray]]]:
        """Per-step gradients of the mean loss ``L`` (as :meth:`loss_and_grads`): ``(dh, dc)``
        with ``dh[k]`` the ``[T, B, H]`` (``[T, B, P]`` with a projection) total derivatives
        ``dL/dh_t`` of layer ``k``, and for an LSTM ``dc[k]`` the ``[T, B, H]`` ``dL/dc_t`` (``c_t`` reaching ``L`` through ``h_t`` and ``c_{t+1}``);
        ``dc`` is None for RNN and GRU."""
        h, c = _state(state)
        _, dh, dc = self._net.hidden_grads(
            _tokens(tokens, "tokens"), _tokens(targets, "targets"), h, c
        )
        return dh, dc

    def gradflow(
        self,
        tokens: Any = None,
        targets: Any = None,
        *,
        bptt: int = 128,
        batch: int = 16,
        text: Optional[PathLike] = None,
        vocab_file: Optional[PathLike] = None,
        seed: int = 0,
        jacobian: bool = True,
        jacobian_batch: int = 0,
        precision: str = "f64",
        show_window: int = 0,
        show_targets: Optional[Sequence[int]] = None,
        threads: int = 0,
    ) -> "GradFlow":
        """Gradient flow through time, as ``rnnscope gradflow`` measures it (same options,
        same numbers). The input: ``tokens`` and ``targets [T, B]`` when given; else ``batch``
        windows of ``bptt`` tokens of ``text`` (through the model's vocabulary, or
        ``vocab_file``'s); else uniformly random tokens drawn with ``seed``. ``precision``:
        ``"f64"`` or ``"f32"`` for the batched sweep. ``threads``: 0 = all cores."""
        if (tokens is None) != (targets is None):
            raise ValueError("give both tokens and targets [T, B], or neither")
        x = None if tokens is None else _tokens(tokens, "tokens")
        y = None if targets is None else _tokens(targets, "targets")
        for name, v in (("bptt", bptt), ("batch", batch), ("seed", seed), ("threads", threads),
                        ("jacobian_batch", jacobian_batch), ("show_window", show_window)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
        shown = [int(i) for i in (show_targets or [])]
        if any(i < 0 for i in shown):
            raise ValueError(f"show_targets must be non-negative positions, got {shown}")
        out = self._net.gradflow(
            x, y, int(bptt), int(batch), int(seed), bool(jacobian), int(jacobian_batch),
            precision,
            None if text is None else os.fspath(text),
            None if vocab_file is None else os.fspath(vocab_file),
            int(show_window), shown, int(threads),
        )
        return GradFlow(*out)


class GradFlow:
    """What :meth:`Model.gradflow` measured (the contents of ``gradflow.json``), as numpy
    arrays. Layer ``k`` runs from 0 (bottom) to ``L - 1`` (top, feeding the decoder).

    Attributes:
        summary: the ``rnnscope gradflow --json`` summary (dict): regime, rates, horizon, ...
        profile: ``[L, T]`` ``R(l)`` by distance ``l``: mean ``|dJ^(i)/dh^(i-l)|`` over
            mean ``|dJ^(i)/dh^(i)|`` (NaN where undefined).
        profile_cell: the same through the LSTM cell state, or None.
        pairs: ``[L, T]`` number of ``(i, b)`` pairs averaged at each distance.
        influence: ``[L, T, T]`` mean over the batch of ``|dJ^(i)/dh^(j)|`` (row ``i``, column
            ``j <= i``; zero above the diagonal).
        influence_cell: the same for ``|dJ^(i)/dc^(j)|`` (LSTM), or None.
        jacobian_log_singular_values: per layer ``[rows, k]`` ``ln sigma`` of the Jacobian
            products ``dh_t/dh_{t-l}`` at ``jacobian_distances[k]`` (empty without Jacobians).
        jacobian_distances: per layer ``[rows]`` the distances ``l`` of those rows.
        spectrum: per layer, ``{gate: complex eigenvalues of W_hh's gate block}``.
        regime: the Pascanu et al. regime of the top layer (``"vanishing"``, ...).
        decay_per_step: the measured decay of ``R(l)`` per step, or None.
        theory: the theory checks (dict).
    """

    def __init__(self, snapshot_json: str, summary_json: str, influence: np.ndarray,
                 influence_cell: Optional[np.ndarray]) -> None:
        self._dict = json.loads(snapshot_json)
        self.summary: Dict[str, Any] = json.loads(summary_json)
        self.influence = influence
        self.influence_cell = influence_cell

        def ratios(rows: List[Dict[str, Any]]) -> np.ndarray:
            return np.array([np.nan if r["ratio"] is None else r["ratio"] for r in rows])

        profiles = self._dict["profiles"]
        self.profile = np.array([ratios(p["hidden"]) for p in profiles])
        self.pairs = np.array([[r["count"] for r in p["hidden"]] for p in profiles])
        self.profile_cell = (
            np.array([ratios(p["cell"]) for p in profiles])
            if profiles and profiles[0].get("cell") is not None
            else None
        )
        self.jacobian_distances = [
            np.array([r["distance"] for r in j["products"]], dtype=np.int64)
            for j in self._dict["jacobian"]
        ]
        self.jacobian_log_singular_values = []
        for j in self._dict["jacobian"]:
            rows = [r["log_singular_values"] for r in j["products"]]
            k = max((len(r) for r in rows), default=0)
            a = np.full((len(rows), k), np.nan)
            for i, r in enumerate(rows):
                a[i, : len(r)] = r
            self.jacobian_log_singular_values.append(a)
        self.spectrum = [
            {
                g["gate"]: np.array([complex(e["re"], e["im"]) for e in g["eigenvalues"]])
                for g in layer["gates"]
            }
            for layer in self._dict["spectrum"]
        ]
        self.regime: str = self.summary["regime"]
        self.decay_per_step: Optional[float] = self.summary["decay_per_step"]
        self.theory: Dict[str, Any] = self._dict["theory"]

    def to_dict(self) -> Dict[str, Any]:
        """Everything measured, as ``gradflow.json`` holds it (plain Python values)."""
        return json.loads(json.dumps(self._dict))

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"rnnscope.GradFlow({s['cell']}, T={s['bptt']}, B={s['batch']}, "
            f"regime={s['regime']}, decay_per_step={s['decay_per_step']})"
        )


# --- the commands ------------------------------------------------------------------------


def _argv(command: str, positional: Sequence[str], options: Mapping[str, Any]) -> List[str]:
    """``rnnscope COMMAND`` arguments from keyword options: ``name=value`` is ``--name value``
    (``_`` as ``-``), ``True`` a bare flag, ``False``/``None`` left out, a list comma-joined."""
    argv = [command, *positional]
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv.append(f"{flag}={','.join(str(v) for v in value)}")
        elif isinstance(value, os.PathLike):
            argv.append(f"{flag}={os.fspath(value)}")
        else:
            argv.append(f"{flag}={value}")
    return argv


def train(corpus: Optional[PathLike] = None, out: Optional[PathLike] = None, **options: Any) -> None:
    """``rnnscope train``: trains a language model on the text file ``corpus`` into the run
    directory ``out`` (``config.toml``, ``metrics.csv``, ``last.safetensors``,
    ``best.safetensors``, ``summary.json``, ``report.html``). ``options`` are the command's
    flags (``rnnscope train --help``) as keywords: ``cell="lstm"``, ``hidden=128``,
    ``max_time=60``, ``force=True``, ``resume="runs/a"``, ... Progress goes to stderr as in the
    command. Ctrl-C finishes the current step, saves, then raises ``KeyboardInterrupt``;
    ``train(resume=out)`` continues the run."""
    _rnnscope.run_command(_argv("train", [], {"corpus": corpus, "out": out, **options}))


def task(name: str, **options: Any) -> None:
    """``rnnscope task NAME``: trains on one synthetic long-range task, ``name`` one of
    ``"dependency"``, ``"copy"``, ``"adding"``, ``"order"`` (``length=20``,
    ``out="runs/copy"``, ...: the flags of ``rnnscope task --help`` as keywords). Ctrl-C saves
    and raises ``KeyboardInterrupt``; the same call continues the run."""
    _rnnscope.run_command(_argv("task", [name], options))


def experiment(**options: Any) -> None:
    """``rnnscope experiment``: a grid of task runs with a results table (the flags of
    ``rnnscope experiment --help`` as keywords). Ctrl-C saves and raises ``KeyboardInterrupt``."""
    _rnnscope.run_command(_argv("experiment", [], options))


def report(run_dir: PathLike, **options: Any) -> str:
    """``rnnscope report``: writes the HTML report of a run, task, gradflow, demo or experiment
    directory (``out=``, ``plots=``, ``png=True``, ``no_plot_files=True``); returns its path."""
    _rnnscope.run_command(_argv("report", [os.fspath(run_dir)], options))
    html = options.get("out")
    return os.fspath(html) if html is not None else os.path.join(os.fspath(run_dir), "report.html")
