//! Helpers shared by the integration tests.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rnnscope::{Activation, CellKind, InitConfig, InitScheme, LanguageModel, ModelConfig, State};

pub fn config(cell: CellKind, activation: Activation, layers: usize, tie: bool) -> ModelConfig {
    ModelConfig {
        cell,
        activation,
        vocab: 5,
        embedding: 4,
        hidden: if tie { 4 } else { 3 },
        layers,
        dropout: 0.0,
        tie,
        input_size: 0,
        output: Default::default(),
        recurrence: Default::default(),
        residual: false,
        attention: Default::default(),
        attention_span: 0,
        proj_size: 0,
    }
}

pub fn model(config: ModelConfig, seed: u64) -> LanguageModel<f64> {
    let mut m = LanguageModel::zeros(config).unwrap();
    let init = InitConfig {
        scheme: InitScheme::Default,
        seed,
        ..Default::default()
    };
    rnnscope::init::initialize(&mut m, &init).unwrap();
    m
}

pub fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(0..vocab as u32)).collect()
}

pub fn random_state(config: &ModelConfig, batch: usize, seed: u64) -> State<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut s = State::zeros(config, batch);
    for v in s.h.iter_mut().chain(s.c.iter_mut()) {
        *v = rng.gen_range(-0.8..0.8);
    }
    s
}

/// `||a - b|| / ||b||` (norm-wise relative error), with `||b|| = 0` treated as absolute.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    if norm == 0.0 {
        diff
    } else {
        diff / norm
    }
}

/// A temporary folder `rnnscope-PID-N-NAME` (N counts the folders of this process, so two
/// tests never share one), emptied when made and removed when dropped.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "rnnscope-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn join(&self, p: &str) -> std::path::PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
