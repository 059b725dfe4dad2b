//! `rnnscope._rnnscope`: the engine under the Python package. The classes and functions
//! users call (with their documentation) are in `rnnscope/__init__.py`; this module moves
//! arrays in and out, releases the GIL while the engine runs, and turns the library's errors
//! into Python exceptions. It computes nothing itself.

use numpy::{PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArray2, PyReadonlyArray3};
use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{
    PyArithmeticError, PyFileNotFoundError, PyIsADirectoryError, PyOSError, PyPermissionError,
    PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rnnscope::analysis::{self, InputKind, InputRecord};
use rnnscope::checkpoint::{self, Tensor, TensorFile};
use rnnscope::cli::{self, gradflow};
use rnnscope::error::RunDirProblem;
use rnnscope::model::Output;
use rnnscope::tensor::Float;
use rnnscope::{Error, LanguageModel, LossWeights, ModelConfig, State, StepRecord, Workspace};
use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The Python exception of a library error, with the message the command line prints.
fn py_err(e: Error) -> PyErr {
    let msg = e.to_string();
    match &e {
        Error::Io { source, .. } | Error::Read { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
            std::io::ErrorKind::IsADirectory => PyIsADirectoryError::new_err(msg),
            _ => PyOSError::new_err(msg),
        },
        Error::RunDir {
            problem: RunDirProblem::NotFound,
            ..
        } => PyFileNotFoundError::new_err(msg),
        Error::Numeric(_) | Error::NonFiniteStep { .. } | Error::Diverged { .. } => {
            PyArithmeticError::new_err(msg)
        }
        Error::Usage(_) => PyRuntimeError::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

/// Runs `f`, turning a panic (a bug: every input is checked first) into a `RuntimeError`.
fn guarded<R>(f: impl FnOnce() -> rnnscope::Result<R>) -> PyResult<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(py_err),
        Err(p) => {
            let what = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(PyRuntimeError::new_err(format!(
                "internal error in rnnscope (please report it): {what}"
            )))
        }
    }
}

/// A model in one of the two precisions the engine runs in.
enum Weights {
    F32(LanguageModel<f32>),
    F64(LanguageModel<f64>),
}

/// Runs `$body` with `$m` bound to the model, whichever its precision.
macro_rules! with_model {
    ($w:expr, $m:ident => $body:expr) => {
        match $w {
            Weights::F32($m) => $body,
            Weights::F64($m) => $body,
        }
    };
}

fn weights<T: Float>(m: LanguageModel<T>, dtype: &str) -> PyResult<Weights> {
    Ok(match dtype {
        "float32" => Weights::F32(analysis::convert(&m).map_err(py_err)?),
        "float64" => Weights::F64(analysis::convert(&m).map_err(py_err)?),
        other => {
            return Err(PyValueError::new_err(format!(
                "dtype `{other}`: use \"float32\" or \"float64\""
            )))
        }
    })
}

/// The engine's model: weights, checkpoint metadata (vocabulary), the file it came from, and
/// the PyTorch names of its parameters when it came from a PyTorch state dict.
#[pyclass(module = "rnnscope._rnnscope", frozen)]
struct Net {
    weights: Weights,
    metadata: HashMap<String, String>,
    origin: PathBuf,
    source_names: Option<BTreeMap<String, String>>,
}

/// `[T, B]` token ids as u32 (the Python side hands int64).
fn token_block(a: &PyReadonlyArray2<i64>) -> PyResult<(Vec<u32>, usize, usize)> {
    let (t, b) = (a.shape()[0], a.shape()[1]);
    let ids = a
        .as_array()
        .iter()
        .map(|&x| {
            u32::try_from(x).map_err(|_| {
                PyValueError::new_err(format!("token {x} is not a token id (0 to vocab - 1)"))
            })
        })
        .collect::<PyResult<Vec<u32>>>()?;
    Ok((ids, t, b))
}

/// An initial state `(h [L, B, H], c [L, B, H] or None)` in the model's precision.
fn state_of<T: Float>(
    h: Option<PyReadonlyArray3<f64>>,
    c: Option<PyReadonlyArray3<f64>>,
) -> Option<State<T>> {
    let conv = |a: &PyReadonlyArray3<f64>| a.as_array().iter().map(|&x| T::from_f64(x)).collect();
    h.map(|h| State {
        h: conv(&h),
        c: c.as_ref().map_or(Vec::new(), conv),
    })
}

fn array<'py, T: numpy::Element>(
    py: Python<'py>,
    v: Vec<T>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    PyArray1::from_vec(py, v).reshape(shape)
}

/// The layers' state arrays: `h [L, B, P]` (`P` = `proj_size`, else `H`) and `c [L, B, H]`
/// (`None` without a cell state).
fn state_arrays<'py, T: Float + numpy::Element>(
    py: Python<'py>,
    s: State<T>,
    c: &ModelConfig,
    batch: usize,
) -> PyResult<(Bound<'py, PyAny>, Option<Bound<'py, PyAny>>)> {
    let h = array(py, s.h, &[c.layers, batch, c.h_size()])?.into_any();
    let c = if s.c.is_empty() {
        None
    } else {
        Some(array(py, s.c, &[c.layers, batch, c.hidden])?.into_any())
    };
    Ok((h, c))
}

/// The forward pass and loss (`Mean` over all tokens) on a fresh workspace, checked first.
fn forward_loss<T: Float>(
    m: &LanguageModel<T>,
    ws: &mut Workspace<T>,
    tokens: &[u32],
    targets: &[u32],
    state: &Option<State<T>>,
    steps: usize,
    batch: usize,
) -> rnnscope::Result<f64> {
    m.check_inputs(tokens, Some(targets), state.as_ref(), batch)?;
    if m.config.output != Output::Softmax {
        return Err(Error::Config(
            "the model has a squared-error head (a `task adding` model): loss_and_grads and hidden_grads need a softmax language model".into(),
        ));
    }
    let zeros = State::zeros(&m.config, batch);
    m.forward(
        ws,
        tokens,
        state.as_ref().unwrap_or(&zeros),
        steps,
        batch,
        None,
    );
    Ok(m.loss(ws, targets))
}

impl Net {
    fn new(ck: checkpoint::Checkpoint<f64>, origin: PathBuf, dtype: &str) -> PyResult<Self> {
        Ok(Net {
            weights: weights(ck.model, dtype)?,
            metadata: ck.metadata,
            origin,
            source_names: ck.source_names,
        })
    }

    /// The name a parameter has for the caller: its state-dict name, or `None` for a tensor
    /// made up for a missing embedding or decoder.
    fn caller_name(&self, ours: &str) -> Option<String> {
        match &self.source_names {
            None => Some(ours.to_string()),
            Some(map) => map.get(ours).cloned(),
        }
    }

    fn named<'py, T: Float + numpy::Element>(
        &self,
        py: Python<'py>,
        m: &LanguageModel<T>,
        values: &[T],
    ) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for e in m.layout.entries() {
            if let Some(name) = self.caller_name(&e.name) {
                d.set_item(name, array(py, values[e.range()].to_vec(), &e.shape)?)?;
            }
        }
        Ok(d)
    }
}

#[pymethods]
impl Net {
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf, dtype: &str) -> PyResult<Self> {
        let ck = py.detach(|| guarded(|| checkpoint::load::<f64>(&path)))?;
        Net::new(ck, path, dtype)
    }

    /// A model from PyTorch-named float64 arrays (a state dict), named `label` in errors.
    #[staticmethod]
    fn from_state_dict(
        py: Python<'_>,
        tensors: BTreeMap<String, PyReadonlyArrayDyn<f64>>,
        metadata: HashMap<String, String>,
        label: String,
        dtype: &str,
    ) -> PyResult<Self> {
        let tensors: BTreeMap<String, Tensor> = tensors
            .into_iter()
            .map(|(k, a)| {
                let t = Tensor {
                    shape: a.shape().to_vec(),
                    data: a.as_array().iter().copied().collect(),
                };
                (k, t)
            })
            .collect();
        let origin = PathBuf::from(label);
        let ck = py.detach(|| {
            guarded(|| {
                checkpoint::from_file::<f64>(TensorFile::from_tensors(&origin, tensors, metadata)?)
            })
        })?;
        Net::new(ck, origin, dtype)
    }

    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| {
            guarded(|| with_model!(&self.weights, m => checkpoint::save(m, &path, &self.metadata)))
        })
    }

    fn astype(&self, dtype: &str) -> PyResult<Self> {
        Ok(Net {
            weights: with_model!(&self.weights, m => weights(m.clone(), dtype))?,
            metadata: self.metadata.clone(),
            origin: self.origin.clone(),
            source_names: self.source_names.clone(),
        })
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        match self.weights {
            Weights::F32(_) => "float32",
            Weights::F64(_) => "float64",
        }
    }

    /// The model's configuration as JSON (`ModelConfig`, as stored in checkpoints).
    fn config_json(&self) -> String {
        let c = with_model!(&self.weights, m => &m.config);
        serde_json::to_string(c).expect("the config serialises")
    }

    fn metadata(&self) -> HashMap<String, String> {
        self.metadata.clone()
    }

    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        with_model!(&self.weights, m => self.named(py, m, m.params()))
    }

    /// `(logits [T, B, V], h [L, B, H], c [L, B, H] or None)`.
    #[pyo3(signature = (tokens, h=None, c=None))]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        tokens: PyReadonlyArray2<i64>,
        h: Option<PyReadonlyArray3<f64>>,
        c: Option<PyReadonlyArray3<f64>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (ids, steps, batch) = token_block(&tokens)?;
        with_model!(&self.weights, m => {
            let state = state_of(h, c);
            let (logits, last) = py.detach(|| guarded(|| {
                m.check_inputs(&ids, None, state.as_ref(), batch)?;
                let mut ws = Workspace::default();
                let zeros = State::zeros(&m.config, batch);
                m.forward(&mut ws, &ids, state.as_ref().unwrap_or(&zeros), steps, batch, None);
                let mut last = State::zeros(&m.config, batch);
                m.final_state(&ws, &mut last);
                Ok((std::mem::take(&mut ws.logits), last))
            }))?;
            let cfg = &m.config;
            let logits = array(py, logits, &[steps, batch, cfg.vocab])?;
            let (h, c) = state_arrays(py, last, cfg, batch)?;
            (logits, h, c).into_pyobject(py).map(|t| t.into_any())
        })
    }

    /// `(loss, {name: dL/dparam})` with `L` the mean cross-entropy over the `T B` tokens.
    #[pyo3(signature = (tokens, targets, h=None, c=None))]
    fn loss_and_grads<'py>(
        &self,
        py: Python<'py>,
        tokens: PyReadonlyArray2<i64>,
        targets: PyReadonlyArray2<i64>,
        h: Option<PyReadonlyArray3<f64>>,
        c: Option<PyReadonlyArray3<f64>>,
    ) -> PyResult<(f64, Bound<'py, PyDict>)> {
        let (ids, steps, batch) = token_block(&tokens)?;
        let (ys, ..) = token_block(&targets)?;
        with_model!(&self.weights, m => {
            let state = state_of(h, c);
            let (loss, grads) = py.detach(|| guarded(|| {
                let mut ws = Workspace::default();
                let loss = forward_loss(m, &mut ws, &ids, &ys, &state, steps, batch)?;
                let mut grads = vec![Float::ZERO; m.layout.total()];
                m.backward(&mut ws, &mut grads, LossWeights::Mean, None, None)?;
                Ok((loss, grads))
            }))?;
            Ok((loss, self.named(py, m, &grads)?))
        })
    }

    /// `(loss, [dL/dh_t [T, B, H] per layer], [dL/dc_t per layer] or None)`.
    #[pyo3(signature = (tokens, targets, h=None, c=None))]
    fn hidden_grads<'py>(
        &self,
        py: Python<'py>,
        tokens: PyReadonlyArray2<i64>,
        targets: PyReadonlyArray2<i64>,
        h: Option<PyReadonlyArray3<f64>>,
        c: Option<PyReadonlyArray3<f64>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (ids, steps, batch) = token_block(&tokens)?;
        let (ys, ..) = token_block(&targets)?;
        with_model!(&self.weights, m => {
            let state = state_of(h, c);
            let (loss, rec) = py.detach(|| guarded(|| {
                let mut ws = Workspace::default();
                let loss = forward_loss(m, &mut ws, &ids, &ys, &state, steps, batch)?;
                let mut grads = vec![Float::ZERO; m.layout.total()];
                let mut rec = StepRecord::default();
                m.backward(&mut ws, &mut grads, LossWeights::Mean, None, Some(&mut rec))?;
                Ok((loss, rec))
            }))?;
            let (p, h) = (m.config.h_size(), m.config.hidden);
            let dh = rec.dh.into_iter().map(|v| array(py, v, &[steps, batch, p])).collect::<PyResult<Vec<_>>>()?;
            let dc = if m.config.cell.keeps().cell_state {
                Some(rec.dc.into_iter().map(|v| array(py, v, &[steps, batch, h])).collect::<PyResult<Vec<_>>>()?)
            } else {
                None
            };
            (loss, dh, dc).into_pyobject(py).map(|t| t.into_any())
        })
    }

    /// What `rnnscope gradflow` measures on this model: `(gradflow.json as a string, the
    /// `--json` summary as a string, influence [L, T, T], influence through c or None)`.
    #[pyo3(signature = (tokens, targets, bptt, batch, seed, jacobian, jacobian_batch, precision, text, vocab_file, show_window, show_targets, threads))]
    #[allow(clippy::too_many_arguments)]
    fn gradflow<'py>(
        &self,
        py: Python<'py>,
        tokens: Option<PyReadonlyArray2<i64>>,
        targets: Option<PyReadonlyArray2<i64>>,
        bptt: usize,
        batch: usize,
        seed: u64,
        jacobian: bool,
        jacobian_batch: usize,
        precision: &str,
        text: Option<PathBuf>,
        vocab_file: Option<PathBuf>,
        show_window: usize,
        show_targets: Vec<usize>,
        threads: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let given = match (&tokens, &targets) {
            (Some(x), Some(y)) => Some((token_block(x)?, token_block(y)?.0)),
            _ => None,
        };
        let (bptt, batch) = given
            .as_ref()
            .map_or((bptt, batch), |((_, t, b), _)| (*t, *b));
        let precision = match precision {
            "f64" => gradflow::PrecisionArg::F64,
            "f32" => gradflow::PrecisionArg::F32,
            other => {
                return Err(PyValueError::new_err(format!(
                    "precision `{other}`: use \"f64\" or \"f32\""
                )))
            }
        };
        let args = gradflow::Args {
            checkpoint: None,
            cell: None,
            activation: None,
            recurrence: None,
            residual: false,
            attention: None,
            attention_span: None,
            hidden: None,
            layers: None,
            embedding: None,
            vocab: None,
            init: None,
            spectral_radius: None,
            forget_bias: None,
            text,
            vocab_file,
            show_targets,
            show_window,
            seed,
            bptt,
            batch,
            out: PathBuf::new(),
            force: false,
            json: true,
            no_jacobian: !jacobian,
            jacobian_batch,
            precision,
            threads,
        };
        let snap = py.detach(|| {
            guarded(|| {
                cli::set_threads(threads);
                let model = with_model!(&self.weights, m => analysis::to_f64(m))?;
                match &given {
                    Some(((ids, steps, b), ys)) => {
                        if args.jacobian_batch >= *b {
                            return Err(Error::Config(format!(
                                "jacobian_batch {} must be below the batch {b}",
                                args.jacobian_batch
                            )));
                        }
                        let mut snap = analysis::snapshot(
                            &model,
                            ids,
                            ys,
                            None,
                            *b,
                            &gradflow::options(&args),
                        )?;
                        snap.summary.input = InputRecord {
                            kind: InputKind::Unspecified,
                            source: "tokens given by the caller".into(),
                            windows: *b,
                            window_length: *steps,
                            seed,
                            ..Default::default()
                        };
                        Ok(snap)
                    }
                    None => {
                        let vocab = match &args.text {
                            Some(_) => Some(cli::eval::vocab_of(
                                &model,
                                &self.metadata,
                                &self.origin,
                                args.vocab_file.as_deref(),
                            )?),
                            None => None,
                        };
                        gradflow::measure(&model, vocab.as_ref(), &args)
                    }
                }
            })
        })?;
        let json = serde_json::to_string(&snap).expect("the snapshot serialises");
        let summary = gradflow::json_summary(&snap).to_string();
        let (l, t) = (snap.influence.len(), snap.summary.bptt);
        let flat = |v: &[Vec<f64>]| v.concat();
        let influence = array(py, flat(&snap.influence), &[l, t, t])?;
        let influence_cell = if snap.influence_cell.is_empty() {
            None
        } else {
            Some(array(py, flat(&snap.influence_cell), &[l, t, t])?)
        };
        (json, summary, influence, influence_cell)
            .into_pyobject(py)
            .map(|t| t.into_any())
    }
}

/// Runs `rnnscope ARGV...` (train, task, experiment, report) in this process: the engine on
/// a worker thread with the GIL released, this thread checking for Ctrl-C every 10 ms. On
/// Ctrl-C the run finishes its step and saves, as the command line does, then
/// `KeyboardInterrupt` is raised.
#[pyfunction]
fn run_command(py: Python<'_>, argv: Vec<String>) -> PyResult<()> {
    use clap::Parser;
    let parsed = cli::Cli::try_parse_from(std::iter::once("rnnscope".to_string()).chain(argv));
    let command = match parsed {
        Ok(c) => c.command,
        Err(e) => {
            let msg = e.to_string();
            let line = msg
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            return Err(match e.kind() {
                clap::error::ErrorKind::UnknownArgument => PyTypeError::new_err(line.to_string()),
                _ => PyValueError::new_err(line.to_string()),
            });
        }
    };
    cli::STOP.store(false, Ordering::SeqCst);
    let worker = std::thread::spawn(move || guarded(|| cli::run_command(command)));
    let mut interrupted = None;
    while !worker.is_finished() {
        py.detach(|| std::thread::sleep(Duration::from_millis(10)));
        if interrupted.is_none() {
            if let Err(e) = py.check_signals() {
                eprintln!("\ninterrupt: finishing the current step and saving");
                cli::STOP.store(true, Ordering::SeqCst);
                interrupted = Some(e);
            }
        }
    }
    let result = worker.join().unwrap_or_else(|_| {
        Err(PyRuntimeError::new_err(
            "internal error: the engine thread panicked",
        ))
    });
    cli::STOP.store(false, Ordering::SeqCst);
    result?;
    match interrupted {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The `rnnscope` command's version.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _rnnscope(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Ctrl-C belongs to Python here: `run_command` raises the stop flag itself.
    cli::HANDLE_CTRLC.store(false, Ordering::SeqCst);
    m.add_class::<Net>()?;
    m.add_function(wrap_pyfunction!(run_command, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    Ok(())
}
