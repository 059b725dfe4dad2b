//! The training configuration: one flat TOML table whose fields mirror `rnnscope train`'s flags.
//!
//! Resolution order: built-in defaults, then the `--config` file, then flags. Unknown fields and
//! values of the wrong type are errors naming the file, the line and the field. The resolved
//! configuration is written to `RUN_DIR/config.toml`, which `--resume` reads back.

use super::optim::{OptimizerConfig, OptimizerKind};
use super::schedule::Schedule;
use super::step::Clip;
use crate::cell::{Activation, CellKind, Recurrence};
use crate::data::{CorpusSpec, TokenizerKind};
use crate::error::{Error, Result};
use crate::init::{InitConfig, InitScheme};
use crate::layers::attention::Attention;
use crate::model::ModelConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything `rnnscope train` needs; see each field's flag in `rnnscope train --help`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    // --- data ---
    /// The corpus (the training text when `valid_file` is set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corpus: Option<PathBuf>,
    /// A separate validation file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_file: Option<PathBuf>,
    /// A separate test file (needs `valid_file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_file: Option<PathBuf>,
    /// Fraction of the corpus held out for validation (the end of the file, before the test part).
    pub valid_fraction: f64,
    /// Fraction of the corpus held out for testing (the very end of the file).
    pub test_fraction: f64,
    pub tokenizer: TokenizerKind,
    /// Word vocabulary cap including `<unk>` and `<eos>` (0 = no cap).
    pub vocab_size: usize,
    // --- model ---
    pub cell: CellKind,
    pub activation: Activation,
    pub layers: usize,
    pub hidden: usize,
    pub embedding: usize,
    pub dropout: f64,
    pub tie: bool,
    /// `dense` or `orthogonal` (`W_hh = expm(A)`, vanilla RNN only).
    pub recurrence: Recurrence,
    /// Residual connections between stacked layers.
    pub residual: bool,
    /// Attention of the top layer over its earlier states: `none`, `dot` or `additive`.
    pub attention: Attention,
    /// Attention reads at most this many earlier steps; 0 = the whole window.
    pub attention_span: usize,
    /// LSTM projection size (`h_t = W_hr (o * tanh(c_t))`, as `nn.LSTM(proj_size=...)`); 0 = none.
    #[serde(skip_serializing_if = "crate::model::is_zero")]
    pub proj_size: usize,
    /// `default`, `uniform:A`, `xavier`, `orthogonal`, `identity` or `chrono:T_MAX`.
    pub init: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forget_bias: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spectral_radius: Option<f64>,
    // --- optimisation ---
    pub optimizer: OptimizerKind,
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// RMSProp smoothing constant.
    pub alpha: f64,
    pub eps: f64,
    /// L2 penalty (decoupled for AdamW).
    pub weight_decay: f64,
    /// `constant`, `step:N[:GAMMA]`, `plateau[:K[:PATIENCE]]` or `cosine[:MIN_FRACTION]`.
    pub schedule: String,
    /// Gradient norm clipping threshold (0 = off).
    pub clip: f64,
    /// Element-wise gradient clipping threshold (0 = off).
    pub clip_value: f64,
    pub batch: usize,
    pub bptt: usize,
    /// Number of updates (one per window of `batch x bptt` tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// Passes over the training text (alternative to `steps`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<f64>,
    /// Evaluate on the validation text and checkpoint every this many updates (0 = only at the end).
    pub eval_every: u64,
    #[serde(with = "seed64")]
    pub seed: u64,
    /// Threads for GEMM (0 = all cores).
    pub threads: usize,
    /// Stop (cleanly, with a checkpoint) after this many minutes of this invocation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_time: Option<f64>,
    /// Stop with an error after this many non-finite steps in a row.
    pub max_bad_steps: u32,
    /// Record the spectrum of `W_hh` and the gradient profile every this many updates
    /// (0 = off) into `gradflow_track.csv` and `gradflow/`.
    #[serde(default)]
    pub track_gradflow: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            corpus: None,
            valid_file: None,
            test_file: None,
            valid_fraction: 0.1,
            test_fraction: 0.0,
            tokenizer: TokenizerKind::Char,
            vocab_size: 10_000,
            cell: CellKind::Lstm,
            activation: Activation::Tanh,
            layers: 1,
            hidden: 128,
            embedding: 64,
            dropout: 0.0,
            tie: false,
            recurrence: Recurrence::Dense,
            residual: false,
            attention: Attention::None,
            attention_span: 0,
            proj_size: 0,
            init: "default".into(),
            forget_bias: None,
            spectral_radius: None,
            optimizer: OptimizerKind::Adam,
            lr: 2e-3,
            momentum: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            schedule: "constant".into(),
            clip: 5.0,
            clip_value: 0.0,
            batch: 32,
            bptt: 64,
            steps: None,
            epochs: None,
            eval_every: 200,
            seed: 0,
            threads: 0,
            max_time: None,
            max_bad_steps: 5,
            track_gradflow: 0,
        }
    }
}

/// Seeds are 64-bit, TOML integers signed 64-bit: a seed of 2^63 or more is written as a string
/// (`seed = "18446744073709551615"`), and either form is read back.
pub mod seed64 {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(seed: &u64, s: S) -> Result<S::Ok, S::Error> {
        match i64::try_from(*seed) {
            Ok(v) => s.serialize_i64(v),
            Err(_) => s.serialize_str(&seed.to_string()),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seed {
        Int(u64),
        Text(String),
    }

    fn value<E: serde::de::Error>(s: Seed) -> Result<u64, E> {
        let bad = || E::custom("a seed is a whole number from 0 to 18446744073709551615");
        match s {
            Seed::Int(v) => Ok(v),
            Seed::Text(t) => t.trim().parse().map_err(|_| bad()),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = Seed::deserialize(d).map_err(|_| {
            D::Error::custom("a seed is a whole number from 0 to 18446744073709551615")
        })?;
        value(s)
    }

    /// A list of seeds, each an integer or a string.
    pub fn deserialize_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        let v = Vec::<Seed>::deserialize(d).map_err(|_| {
            D::Error::custom(
                "seeds are whole numbers from 0 to 18446744073709551615 (as strings from 2^63 on)",
            )
        })?;
        v.into_iter().map(value).collect()
    }
}

/// `name` = `v` must be a positive, finite number.
pub fn check_positive(name: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "`{name}` = {v} must be a positive number"
        )))
    }
}

/// `name` = `v` must be at least 1.
pub fn check_at_least_one(name: &str, v: u64) -> Result<()> {
    if v >= 1 {
        Ok(())
    } else {
        Err(Error::Config(format!("`{name}` = {v} must be at least 1")))
    }
}

/// Levenshtein distance (for "did you mean" hints).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Makes one line out of a TOML error: `line N: message`, with a hint for unknown fields.
fn toml_error_line(text: &str, e: &toml::de::Error) -> String {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    let msg = e.message().trim();
    let mut out = match line {
        Some(l) => format!("line {l}: "),
        None => String::new(),
    };
    if msg.is_empty() {
        out.push_str("invalid TOML syntax: write `field = value`, one per line, strings in quotes");
        return out;
    }
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or("");
        let known: Vec<&str> = msg
            .split("expected one of")
            .nth(1)
            .unwrap_or("")
            .split('`')
            .skip(1)
            .step_by(2)
            .collect();
        out.push_str(&format!("unknown field `{field}`"));
        if let Some(best) = known
            .iter()
            .min_by_key(|k| edit_distance(field, k))
            .filter(|k| edit_distance(field, k) <= 3)
        {
            out.push_str(&format!(" (did you mean `{best}`?)"));
        }
        out.push_str(": see `rnnscope train --help` for the fields");
        return out;
    }
    out.push_str(&msg.replace('\n', ": "));
    if let (Some(l), Some(_)) = (line, e.span()) {
        if let Some(src) = text.lines().nth(l - 1) {
            if let Some(key) = src
                .split('=')
                .next()
                .map(str::trim)
                .filter(|k| !k.is_empty())
            {
                out.push_str(&format!(" for field `{key}`"));
            }
        }
    }
    out
}

impl TrainConfig {
    /// Parses a TOML configuration; errors are one line naming the file and the line.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self> {
        toml::from_str(text).map_err(|e| {
            Error::Config(format!("{}: {}", path.display(), toml_error_line(text, &e)))
        })
    }

    /// Reads a TOML configuration file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text, path)
    }

    /// The configuration as TOML (what `RUN_DIR/config.toml` holds).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the training config serialises to TOML")
    }

    /// Checks every value that does not need the corpus; the message names the field.
    pub fn validate(&self) -> Result<()> {
        let cfg = |m: String| Err(Error::Config(m));
        let in_unit = |name: &str, v: f64| -> Result<()> {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::Config(format!("`{name}` = {v} must be in [0, 1)")))
            }
        };
        if self.corpus.is_none() {
            return cfg(
                "no corpus: give --corpus FILE (or `corpus = \"FILE\"` in the config)".into(),
            );
        }
        check_positive("lr", self.lr)?;
        in_unit("momentum", self.momentum)?;
        in_unit("beta1", self.beta1)?;
        in_unit("beta2", self.beta2)?;
        in_unit("alpha", self.alpha)?;
        in_unit("dropout", self.dropout)?;
        check_positive("eps", self.eps)?;
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return cfg(format!(
                "`weight_decay` = {} must be >= 0",
                self.weight_decay
            ));
        }
        self.clip()?;
        self.schedule()?;
        self.init_config()?.validate()?;
        check_at_least_one("batch", self.batch as u64)?;
        check_at_least_one("bptt", self.bptt as u64)?;
        match (self.steps, self.epochs) {
            (Some(_), Some(_)) => {
                return cfg("give `steps` or `epochs`, not both".into());
            }
            (Some(s), _) => check_at_least_one("steps", s)?,
            (_, Some(e)) => check_positive("epochs", e)?,
            _ => {}
        }
        if let Some(m) = self.max_time {
            if !(m.is_finite() && m > 0.0) {
                return cfg(format!(
                    "`max_time` = {m} must be a positive number of minutes"
                ));
            }
        }
        check_at_least_one("max_bad_steps", self.max_bad_steps.into())?;
        if self.tokenizer == TokenizerKind::Word && self.vocab_size != 0 && self.vocab_size < 3 {
            return cfg(format!(
                "`vocab_size` = {} is too small: a word vocabulary needs <unk>, <eos> and at least one word (0 = no cap)",
                self.vocab_size
            ));
        }
        // Sizes and tie are checked by the model config (with a placeholder vocabulary).
        self.model_config(1).validate()
    }

    /// The model architecture for a vocabulary of `vocab` tokens.
    pub fn model_config(&self, vocab: usize) -> ModelConfig {
        ModelConfig {
            cell: self.cell,
            activation: self.activation,
            vocab,
            embedding: self.embedding,
            hidden: self.hidden,
            layers: self.layers,
            dropout: self.dropout,
            tie: self.tie,
            input_size: 0,
            output: Default::default(),
            recurrence: self.recurrence,
            residual: self.residual,
            attention: self.attention,
            attention_span: self.attention_span,
            proj_size: self.proj_size,
        }
    }

    pub fn init_config(&self) -> Result<InitConfig> {
        Ok(InitConfig {
            scheme: InitScheme::parse(&self.init)?,
            spectral_radius: self.spectral_radius,
            forget_bias: self.forget_bias,
            seed: self.seed,
        })
    }

    pub fn optimizer_config(&self) -> OptimizerConfig {
        OptimizerConfig {
            kind: self.optimizer,
            momentum: self.momentum,
            beta1: self.beta1,
            beta2: self.beta2,
            alpha: self.alpha,
            eps: self.eps,
            weight_decay: self.weight_decay,
        }
    }

    pub fn schedule(&self) -> Result<Schedule> {
        Schedule::parse(&self.schedule)
    }

    pub fn clip(&self) -> Result<Clip> {
        for (name, v) in [("clip", self.clip), ("clip_value", self.clip_value)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::Config(format!(
                    "`{name}` = {v} must be >= 0 (0 = off)"
                )));
            }
        }
        match (self.clip > 0.0, self.clip_value > 0.0) {
            (true, true) => Err(Error::Config(
                "choose one clipping: `clip` (norm) or `clip_value` (element-wise); set the other to 0"
                    .into(),
            )),
            (true, false) => Ok(Clip::Norm(self.clip)),
            (false, true) => Ok(Clip::Value(self.clip_value)),
            (false, false) => Ok(Clip::None),
        }
    }

    /// Where the text comes from (needs `corpus`).
    pub fn corpus_spec(&self) -> Result<CorpusSpec> {
        let train = self
            .corpus
            .clone()
            .ok_or_else(|| Error::Config("no corpus: give --corpus FILE".into()))?;
        Ok(CorpusSpec {
            tokenizer: self.tokenizer,
            vocab_size: self.vocab_size,
            train,
            valid: self.valid_file.clone(),
            test: self.test_file.clone(),
            valid_fraction: self.valid_fraction,
            test_fraction: self.test_fraction,
        })
    }

    /// Total updates for a training stream with `windows` windows per epoch.
    pub fn total_steps(&self, windows: usize) -> u64 {
        match (self.steps, self.epochs) {
            (Some(s), _) => s,
            (None, Some(e)) => ((e * windows as f64).ceil() as u64).max(1),
            (None, None) => windows as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let mut c = TrainConfig {
            corpus: Some("a b.txt".into()),
            steps: Some(10),
            ..Default::default()
        };
        c.forget_bias = Some(1.0);
        let back = TrainConfig::from_toml(&c.to_toml(), Path::new("x.toml")).unwrap();
        assert_eq!(back, c);
        back.validate().unwrap();
    }

    #[test]
    fn errors_name_the_file_line_and_field() {
        let p = Path::new("run.toml");
        let e = TrainConfig::from_toml("lr = 0.1\nhiden = 3\n", p)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "invalid configuration: run.toml: line 2: unknown field `hiden` (did you mean `hidden`?): see `rnnscope train --help` for the fields"
        );
        let e = TrainConfig::from_toml("hidden = \"big\"\n", p)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "invalid configuration: run.toml: line 1: invalid type: string \"big\", expected usize for field `hidden`"
        );
        let e = TrainConfig::from_toml("cell = \"lstn\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown variant `lstn`") && !e.contains('\n'),
            "{e}"
        );
        let e = TrainConfig::from_toml("lr = \n", p)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid configuration: run.toml: line 1: invalid"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn seeds_of_64_bits_round_trip_through_toml() {
        for seed in [0, 1 << 63, u64::MAX] {
            let c = TrainConfig {
                corpus: Some("c.txt".into()),
                seed,
                ..Default::default()
            };
            let back = TrainConfig::from_toml(&c.to_toml(), Path::new("x.toml")).unwrap();
            assert_eq!(back.seed, seed);
        }
        let e = TrainConfig::from_toml("seed = -1\n", Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a seed is a whole number"), "{e}");
    }

    #[test]
    fn validation_names_the_field() {
        let ok = TrainConfig {
            corpus: Some("c.txt".into()),
            ..Default::default()
        };
        let check = |f: &dyn Fn(&mut TrainConfig), want: &str| {
            let mut c = ok.clone();
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e} lacks {want}");
        };
        check(&|c| c.lr = -1.0, "`lr`");
        check(&|c| c.dropout = 1.0, "`dropout`");
        check(&|c| c.clip_value = 1.0, "choose one clipping");
        check(&|c| c.schedule = "plateau:x".into(), "schedule `plateau:x`");
        check(&|c| c.init = "zeros".into(), "unknown init");
        check(
            &|c| {
                c.steps = Some(3);
                c.epochs = Some(1.0)
            },
            "not both",
        );
        check(&|c| c.tie = true, "`tie`");
        check(&|c| c.corpus = None, "no corpus");
        check(&|c| c.forget_bias = Some(f64::NAN), "`forget_bias` = NaN");
        check(
            &|c| c.spectral_radius = Some(-1.0),
            "`spectral_radius` = -1",
        );
        check(&|c| c.init = "uniform:-1".into(), "positive half-width");
        check(&|c| c.steps = Some(0), "`steps` = 0 must be at least 1");
        check(&|c| c.lr = f64::INFINITY, "`lr` = inf");
        assert_eq!(ok.total_steps(7), 7);
        let e = TrainConfig {
            epochs: Some(2.5),
            ..ok
        };
        assert_eq!(e.total_steps(10), 25);
    }
}
