//! GFLOP/s of the per-step recurrent product `C += A B` on each kernel path this CPU runs, in
//! isolation, on one thread.
//!
//! ```text
//! cargo run --release --example packed_kernel [-- ROUNDS [M,K,N ...]]
//!                        (default: 20 rounds; the LSTM shapes below)
//! ```
//! Each shape `[M, K] x [K, N]` is one thread's per-step product of an LSTM (`G = 4`) with
//! `B / threads = M` rows: forward `h W_hh^T` (`K = H`, `N = 4H`) and backward `da W_hh`
//! (`K = 4H`, `N = H`). A round runs 24 steps on every path in turn, each step with its own
//! `A` and `C` (as a pass walks through time, `C` cold); the figure is the median over all
//! steps of all rounds, then the best step, so that steps that another process interrupted
//! (on a shared machine, many) do not set it.

use rnnscope::tensor::{KernelPath, PackedRhs, Trans};
use std::time::Instant;

const STEPS: usize = 24;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(20);
    let mut shapes: Vec<(usize, usize, usize)> = args
        .iter()
        .skip(1)
        .filter_map(|s| {
            let v: Vec<usize> = s.split(',').filter_map(|x| x.parse().ok()).collect();
            (v.len() == 3).then(|| (v[0], v[1], v[2]))
        })
        .collect();
    if shapes.is_empty() {
        for (m, h) in [(16, 64), (16, 128), (16, 256), (32, 512), (16, 1024)] {
            shapes.push((m, h, 4 * h));
            shapes.push((m, 4 * h, h));
        }
    }
    let paths: Vec<KernelPath> = KernelPath::ALL
        .into_iter()
        .filter(|p| match p.missing() {
            None => true,
            Some(lack) => {
                println!("kernel path {}: skipped (CPU lacks {lack})", p.name());
                false
            }
        })
        .collect();
    println!("GFLOP/s, median step (best step), {rounds} rounds of {STEPS} steps, one thread");
    for (m, k, n) in shapes {
        let a: Vec<f32> = (0..STEPS * m * k)
            .map(|i| ((i * 37 % 23) as f32) * 0.01 - 0.1)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 13 % 17) as f32) * 0.01 - 0.08)
            .collect();
        let mut c = vec![0.0f32; STEPS * m * n];
        let packed: Vec<PackedRhs<f32>> = paths
            .iter()
            .map(|&p| {
                let mut w = PackedRhs::default();
                w.pack_with(p, &b, Trans::No, k, n).expect("runnable path");
                w
            })
            .collect();
        let mut times = vec![Vec::new(); paths.len()];
        for _ in 0..rounds {
            for (w, t) in packed.iter().zip(&mut times) {
                for s in 0..STEPS {
                    let start = Instant::now();
                    w.matmul(
                        &mut c[s * m * n..(s + 1) * m * n],
                        &a[s * m * k..(s + 1) * m * k],
                        m,
                        true,
                    );
                    t.push(start.elapsed().as_secs_f64());
                }
            }
        }
        let flops = 2.0 * (m * k * n) as f64;
        let mut line = format!("[{m:3}, {k:4}] x [{k:4}, {n:4}]");
        for (p, t) in paths.iter().zip(&mut times) {
            t.sort_by(f64::total_cmp);
            let (median, best) = (t[t.len() / 2], t[0]);
            line += &format!(
                "  {} {:5.1} ({:5.1})",
                p.name(),
                flops / median / 1e9,
                flops / best / 1e9
            );
        }
        println!("{line}");
    }
}
