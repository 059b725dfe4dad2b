//! A fixed number of training steps of one `rnnscope bench` configuration, for comparing two
//! builds by work done rather than by time (`rnnscope bench` trains for a fixed time):
//!
//! ```text
//! cargo build --release --example train_steps
//! perf stat -e task-clock target/release/examples/train_steps CONFIG [STEPS] [THREADS]
//!                                                  (default: 20 steps, 1 thread)
//! ```
//! Two warm-up steps, then `STEPS` timed ones on the same batch; prints the mean and the best
//! step in tokens per second. On a machine shared with other jobs the wall-clock figures swing;
//! the CPU time `perf stat` reports (or the best step) moves much less, so alternate the two
//! builds a few times and compare those.

use rnnscope::cli::bench::{standard_configs, sweep_configs};
use rnnscope::init::{initialize, InitConfig};
use rnnscope::train::{Clip, OptimizerConfig, OptimizerKind, Trainer};
use rnnscope::LanguageModel;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut all = standard_configs();
    all.extend(sweep_configs());
    let names: Vec<&str> = all.iter().map(|c| c.name).collect();
    let Some(cfg) = args
        .first()
        .and_then(|name| all.iter().find(|c| c.name == name))
    else {
        eprintln!("usage: train_steps CONFIG [STEPS] [THREADS]; CONFIG is one of {names:?}");
        std::process::exit(2);
    };
    let steps: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    rnnscope::cli::set_threads(threads);
    let mut model = LanguageModel::<f32>::zeros(cfg.model_config()).expect("a valid config");
    initialize(&mut model, &InitConfig::default()).expect("a valid init");
    let mut trainer = Trainer::new(model, OptimizerConfig::new(OptimizerKind::Adam), cfg.batch);
    let n = cfg.batch * cfg.bptt;
    let stream: Vec<u32> = (0..n + 1).map(|i| (i * 7919 % 65) as u32).collect();
    let (inputs, targets) = (&stream[..n], &stream[1..]);
    let mut step = || {
        let start = Instant::now();
        trainer
            .step(inputs, targets, 1e-3, Clip::Norm(5.0), None)
            .expect("a finite step");
        start.elapsed().as_secs_f64()
    };
    step();
    step();
    let times: Vec<f64> = (0..steps.max(1)).map(|_| step()).collect();
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "{}: {threads} threads, {} steps: mean {:.0} tokens/s, best step {:.0} tokens/s",
        cfg.name,
        times.len(),
        (times.len() * n) as f64 / times.iter().sum::<f64>(),
        n as f64 / best
    );
}
