//! The initialisers draw from the distributions they name. Every tensor of a 2-layer LSTM
//! (H = 128, so `W_hh` has 65,536 entries) is checked against its distribution with
//! Kolmogorov-Smirnov and moment bounds whose widths come from the sample size `n`:
//!
//! ```text
//! KS        sup_x |F_n(x) - F(x)| <= sqrt(ln(2 / alpha) / 2) / sqrt(n)     alpha = 1e-6
//! mean      |mean| <= 5 sigma / sqrt(n)
//! variance  |s^2 - sigma^2| <= 5 sqrt((mu_4 - sigma^4) / n)
//! range     U(-a, a): every |v| <= a, and max |v| >= a (1 - 20 / n)   (P(miss) = e^-20)
//! ```
//! Orthogonal and identity blocks are checked exactly; a spectral-radius rescaling by the
//! growth of `||W^k||^(1/k)` (Gelfand), computed here with plain f64 products.

use rnnscope::{Activation, CellKind, InitConfig, InitScheme, LanguageModel, ModelConfig};

const H: usize = 128;
const E: usize = 64;
const V: usize = 100;

fn lstm() -> ModelConfig {
    ModelConfig {
        cell: CellKind::Lstm,
        activation: Activation::Tanh,
        vocab: V,
        embedding: E,
        hidden: H,
        layers: 2,
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

fn init(c: ModelConfig, scheme: InitScheme, radius: Option<f64>, seed: u64) -> LanguageModel<f64> {
    let mut m = LanguageModel::<f64>::zeros(c).unwrap();
    let cfg = InitConfig {
        scheme,
        spectral_radius: radius,
        forget_bias: None,
        seed,
    };
    rnnscope::init::initialize(&mut m, &cfg).unwrap();
    m
}

fn tensor(m: &LanguageModel<f64>, name: &str) -> Vec<f64> {
    m.layout.view(m.params(), name).unwrap().to_vec()
}

/// Kolmogorov-Smirnov statistic of `xs` against the CDF `f`.
fn ks(xs: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    s.iter()
        .enumerate()
        .map(|(i, &x)| {
            let c = f(x);
            (c - i as f64 / n).abs().max((c - (i + 1) as f64 / n).abs())
        })
        .fold(0.0, f64::max)
}

fn ks_bound(n: usize) -> f64 {
    let alpha: f64 = 1e-6;
    ((2.0 / alpha).ln() / 2.0).sqrt() / (n as f64).sqrt()
}

fn moments(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

/// `xs` looks like n independent draws from U(-a, a).
fn assert_uniform(xs: &[f64], a: f64, what: &str) {
    let n = xs.len();
    let d = ks(xs, |x| ((x + a) / (2.0 * a)).clamp(0.0, 1.0));
    assert!(
        d <= ks_bound(n),
        "{what}: KS {d:.4} > {:.4} against U(+-{a})",
        ks_bound(n)
    );
    let (mean, var) = moments(xs);
    let sigma2 = a * a / 3.0;
    let mu4 = a.powi(4) / 5.0;
    let nf = n as f64;
    assert!(
        mean.abs() <= 5.0 * (sigma2 / nf).sqrt(),
        "{what}: mean {mean:e}"
    );
    assert!(
        (var - sigma2).abs() <= 5.0 * ((mu4 - sigma2 * sigma2) / nf).sqrt(),
        "{what}: variance {var:e}, want {sigma2:e}"
    );
    let top = xs.iter().map(|x| x.abs()).fold(0.0, f64::max);
    assert!(top <= a, "{what}: |v| = {top} beyond {a}");
    assert!(
        top >= a * (1.0 - 20.0 / nf),
        "{what}: max |v| = {top}, want about {a}"
    );
}

/// `erf` (Abramowitz & Stegun 7.1.26, absolute error below 1.5e-7).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let poly = t
        * (0.254829592
            + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let y = 1.0 - poly * (-x * x).exp();
    if x >= 0.0 {
        y
    } else {
        -y
    }
}

/// `xs` looks like n independent draws from N(0, sigma^2).
fn assert_normal(xs: &[f64], sigma: f64, what: &str) {
    let n = xs.len();
    let d = ks(xs, |x| 0.5 * (1.0 + erf(x / (sigma * 2f64.sqrt()))));
    assert!(
        d <= ks_bound(n),
        "{what}: KS {d:.4} > {:.4} against N(0, {sigma}^2)",
        ks_bound(n)
    );
    let (mean, var) = moments(xs);
    let nf = n as f64;
    let s2 = sigma * sigma;
    assert!(
        mean.abs() <= 5.0 * sigma / nf.sqrt(),
        "{what}: mean {mean:e}"
    );
    assert!(
        (var - s2).abs() <= 5.0 * (2.0 * s2 * s2 / nf).sqrt(),
        "{what}: variance {var:e}, want {s2:e}"
    );
}

fn cell_names(layers: usize) -> Vec<String> {
    (0..layers)
        .flat_map(|k| {
            ["weight_ih", "weight_hh", "bias_ih", "bias_hh"].map(|n| format!("rnn.{n}_l{k}"))
        })
        .collect()
}

/// `[n, n]` row-major `a b` in f64.
fn mat_mul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for l in 0..n {
            let x = a[i * n + l];
            for j in 0..n {
                c[i * n + j] += x * b[l * n + j];
            }
        }
    }
    c
}

/// `max |(a a^T)_ij - s delta_ij|` of an `[n, n]` block.
fn gram_error(a: &[f64], n: usize, s: f64) -> f64 {
    let mut worst: f64 = 0.0;
    for i in 0..n {
        for j in 0..n {
            let dot: f64 = (0..n).map(|k| a[i * n + k] * a[j * n + k]).sum();
            worst = worst.max((dot - if i == j { s } else { 0.0 }).abs());
        }
    }
    worst
}

#[test]
fn default_is_pytorchs() {
    let m = init(lstm(), InitScheme::Default, None, 1);
    let k = 1.0 / (H as f64).sqrt();
    for name in cell_names(2) {
        assert_uniform(&tensor(&m, &name), k, &name);
    }
    assert_uniform(&tensor(&m, "decoder.weight"), k, "decoder.weight");
    assert_uniform(&tensor(&m, "decoder.bias"), k, "decoder.bias");
    assert_normal(&tensor(&m, "embedding.weight"), 1.0, "embedding.weight");
    // A seed fixes every value; another seed changes them.
    assert_eq!(
        m.params(),
        init(lstm(), InitScheme::Default, None, 1).params()
    );
    assert_ne!(
        m.params(),
        init(lstm(), InitScheme::Default, None, 2).params()
    );
}

#[test]
fn uniform_a_draws_every_parameter_from_u_minus_a_a() {
    let m = init(lstm(), InitScheme::Uniform(0.08), None, 3);
    for e in m.layout.entries() {
        assert_uniform(&m.params()[e.range()], 0.08, &e.name);
    }
}

#[test]
fn xavier_uses_fan_in_plus_fan_out_of_each_gate_block() {
    let m = init(lstm(), InitScheme::Xavier, None, 4);
    for (name, fan_in) in [
        ("rnn.weight_ih_l0", E),
        ("rnn.weight_hh_l0", H),
        ("rnn.weight_ih_l1", H),
        ("rnn.weight_hh_l1", H),
    ] {
        let a = (6.0 / (fan_in + H) as f64).sqrt();
        assert_uniform(&tensor(&m, name), a, name);
    }
    for k in 0..2 {
        for b in ["bias_ih", "bias_hh"] {
            let name = format!("rnn.{b}_l{k}");
            assert!(tensor(&m, &name).iter().all(|&v| v == 0.0), "{name}");
        }
    }
    let k = 1.0 / (H as f64).sqrt();
    assert_uniform(&tensor(&m, "decoder.weight"), k, "decoder.weight");
    assert_normal(&tensor(&m, "embedding.weight"), 1.0, "embedding.weight");
}

/// Orthogonal: each gate block `Q` of `W_hh` has `Q Q^T = I`, the blocks differ, and the
/// entries of a Haar-distributed `Q` are, for large `H`, distributed as N(0, 1/H) (checked on
/// all 8 blocks' entries with the KS bound of independent draws, which the weak dependence
/// between entries of one matrix does not visibly change at this size).
#[test]
fn orthogonal_blocks_are_orthogonal_and_haar_like() {
    let m = init(lstm(), InitScheme::Orthogonal, None, 5);
    let mut entries = Vec::new();
    for k in 0..2 {
        let w = tensor(&m, &format!("rnn.weight_hh_l{k}"));
        for g in 0..4 {
            let q = &w[g * H * H..(g + 1) * H * H];
            let err = gram_error(q, H, 1.0);
            assert!(err <= 1e-12, "layer {k} gate {g}: |Q Q^T - I| = {err:e}");
            if g > 0 {
                assert_ne!(q, &w[..H * H], "gate blocks are drawn independently");
            }
            entries.extend_from_slice(q);
        }
        for b in ["bias_ih", "bias_hh"] {
            assert!(tensor(&m, &format!("rnn.{b}_l{k}"))
                .iter()
                .all(|&v| v == 0.0));
        }
        let name = format!("rnn.weight_ih_l{k}");
        assert_uniform(&tensor(&m, &name), 1.0 / (H as f64).sqrt(), &name);
    }
    assert_normal(&entries, 1.0 / (H as f64).sqrt(), "orthogonal entries");
}

#[test]
fn identity_blocks_are_the_identity() {
    let m = init(lstm(), InitScheme::Identity, None, 6);
    for k in 0..2 {
        let w = tensor(&m, &format!("rnn.weight_hh_l{k}"));
        for (i, &v) in w.iter().enumerate() {
            let (row, col) = ((i / H) % H, i % H);
            assert_eq!(v, if row == col { 1.0 } else { 0.0 }, "layer {k} entry {i}");
        }
        let name = format!("rnn.weight_ih_l{k}");
        assert_uniform(&tensor(&m, &name), 1.0 / (H as f64).sqrt(), &name);
    }
}

/// Rescaled to spectral radius `rho`: an orthogonal block becomes `rho Q` (so `W W^T = rho^2 I`),
/// an identity block `rho I`, and a default (uniform) block `W` has `rho(W) = rho`, checked by
/// Gelfand's formula: `||(W / rho)^k||_2 >= rho(W / rho)^k = 1` for every `k`, and
/// `||(W / rho)^k||^(1/k) -> 1`; with `k = 1024` the Frobenius norm's root lies in
/// `[1, 1.02]` (it would be near `rho' / rho` for any other radius `rho'`).
#[test]
fn spectral_radius_rescaling() {
    let rnn = ModelConfig {
        cell: CellKind::Rnn,
        ..lstm()
    };
    let m = init(rnn.clone(), InitScheme::Orthogonal, Some(0.9), 7);
    let w = tensor(&m, "rnn.weight_hh_l1");
    let err = gram_error(&w, H, 0.81);
    assert!(
        err <= 1e-12,
        "orthogonal at radius 0.9: |W W^T - 0.81 I| = {err:e}"
    );

    let m = init(rnn.clone(), InitScheme::Identity, Some(1.1), 7);
    let w = tensor(&m, "rnn.weight_hh_l0");
    for (i, &v) in w.iter().enumerate() {
        let want = if i / H == i % H { 1.1 } else { 0.0 };
        assert!((v - want).abs() <= 1e-15, "entry {i} = {v}");
    }

    for rho in [0.5, 1.3] {
        let m = init(rnn.clone(), InitScheme::Default, Some(rho), 8);
        for k in 0..2 {
            let w = tensor(&m, &format!("rnn.weight_hh_l{k}"));
            let mut p: Vec<f64> = w.iter().map(|v| v / rho).collect();
            // (W / rho)^(2^10), squaring 10 times.
            for _ in 0..10 {
                p = mat_mul(&p, &p, H);
            }
            let norm = p.iter().map(|x| x * x).sum::<f64>().sqrt();
            let growth = norm.powf(1.0 / 1024.0);
            assert!(
                (1.0 - 1e-9..=1.02).contains(&growth),
                "radius {rho}, layer {k}: ||(W/rho)^1024||^(1/1024) = {growth}"
            );
        }
    }
}
