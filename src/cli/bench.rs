//! `rnnscope bench`: training throughput (forward + backward + clip + Adam) on the standard
//! configurations of DESIGN.md, against the machine's measured f32 GEMM peak.
//!
//! Each configuration runs in a child process of its own so that its peak RSS is its own.

use crate::cell::{Activation, CellKind};
use crate::error::{Error, Result};
use crate::init::{initialize, InitConfig};
use crate::model::{LanguageModel, ModelConfig};
use crate::tensor::{kernel_path, matmul, Trans};
use crate::train::{Clip, OptimizerConfig, OptimizerKind, Trainer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print one JSON list instead of a table.
    #[arg(long)]
    json: bool,
    /// Threads for GEMM (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Run only this configuration (a standard one, or one of the sweep's).
    #[arg(long)]
    config: Option<String>,
    /// Run the size sweep instead of the standard configurations: a 1-layer LSTM at hidden
    /// 64, 128, 256, 512 and 1024 (batch 32, bptt 64).
    #[arg(long, conflicts_with = "config")]
    sweep: bool,
    /// Seconds of timed training per configuration.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Run in this process (no child per configuration).
    #[arg(long, hide = true)]
    in_process: bool,
}

/// One standard benchmark configuration (character LM, V = 65, E = 64, Adam, clip 5, f32).
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub name: &'static str,
    pub cell: CellKind,
    pub layers: usize,
    pub hidden: usize,
    pub batch: usize,
    pub bptt: usize,
}

/// The configurations of DESIGN.md.
pub fn standard_configs() -> Vec<BenchConfig> {
    let c = |name, cell, layers, hidden, batch, bptt| BenchConfig {
        name,
        cell,
        layers,
        hidden,
        batch,
        bptt,
    };
    vec![
        c("rnn_h256_b32_t64", CellKind::Rnn, 1, 256, 32, 64),
        c("lstm_h256x2_b32_t64", CellKind::Lstm, 2, 256, 32, 64),
        c("lstm_h512_b64_t100", CellKind::Lstm, 1, 512, 64, 100),
        c("gru_h256_b32_t64", CellKind::Gru, 1, 256, 32, 64),
        c("rnn_h1024_b128_t64", CellKind::Rnn, 1, 1024, 128, 64),
    ]
}

/// The size sweep (`--sweep`): how the cost per token grows with `H`, 1-layer LSTM, batch 32,
/// bptt 64.
pub fn sweep_configs() -> Vec<BenchConfig> {
    [64, 128, 256, 512, 1024]
        .iter()
        .zip([
            "lstm_h64_b32_t64",
            "lstm_h128_b32_t64",
            "lstm_h256_b32_t64",
            "lstm_h512_b32_t64",
            "lstm_h1024_b32_t64",
        ])
        .map(|(&hidden, name)| BenchConfig {
            name,
            cell: CellKind::Lstm,
            layers: 1,
            hidden,
            batch: 32,
            bptt: 64,
        })
        .collect()
}

impl BenchConfig {
    pub fn model_config(&self) -> ModelConfig {
        ModelConfig {
            cell: self.cell,
            activation: Activation::Tanh,
            vocab: 65,
            embedding: 64,
            hidden: self.hidden,
            layers: self.layers,
            dropout: 0.0,
            tie: false,
            input_size: 0,
            output: Default::default(),
            recurrence: Default::default(),
            residual: false,
            attention: Default::default(),
            attention_span: 0,
            proj_size: 0,
        }
    }

    /// The analytical minimum of a training step's memory, in bytes (f32): weights, their
    /// gradients and Adam's two moments (`4 P`), plus the activations BPTT must keep per layer,
    /// `h_0..h_T` and, by cell, `c_0..c_T` and the gates (LSTM), or the gates and
    /// `W_hn h + b_hn` (GRU); the RNN recovers `s'(a_t)` from `h_t` alone.
    pub fn min_train_bytes(&self) -> u64 {
        let c = self.model_config();
        let params = c.layout().total();
        let (t, b, h) = (self.bptt, self.batch, self.hidden);
        let states = (t + 1) * b * h;
        let per_layer = match self.cell {
            CellKind::Rnn => states,
            CellKind::Lstm => 2 * states + t * b * 4 * h,
            CellKind::Gru => states + t * b * 3 * h + t * b * h,
        };
        (4 * (4 * params + self.layers * per_layer)) as u64
    }
}

/// One result row (the `--json` schema).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct BenchResult {
    pub name: String,
    /// Training: forward, backward, clipping and the Adam update.
    pub tokens_per_s: f64,
    /// Evaluation: forward and loss only, no dropout.
    pub eval_tokens_per_s: f64,
    pub gflops: f64,
    pub peak_fraction: f64,
    pub peak_rss_bytes: u64,
    /// Peak RSS minus the process's RSS before the model was built (code, libraries, threads):
    /// the memory the training step itself took.
    pub train_bytes: u64,
    /// [`BenchConfig::min_train_bytes`].
    pub min_train_bytes: u64,
    pub threads: usize,
    pub gemm_peak_gflops: f64,
    /// The kernel path of the per-step recurrent products (`avx512`, `avx2` or `generic`, see
    /// `tensor::KernelPath`).
    pub kernel: String,
    /// The CPU's model name ([`cpu_model`]).
    pub cpu: String,
}

/// The CPU's model name from `/proc/cpuinfo`, or `unknown`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Measured f32 GEMM peak in GFLOP/s: the best of `[n, n] x [n, n]` products repeated for a
/// second (at least 6), so that a moment of load from elsewhere does not set it.
pub fn gemm_peak_gflops() -> f64 {
    let n = 1024;
    let mut rng = StdRng::seed_from_u64(0);
    let a: Vec<f32> = (0..n * n).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let b: Vec<f32> = (0..n * n).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let mut c = vec![0.0f32; n * n];
    let mut best = Duration::MAX;
    let start = Instant::now();
    for rep in 0.. {
        if rep >= 6 && start.elapsed() > Duration::from_secs(1) {
            break;
        }
        let t = Instant::now();
        matmul(&mut c, &a, Trans::No, &b, Trans::No, n, n, n, false);
        best = best.min(t.elapsed());
    }
    2.0 * (n * n * n) as f64 / best.as_secs_f64() / 1e9
}

/// Peak resident set size of this process (`VmHWM`), in bytes; 0 where unavailable.
pub fn peak_rss_bytes() -> u64 {
    proc_status_bytes("VmHWM:")
}

/// RSS of this process when the last [`measure`] began, before it built the model.
static BASELINE_RSS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Resident set size of this process now (`VmRSS`), in bytes; 0 where unavailable.
pub fn rss_bytes() -> u64 {
    proc_status_bytes("VmRSS:")
}

fn proc_status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Trains `cfg` for about `seconds` after two warm-up steps, then evaluates (forward and loss,
/// no gradient) for a third of that; returns tokens per second of both.
pub fn measure(cfg: &BenchConfig, seconds: f64) -> Result<(f64, f64)> {
    // Start the peak RSS afresh here (Linux: writing 5 to clear_refs resets VmHWM), so that the
    // GEMM peak measured before, with its three 4 MB matrices, does not count as training
    // memory. Where that is unavailable the peak can only be over-reported.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    BASELINE_RSS.store(rss_bytes(), std::sync::atomic::Ordering::Relaxed);
    let mut model = LanguageModel::<f32>::zeros(cfg.model_config())?;
    initialize(&mut model, &InitConfig::default())?;
    let mut trainer = Trainer::new(model, OptimizerConfig::new(OptimizerKind::Adam), cfg.batch);
    let n = cfg.batch * cfg.bptt;
    let mut rng = StdRng::seed_from_u64(1);
    let stream: Vec<u32> = (0..n + 1).map(|_| rng.gen_range(0..65)).collect();
    let (inputs, targets) = (&stream[..n], &stream[1..]);
    for _ in 0..2 {
        trainer.step(inputs, targets, 1e-3, Clip::Norm(5.0), None)?;
    }
    let start = Instant::now();
    let mut steps = 0usize;
    while steps < 3 || start.elapsed().as_secs_f64() < seconds {
        trainer.step(inputs, targets, 1e-3, Clip::Norm(5.0), None)?;
        steps += 1;
    }
    let train = (steps * n) as f64 / start.elapsed().as_secs_f64();
    // Evaluation reuses the training workspace (same shapes), so it adds no memory.
    let (model, ws) = (&trainer.model, &mut trainer.ws);
    let state = crate::model::State::zeros(&model.config, cfg.batch);
    let start = Instant::now();
    let mut passes = 0usize;
    while passes < 3 || start.elapsed().as_secs_f64() < seconds / 3.0 {
        model.forward(ws, inputs, &state, cfg.bptt, cfg.batch, None);
        model.loss(ws, targets);
        passes += 1;
    }
    Ok((train, (passes * n) as f64 / start.elapsed().as_secs_f64()))
}

pub fn run(args: Args) -> Result<()> {
    let threads = super::set_threads(args.threads);
    let configs: Vec<BenchConfig> = match &args.config {
        Some(name) => {
            let mut all = standard_configs();
            all.extend(sweep_configs());
            let names: Vec<&str> = all.iter().map(|c| c.name).collect();
            vec![all
                .iter()
                .find(|c| c.name == name)
                .cloned()
                .ok_or_else(|| {
                    Error::Config(format!(
                        "unknown --config `{name}`: use one of {}",
                        names.join(", ")
                    ))
                })?]
        }
        None if args.sweep => sweep_configs(),
        None => standard_configs(),
    };
    let peak = gemm_peak_gflops();
    let mut results = Vec::new();
    if !args.json {
        println!("CPU: {}", cpu_model());
        println!("f32 GEMM peak (1024^3, {threads} threads): {peak:.1} GFLOP/s");
        println!(
            "{:<22} {:>12} {:>12} {:>9} {:>7} {:>10} {:>10} {:>10} {:>6} {:>8}",
            "config",
            "tokens/s",
            "eval tok/s",
            "GFLOP/s",
            "% peak",
            "peak RSS",
            "train mem",
            "minimum",
            "ratio",
            "kernel"
        );
    }
    for cfg in &configs {
        let row = if args.in_process || args.config.is_some() {
            let (tps, eval_tps) = measure(cfg, args.seconds)?;
            let gflops = tps * cfg.model_config().train_flops_per_token() / 1e9;
            BenchResult {
                name: cfg.name.into(),
                tokens_per_s: tps,
                eval_tokens_per_s: eval_tps,
                gflops,
                peak_fraction: gflops / peak,
                peak_rss_bytes: peak_rss_bytes(),
                train_bytes: peak_rss_bytes()
                    .saturating_sub(BASELINE_RSS.load(std::sync::atomic::Ordering::Relaxed)),
                min_train_bytes: cfg.min_train_bytes(),
                threads,
                gemm_peak_gflops: peak,
                kernel: kernel_path().name().into(),
                cpu: cpu_model(),
            }
        } else {
            let mut row = run_child(cfg.name, threads, args.seconds)?;
            // One peak for every row: the one measured here, beside the table.
            row.peak_fraction = row.gflops / peak;
            row.gemm_peak_gflops = peak;
            row
        };
        if !args.json {
            println!(
                "{:<22} {:>12.0} {:>12.0} {:>9.1} {:>6.1}% {:>7.1} MB {:>7.1} MB {:>7.1} MB {:>5.2}x {:>8}",
                row.name,
                row.tokens_per_s,
                row.eval_tokens_per_s,
                row.gflops,
                100.0 * row.peak_fraction,
                row.peak_rss_bytes as f64 / 1e6,
                row.train_bytes as f64 / 1e6,
                row.min_train_bytes as f64 / 1e6,
                row.train_bytes as f64 / row.min_train_bytes as f64,
                row.kernel,
            );
        }
        results.push(row);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).expect("serialisable")
        );
    }
    Ok(())
}

/// Runs one configuration in a child process (`bench --config NAME --json`).
fn run_child(name: &str, threads: usize, seconds: f64) -> Result<BenchResult> {
    let exe = std::env::current_exe().map_err(|e| Error::io("current executable", e))?;
    let out = std::process::Command::new(&exe)
        .args(["bench", "--json", "--config", name])
        .args([
            "--threads",
            &threads.to_string(),
            "--seconds",
            &seconds.to_string(),
        ])
        .output()
        .map_err(|e| Error::io(&exe, e))?;
    if !out.status.success() {
        return Err(Error::Data(format!(
            "bench child for {name} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let mut rows: Vec<BenchResult> = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::Data(format!("bench child for {name} printed no JSON: {e}")))?;
    rows.pop()
        .ok_or_else(|| Error::Data(format!("bench child for {name} printed no result")))
}
