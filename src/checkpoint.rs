//! Checkpoints as safetensors files with PyTorch state-dict names and shapes.
//!
//! A checkpoint holds `embedding.weight`, `rnn.weight_ih_l{k}`, `rnn.weight_hh_l{k}`,
//! `rnn.bias_ih_l{k}`, `rnn.bias_hh_l{k}`, `decoder.weight`, `decoder.bias` in f32, so that
//!
//! ```text
//! model.load_state_dict(safetensors.torch.load_file(path), strict=True)
//! ```
//! works for `nn.Embedding` + `nn.RNN/LSTM/GRU` + `nn.Linear` (see `reference/load_in_pytorch.py`).
//! With a tied decoder `decoder.weight` is written as a copy of `embedding.weight` (PyTorch's
//! state dict lists both keys). The model config (JSON under `rnnscope.config`), the vocabulary
//! and any caller metadata go in the safetensors header. Writes are atomic: temp file, fsync,
//! rename.
//!
//! State dicts saved from other PyTorch models load too ([`TensorFile::adopt_pytorch_names`]):
//! the recurrent module may have any name (`rnn.`, `lstm.`, none for a bare `nn.LSTM`), the
//! embedding may be called `encoder` (PyTorch's `examples/word_language_model`), and a model
//! without an embedding reads one-hot tokens, one without a decoder reads its top layer's
//! output as logits. A `torch.save` pickle is refused with the one-line conversion.

use crate::cell::{Activation, CellKind, Recurrence};
use crate::error::{Error, Result};
use crate::model::{LanguageModel, ModelConfig};
use crate::tensor::Float;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Metadata key of the checksum of the tensor data ([`checksum`]), written into every file and
/// verified when one is read (files without it, such as PyTorch's, are read unverified).
pub const CHECKSUM_KEY: &str = "rnnscope.checksum";

/// `fnv1a64:HEX`, the 64-bit FNV-1a hash of every tensor in name order: its name, a 0 byte,
/// its shape (u64 little-endian each) and its data bytes as stored.
pub fn checksum<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a [usize], &'a [u8])>) -> String {
    let mut sorted: Vec<_> = tensors.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (name, shape, data) in sorted {
        eat(name.as_bytes());
        eat(&[0]);
        for &d in shape {
            eat(&(d as u64).to_le_bytes());
        }
        eat(data);
    }
    format!("fnv1a64:{h:016x}")
}

/// Metadata key holding the model config as JSON.
pub const CONFIG_KEY: &str = "rnnscope.config";

/// One tensor read from a file, converted to f64.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// A safetensors file read into memory: tensors by name (as f64) and the header metadata.
#[derive(Debug)]
pub struct TensorFile {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, Tensor>,
    pub metadata: HashMap<String, String>,
    /// After [`Self::adopt_pytorch_names`] renamed a PyTorch state dict: each tensor's name in
    /// the state dict, by the name it has now (tensors made up for a missing embedding or
    /// decoder have none). `None` for rnnscope's own files, whose names are kept.
    pub source_names: Option<BTreeMap<String, String>>,
}

impl TensorFile {
    /// Reads and validates a safetensors file; f32, f64 and integer tensors are accepted.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
            // torch.save writes a zip archive (PyTorch >= 1.6) or a bare pickle (protocol 2+).
            // (A safetensors file whose header length starts with 0x80 has `{` at byte 8.)
            let pickle = bytes.starts_with(b"\x80") && bytes.get(8) != Some(&b'{');
            if bytes.starts_with(b"PK\x03\x04") || pickle {
                return Error::checkpoint(
                    path,
                    format!(
                        "a PyTorch pickle (torch.save), not safetensors: convert it with {}",
                        convert_command(path)
                    ),
                );
            }
            Error::checkpoint(
                path,
                format!(
                    "not a valid safetensors file ({e}); it may be truncated or of another format"
                ),
            )
        })?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::checkpoint(path, format!("unreadable header ({e})")))?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        let views = st.tensors();
        if let Some(want) = metadata.get(CHECKSUM_KEY) {
            let got = checksum(views.iter().map(|(n, v)| (n.as_str(), v.shape(), v.data())));
            if &got != want {
                return Err(Error::checkpoint(
                    path,
                    format!("the tensor data does not match its checksum ({got}, written {want}): the file was damaged after it was written; use another checkpoint"),
                ));
            }
        }
        let mut tensors = BTreeMap::new();
        for (name, view) in views {
            let data = decode(&view).ok_or_else(|| {
                Error::checkpoint(
                    path,
                    format!(
                        "tensor `{name}` has dtype {:?}; save it as float32 or float64",
                        view.dtype()
                    ),
                )
            })?;
            tensors.insert(
                name,
                Tensor {
                    shape: view.shape().to_vec(),
                    data,
                },
            );
        }
        Self::from_tensors(path, tensors, metadata)
    }

    /// Tensors already in memory (e.g. a state dict handed over by Python), named in errors as
    /// `path`; every value must be finite.
    pub fn from_tensors(
        path: &Path,
        tensors: BTreeMap<String, Tensor>,
        metadata: HashMap<String, String>,
    ) -> Result<Self> {
        for (name, t) in &tensors {
            if let Some(i) = t.data.iter().position(|x| !x.is_finite()) {
                return Err(Error::checkpoint(
                    path,
                    format!(
                        "tensor `{name}` holds a non-finite value ({}) at index {i}: the weights are unusable; use an earlier checkpoint",
                        t.data[i]
                    ),
                ));
            }
            if t.shape.iter().product::<usize>() != t.data.len() {
                return Err(Error::checkpoint(
                    path,
                    format!(
                        "tensor `{name}` has shape {:?} but {} values",
                        t.shape,
                        t.data.len()
                    ),
                ));
            }
        }
        Ok(TensorFile {
            path: path.to_path_buf(),
            tensors,
            metadata,
            source_names: None,
        })
    }

    /// The named tensor, or an error naming it.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::checkpoint(&self.path, format!("tensor `{name}` is missing")))
    }

    /// The named tensor, checked against `shape`.
    pub fn get_shaped(&self, name: &str, shape: &[usize]) -> Result<&Tensor> {
        let t = self.get(name)?;
        if t.shape != shape {
            return Err(Error::checkpoint(
                &self.path,
                format!(
                    "tensor `{name}` has shape {:?}, expected {:?} for this model",
                    t.shape, shape
                ),
            ));
        }
        Ok(t)
    }

    /// The model config: from rnnscope's metadata when present, else inferred from the tensor
    /// shapes of a PyTorch state dict (`nonlinearity` metadata, if any, picks the RNN activation;
    /// tanh otherwise, as in `nn.RNN`).
    pub fn model_config(&self) -> Result<ModelConfig> {
        if let Some(json) = self.metadata.get(CONFIG_KEY) {
            let c: ModelConfig = serde_json::from_str(json).map_err(|e| {
                Error::checkpoint(
                    &self.path,
                    format!("metadata `{CONFIG_KEY}` is not a model config: {e}"),
                )
            })?;
            c.validate().map_err(|e| {
                Error::checkpoint(&self.path, format!("metadata `{CONFIG_KEY}`: {e}"))
            })?;
            return Ok(c);
        }
        let dim2 = |name: &str| -> Result<(usize, usize)> {
            match self.get(name)?.shape[..] {
                [a, b] => Ok((a, b)),
                ref s => Err(Error::checkpoint(
                    &self.path,
                    format!("tensor `{name}` has shape {s:?}, expected a matrix"),
                )),
            }
        };
        let (vocab, embedding) = dim2("embedding.weight")?;
        let (gh, cols) = dim2("rnn.weight_hh_l0")?;
        // nn.LSTM(proj_size = P): `weight_hr_l0` [P, H] and `weight_hh_l0` [4H, P].
        let (hidden, proj_size) = if self.tensors.contains_key("rnn.weight_hr_l0") {
            let (p, h) = dim2("rnn.weight_hr_l0")?;
            if p != cols {
                return Err(Error::checkpoint(
                    &self.path,
                    format!("tensor `rnn.weight_hr_l0` has shape [{p}, {h}] but `rnn.weight_hh_l0` has {cols} columns: they must match (proj_size)"),
                ));
            }
            (h, p)
        } else {
            (cols, 0)
        };
        let cell = match gh / hidden.max(1) {
            1 => CellKind::Rnn,
            3 => CellKind::Gru,
            4 => CellKind::Lstm,
            _ => {
                return Err(Error::checkpoint(
                    &self.path,
                    format!("tensor `rnn.weight_hh_l0` has shape [{gh}, {cols}]: rows must be 1, 3 or 4 times the hidden size {hidden}"),
                ))
            }
        };
        let layers = (0..)
            .take_while(|k| self.tensors.contains_key(&format!("rnn.weight_ih_l{k}")))
            .count();
        let activation = match self.metadata.get("nonlinearity").map(String::as_str) {
            Some("relu") => Activation::Relu,
            Some("sigmoid") => Activation::Sigmoid,
            Some("identity") => Activation::Identity,
            _ => Activation::Tanh,
        };
        let tie = match self.tensors.get("decoder.weight") {
            None => true,
            Some(d) => d.data == self.get("embedding.weight")?.data,
        };
        let c = ModelConfig {
            cell,
            activation,
            vocab,
            embedding,
            hidden,
            layers,
            dropout: 0.0,
            tie: tie && embedding == if proj_size > 0 { proj_size } else { hidden },
            input_size: 0,
            output: Default::default(),
            recurrence: Default::default(),
            residual: false,
            attention: Default::default(),
            attention_span: 0,
            proj_size,
        };
        c.validate()
            .map_err(|e| Error::checkpoint(&self.path, format!("inferred config: {e}")))?;
        Ok(c)
    }

    /// Renames a PyTorch state dict's tensors to rnnscope's (a file with rnnscope's config
    /// metadata is left as it is):
    ///
    /// ```text
    /// P.weight_ih_l{k}, P.weight_hh_l{k}, ...   -> rnn.*      the one module with `weight_ih_l0`
    /// encoder.weight, or the one other          -> embedding.weight
    ///   bias-less matrix with input_size columns
    /// the one other matrix with the top           -> decoder.weight (decoder.bias: its bias or 0)
    ///   layer's output size as columns
    /// no embedding                              -> the identity: one-hot tokens (needs vocab = input_size)
    /// no decoder                                -> the identity and bias 0: the output is the logits
    /// ```
    pub fn adopt_pytorch_names(&mut self) -> Result<()> {
        if self.metadata.contains_key(CONFIG_KEY) {
            return Ok(());
        }
        let err = |m: String| Error::checkpoint(&self.path, m);
        let prefixes: std::collections::BTreeSet<String> = self
            .tensors
            .keys()
            .filter_map(|n| n.strip_suffix("weight_ih_l0").map(str::to_string))
            .collect();
        let prefix = match prefixes.len() {
            1 => prefixes.into_iter().next().expect("one"),
            0 => return Err(err("no recurrent layer: expected a tensor named `rnn.weight_ih_l0` (or `weight_ih_l0` under any module name), as nn.RNN, nn.LSTM and nn.GRU name them".into())),
            _ => return Err(err(format!("several recurrent modules ({}): save one model with one nn.RNN/LSTM/GRU", prefixes.iter().map(|p| format!("`{p}weight_ih_l0`")).collect::<Vec<_>>().join(", ")))),
        };
        if let Some(n) = self.tensors.keys().find(|n| n.ends_with("_reverse")) {
            return Err(err(format!(
                "tensor `{n}`: bidirectional recurrent layers are not supported"
            )));
        }
        let recurrent = |rest: &str| {
            [
                "weight_ih_l",
                "weight_hh_l",
                "bias_ih_l",
                "bias_hh_l",
                "weight_hr_l",
            ]
            .iter()
            .any(|s| {
                rest.strip_prefix(s)
                    .is_some_and(|k| k.parse::<usize>().is_ok())
            })
        };
        let mut renamed = BTreeMap::new();
        let mut names = BTreeMap::new();
        for (name, t) in std::mem::take(&mut self.tensors) {
            let ours = match name.strip_prefix(&prefix) {
                Some(rest) if recurrent(rest) => format!("rnn.{rest}"),
                _ => name.clone(),
            };
            names.insert(ours.clone(), name);
            renamed.insert(ours, t);
        }
        self.tensors = renamed;
        let cols = |name: &str| match self.tensors.get(name).map(|t| &t.shape[..]) {
            Some([_, c]) => Some(*c),
            _ => None,
        };
        let input = cols("rnn.weight_ih_l0")
            .ok_or_else(|| err("tensor `weight_ih_l0` is not a matrix".into()))?;
        let layers = (0..)
            .take_while(|k| self.tensors.contains_key(&format!("rnn.weight_ih_l{k}")))
            .count();
        let top = layers - 1;
        // The top layer's output size: the columns of its W_hh (P with a projection, else H).
        let output = cols(&format!("rnn.weight_hh_l{top}"))
            .ok_or_else(|| err(format!("tensor `rnn.weight_hh_l{top}` is missing")))?;
        // Other modules: name -> its leaves (weight, bias).
        let mut modules: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in self.tensors.keys().filter(|n| !n.starts_with("rnn.")) {
            if let Some((m, leaf)) = n.rsplit_once('.') {
                modules
                    .entry(m.to_string())
                    .or_default()
                    .push(leaf.to_string());
            }
        }
        let matrix_with = |m: &str, c: usize, bias: bool| {
            cols(&format!("{m}.weight")) == Some(c)
                && modules[m].iter().all(|l| l == "weight" || l == "bias")
                && modules[m].iter().any(|l| l == "bias") == bias
        };
        let unique = |mut found: Vec<String>| (found.len() == 1).then(|| found.pop().expect("one"));
        let embedding = ["embedding", "encoder"]
            .into_iter()
            .find(|m| modules.contains_key(*m))
            .map(str::to_string)
            .or_else(|| {
                unique(
                    modules
                        .keys()
                        .filter(|m| matrix_with(m, input, false))
                        .cloned()
                        .collect(),
                )
            });
        let decoder = Some("decoder".to_string())
            .filter(|m| modules.contains_key(m))
            .or_else(|| {
                let not_emb = |m: &&String| Some(m.as_str()) != embedding.as_deref();
                unique(
                    modules
                        .keys()
                        .filter(not_emb)
                        .filter(|m| matrix_with(m, output, true) || matrix_with(m, output, false))
                        .cloned()
                        .collect(),
                )
            });
        let mut rename = |from: String, to: &str| {
            if from != to {
                if let Some(t) = self.tensors.remove(&from) {
                    self.tensors.insert(to.to_string(), t);
                }
                if let Some(n) = names.remove(&from) {
                    names.insert(to.to_string(), n);
                }
            }
        };
        if let Some(m) = &embedding {
            rename(format!("{m}.weight"), "embedding.weight");
        }
        if let Some(m) = &decoder {
            rename(format!("{m}.weight"), "decoder.weight");
            rename(format!("{m}.bias"), "decoder.bias");
        }
        let rows = |name: &str| self.tensors.get(name).map(|t| t.shape[0]);
        let vocab = rows("embedding.weight")
            .or(rows("decoder.weight"))
            .unwrap_or(input);
        let identity = |n: usize| Tensor {
            shape: vec![n, n],
            data: (0..n * n)
                .map(|i| f64::from(u8::from(i % (n + 1) == 0)))
                .collect(),
        };
        if embedding.is_none() {
            if input != vocab {
                return Err(err(format!("no embedding: the model would read one-hot tokens, which needs input_size = vocabulary size, but `weight_ih_l0` takes {input} inputs and the decoder has {vocab} outputs")));
            }
            self.tensors
                .insert("embedding.weight".into(), identity(vocab));
        }
        if decoder.is_none() {
            if output != vocab {
                return Err(err(format!("no decoder: the top layer's output would be the logits, which needs its size ({output}) to equal the vocabulary size ({vocab}, the input size of a one-hot model); save the whole model's state_dict (embedding, recurrent layers, decoder)")));
            }
            self.tensors
                .insert("decoder.weight".into(), identity(vocab));
        }
        if !self.tensors.contains_key("decoder.bias") {
            let zeros = Tensor {
                shape: vec![vocab],
                data: vec![0.0; vocab],
            };
            self.tensors.insert("decoder.bias".into(), zeros);
        }
        self.source_names = Some(names);
        Ok(())
    }

    /// Copies this file's parameters into `model`, checking every name and shape. With `strict`,
    /// a tensor the model does not have is an error too (as `load_state_dict(strict=True)`).
    pub fn load_params<T: Float>(&self, model: &mut LanguageModel<T>, strict: bool) -> Result<()> {
        for e in model.layout.entries().to_vec() {
            let t = self.get_shaped(&e.name, &e.shape)?;
            for (dst, &src) in model.params_mut()[e.range()].iter_mut().zip(&t.data) {
                *dst = T::from_f64(src);
            }
        }
        if model.config.tie {
            if let Some(d) = self.tensors.get("decoder.weight") {
                if d.data != self.get("embedding.weight")?.data {
                    return Err(Error::checkpoint(
                        &self.path,
                        "tensor `decoder.weight` differs from `embedding.weight` but the model ties them",
                    ));
                }
            }
        }
        if strict {
            // A tied decoder and the derived W_hh of orthogonal layers are written for
            // PyTorch; they are copies of what the layout holds.
            let orthogonal = model.config.recurrence == Recurrence::Orthogonal;
            let tied_extra = |n: &str| {
                (model.config.tie && n == "decoder.weight")
                    || (orthogonal && n.starts_with("rnn.weight_hh_l"))
            };
            if let Some(extra) = self
                .tensors
                .keys()
                .find(|n| model.layout.get(n).is_none() && !tied_extra(n))
            {
                return Err(Error::checkpoint(
                    &self.path,
                    format!(
                        "unexpected tensor `{extra}`: the file is not a checkpoint of this model"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The one-line Python conversion of a `torch.save` state dict to safetensors (the clone
/// unshares a tied decoder's weight, which `save_file` refuses).
pub fn convert_command(path: &Path) -> String {
    let p = path.display().to_string();
    let q = path.with_extension("safetensors").display().to_string();
    format!(
        "python -c \"import torch, safetensors.torch as st; st.save_file({{k: v.contiguous().clone() for k, v in torch.load('{p}', map_location='cpu').items()}}, '{q}')\""
    )
}

fn decode(view: &TensorView) -> Option<Vec<f64>> {
    let b = view.data();
    Some(match view.dtype() {
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        Dtype::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
        Dtype::I64 => b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64)
            .collect(),
        Dtype::I32 => b
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        _ => return None,
    })
}

/// A loaded checkpoint: the model and the header metadata (vocabulary, training info).
pub struct Checkpoint<T> {
    pub model: LanguageModel<T>,
    pub metadata: HashMap<String, String>,
    /// The PyTorch state dict's names of the parameters (see [`TensorFile::source_names`]).
    pub source_names: Option<BTreeMap<String, String>>,
}

/// Loads a model checkpoint (ours, or a PyTorch state dict saved with safetensors, see
/// [`TensorFile::adopt_pytorch_names`]), strictly.
pub fn load<T: Float>(path: &Path) -> Result<Checkpoint<T>> {
    from_file(TensorFile::open(path)?)
}

/// The model in tensors read by [`TensorFile::open`] or given by [`TensorFile::from_tensors`]
/// (ours, or a PyTorch state dict), strictly.
pub fn from_file<T: Float>(mut file: TensorFile) -> Result<Checkpoint<T>> {
    let path = file.path.clone();
    let path = path.as_path();
    file.adopt_pytorch_names()?;
    let config = file.model_config()?;
    config.validate()?;
    let claimed = crate::memory::parameters(&config);
    let held: usize = file.tensors.values().map(|t| t.data.len()).sum();
    // A gross mismatch is refused before allocating; a small one is named by `load_params`.
    if claimed > 2.0 * held as f64 + 1e6 {
        return Err(Error::checkpoint(
            path,
            format!("its metadata describes a model of {claimed} parameters, but the file holds only {held} values: the header does not belong to the tensors"),
        ));
    }
    crate::memory::check(
        &format!("the model in {}", path.display()),
        claimed * std::mem::size_of::<T>() as f64,
        "use a machine with more memory",
    )?;
    let mut model = LanguageModel::zeros(config)?;
    file.load_params(&mut model, true)?;
    Ok(Checkpoint {
        model,
        metadata: file.metadata,
        source_names: file.source_names,
    })
}

/// Named f32 tensors to write: `(name, shape, values)`.
pub type NamedTensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// The model's parameters as PyTorch-named f32 tensors (tied decoder written as a copy; for
/// orthogonal recurrence also each derived `rnn.weight_hh_l{k} = expm(A)`, so that the file
/// loads into `torch.nn.RNN` once the `rnn.skew_hh_l{k}` generators are dropped).
pub fn model_tensors<T: Float>(model: &LanguageModel<T>) -> NamedTensors {
    let mut out: NamedTensors = model
        .layout
        .entries()
        .iter()
        .map(|e| {
            let v = model.params()[e.range()]
                .iter()
                .map(|x| x.to_f64() as f32)
                .collect();
            (e.name.clone(), e.shape.clone(), v)
        })
        .collect();
    if model.config.tie {
        let emb = out
            .iter()
            .find(|t| t.0 == "embedding.weight")
            .expect("embedding")
            .clone();
        out.push(("decoder.weight".into(), emb.1, emb.2));
    }
    if model.config.recurrence == Recurrence::Orthogonal {
        let h = model.config.hidden;
        for k in 0..model.config.layers {
            let w = model.layer_params(k).w_hh.iter().map(|x| x.to_f64() as f32);
            out.push((format!("rnn.weight_hh_l{k}"), vec![h, h], w.collect()));
        }
    }
    out
}

/// Saves `model` (plus `metadata`, e.g. the vocabulary) atomically to `path`.
pub fn save<T: Float>(
    model: &LanguageModel<T>,
    path: &Path,
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let mut meta = metadata.clone();
    meta.insert(
        CONFIG_KEY.into(),
        serde_json::to_string(&model.config).expect("config serialises"),
    );
    meta.insert("format".into(), "pt".into());
    if model.config.cell == CellKind::Rnn {
        meta.insert("nonlinearity".into(), model.config.activation.name().into());
    }
    write_tensors(path, &model_tensors(model), &meta)
}

/// Writes f32 tensors with metadata to a safetensors file, atomically.
pub fn write_tensors(
    path: &Path,
    tensors: &NamedTensors,
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::checkpoint(path, format!("tensor `{name}`: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut metadata = metadata.clone();
    metadata.insert(
        CHECKSUM_KEY.into(),
        checksum(
            tensors
                .iter()
                .zip(&bytes)
                .map(|((name, shape, _), b)| (name.as_str(), shape.as_slice(), b.as_slice())),
        ),
    );
    let data = safetensors::serialize(views, &Some(metadata))
        .map_err(|e| Error::checkpoint(path, format!("cannot serialise: {e}")))?;
    write_atomic(path, &data)
}

/// Writes `data` to `path` through a temporary file in the same directory, then renames it,
/// so a crash leaves either the old file or the new one, never a partial file.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| Error::Config(format!("{}: not a file path", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}
