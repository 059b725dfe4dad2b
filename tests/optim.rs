//! Every optimizer against `torch.optim` over five steps: the same initial parameters, the same
//! gradient sequence and the same per-step learning rates (`reference/fixtures/optimizers.safetensors`,
//! written by `reference/make_fixtures.py` in float64). After each step every parameter must
//! match PyTorch's. Five steps with betas other than the defaults make Adam's moments and bias
//! corrections after the first step matter; the `_l2` cases add `weight_decay * p` to the
//! gradient and `adamw` decays the parameters by `lr * weight_decay` apart from the gradient.

use rnnscope::checkpoint::TensorFile;
use rnnscope::tensor::Float;
use rnnscope::train::{Optimizer, OptimizerConfig, OptimizerKind};
use std::path::Path;

const CASES: [&str; 11] = [
    "sgd",
    "sgd_momentum",
    "sgd_momentum_l2",
    "adagrad",
    "adagrad_l2",
    "rmsprop",
    "rmsprop_l2",
    "adam",
    "adam_defaults",
    "adam_l2",
    "adamw",
];

fn fixture() -> TensorFile {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/fixtures/optimizers.safetensors");
    TensorFile::open(&path).unwrap()
}

/// The optimizer of `case` as the fixture's metadata describes it (torch.optim's names).
fn config(f: &TensorFile, case: &str) -> OptimizerConfig {
    let j: serde_json::Value = serde_json::from_str(&f.metadata[case]).unwrap();
    let num = |k: &str| j[k].as_f64().unwrap();
    let kind = OptimizerKind::parse(j["optimizer"].as_str().unwrap()).unwrap();
    let mut c = OptimizerConfig::new(kind);
    c.momentum = num("momentum");
    c.beta1 = j["betas"][0].as_f64().unwrap();
    c.beta2 = j["betas"][1].as_f64().unwrap();
    c.alpha = num("alpha");
    if kind != OptimizerKind::Sgd {
        c.eps = num("eps");
    }
    c.weight_decay = num("weight_decay");
    c
}

/// Runs `case` in precision `T`; returns the worst `|p - p_torch| / (|p_torch| + lr)` over all
/// steps and parameters, and how far the parameters moved in all (to show the case is not
/// trivially passing).
fn run<T: Float>(f: &TensorFile, case: &str) -> (f64, f64) {
    let data = |n: &str| f.get(n).unwrap();
    let p0 = &data("params0").data;
    let grads = data("grads");
    let (steps, n) = (grads.shape[0], grads.shape[1]);
    let lrs = &data(&format!("{case}.lr")).data;
    let want = &data(&format!("{case}.params")).data;
    assert_eq!((lrs.len(), want.len()), (steps, steps * n), "{case}");
    let mut opt = Optimizer::<T>::new(config(f, case), n);
    let mut p: Vec<T> = p0.iter().map(|&v| T::from_f64(v)).collect();
    let mut worst: f64 = 0.0;
    for s in 0..steps {
        let g: Vec<T> = grads.data[s * n..(s + 1) * n]
            .iter()
            .map(|&v| T::from_f64(v))
            .collect();
        opt.step(&mut p, &g, lrs[s]).unwrap();
        for (i, (got, w)) in p.iter().zip(&want[s * n..(s + 1) * n]).enumerate() {
            let err = (got.to_f64() - w).abs() / (w.abs() + lrs[s]);
            assert!(
                err.is_finite(),
                "{case}: step {} parameter {i} is {}",
                s + 1,
                got.to_f64()
            );
            worst = worst.max(err);
        }
    }
    let moved = want[(steps - 1) * n..]
        .iter()
        .zip(p0)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    (worst, moved)
}

#[test]
fn every_optimizer_matches_torch_optim_over_five_steps_f64() {
    let f = fixture();
    let all: Vec<&str> = f
        .metadata
        .keys()
        .filter(|k| f.tensors.contains_key(&format!("{k}.params")))
        .map(String::as_str)
        .collect();
    assert_eq!(all.len(), CASES.len(), "the fixture's cases: {all:?}");
    for case in CASES {
        let (worst, moved) = run::<f64>(&f, case);
        assert!(moved > 1e-2, "{case}: parameters barely moved ({moved:e})");
        // Both sides evaluate the same formulas in f64, in a different order: a few ulps per
        // step (the worst case measured 5.5e-16 = 2.5 ulps).
        assert!(worst <= 1e-14, "{case}: relative error {worst:e}");
    }
}

/// Training runs in f32: the same updates, each to f32 rounding (a few `2^-24` per step).
#[test]
fn every_optimizer_matches_torch_optim_over_five_steps_f32() {
    let f = fixture();
    for case in CASES {
        let (worst, _) = run::<f32>(&f, case);
        assert!(
            worst <= 5.0 * 8.0 * f32::EPSILON as f64,
            "{case}: relative error {worst:e}"
        );
    }
}

/// The fixture separates what it must: L2 decay and AdamW's decoupled decay give different
/// parameters, and so do Adam with other betas (so a test passing with the wrong variant
/// would be a test that cannot fail).
#[test]
fn the_cases_differ_from_each_other() {
    let f = fixture();
    let last = |case: &str| {
        let t = f.get(&format!("{case}.params")).unwrap();
        let n = t.shape[1];
        t.data[t.data.len() - n..].to_vec()
    };
    for (a, b) in [
        ("adam", "adam_l2"),
        ("adam", "adam_defaults"),
        ("sgd", "sgd_momentum"),
        ("sgd_momentum", "sgd_momentum_l2"),
        ("adagrad", "adagrad_l2"),
        ("rmsprop", "rmsprop_l2"),
    ] {
        let d = last(a)
            .iter()
            .zip(last(b))
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(d > 1e-4, "{a} and {b} end {d:e} apart");
    }
}

/// An update that would make a parameter non-finite is refused whole, with an error saying
/// which update and at which learning rate; the parameters and the state stay as they were.
#[test]
fn an_update_to_non_finite_parameters_is_refused_with_its_reason() {
    let mut opt = Optimizer::<f32>::new(OptimizerConfig::new(OptimizerKind::Adam), 2);
    let mut p = vec![1.0f32, 2.0];
    opt.step(&mut p, &[0.5, -0.5], 0.1).unwrap();
    let (before, m, v) = (p.clone(), opt.m.clone(), opt.v.clone());
    let err = opt
        .step(&mut p, &[1.0, f32::NAN], 0.1)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "numerical error: update 2 would make parameters non-finite (learning rate 1e-1); it was skipped"
    );
    assert_eq!(
        (p, opt.m.clone(), opt.v.clone(), opt.steps),
        (before, m, v, 1)
    );
}
