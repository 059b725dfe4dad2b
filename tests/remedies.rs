//! The remedies that act on the math itself: orthogonal recurrence (`W_hh = expm(A)`), chrono
//! gate biases, residual stacks and the vertical gradient profile, checked against what their
//! theory says exactly.

mod common;

use common::*;
use rnnscope::analysis::{self, SnapshotOptions};
use rnnscope::cell::Recurrence;
use rnnscope::{Activation, CellKind, InitConfig, InitScheme, LanguageModel, State, Workspace};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rnnscope");

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("rnnscope_remedies_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn initialised(c: rnnscope::ModelConfig, scheme: InitScheme, seed: u64) -> LanguageModel<f64> {
    let mut m = LanguageModel::zeros(c).unwrap();
    let init = InitConfig {
        scheme,
        seed,
        ..Default::default()
    };
    rnnscope::init::initialize(&mut m, &init).unwrap();
    m
}

/// Identity activation and `W_hh = expm(A)`: `dJ^(i)/dh^(j) = dJ^(i)/dh^(i) W_hh^(i-j)` with
/// `W_hh` orthogonal, so every pair's ratio `|dJ^(i)/dh^(j)| / |dJ^(i)/dh^(i)|` is 1, for every
/// distance up to 256 (from the batched sweep, in f64).
#[test]
fn orthogonal_identity_rnn_keeps_every_gradient_norm() {
    let mut c = config(CellKind::Rnn, Activation::Identity, 1, false);
    c.hidden = 12;
    c.recurrence = Recurrence::Orthogonal;
    let m = initialised(c.clone(), InitScheme::Orthogonal, 5);
    let (steps, batch) = (257, 2);
    let inp = tokens(steps * batch, c.vocab, 1);
    let tgt = tokens(steps * batch, c.vocab, 2);
    let state = random_state(&c, batch, 3);
    let norms = analysis::influence(
        &m,
        &mut Workspace::default(),
        &inp,
        &tgt,
        &state,
        batch,
        None,
    );
    let mut worst = 0.0f64;
    let mut pairs = 0;
    for i in 0..steps {
        for b in 0..batch {
            let own = norms.get(0, i, i, b);
            assert!(own > 1e-3, "target {i}: |dJ/dh_i| = {own}");
            for j in 0..=i {
                worst = worst.max((norms.get(0, i, j, b) / own - 1.0).abs());
                pairs += 1;
            }
        }
    }
    assert_eq!(pairs, batch * steps * (steps + 1) / 2);
    assert!(worst <= 1e-10, "largest |ratio - 1| = {worst:e}");
}

/// The same with a dense `W_hh` of spectral radius 0.9 does shrink: the test above is not true
/// of any identity RNN.
#[test]
fn a_dense_identity_rnn_does_not_keep_them() {
    let mut c = config(CellKind::Rnn, Activation::Identity, 1, false);
    c.hidden = 12;
    let mut m = LanguageModel::<f64>::zeros(c.clone()).unwrap();
    let init = InitConfig {
        scheme: InitScheme::Orthogonal,
        spectral_radius: Some(0.9),
        seed: 5,
        ..Default::default()
    };
    rnnscope::init::initialize(&mut m, &init).unwrap();
    let (steps, batch) = (40, 2);
    let inp = tokens(steps * batch, c.vocab, 1);
    let tgt = tokens(steps * batch, c.vocab, 2);
    let norms = analysis::influence(
        &m,
        &mut Workspace::default(),
        &inp,
        &tgt,
        &State::zeros(&c, batch),
        batch,
        None,
    );
    let r = norms.get(0, steps - 1, 0, 0) / norms.get(0, steps - 1, steps - 1, 0);
    assert!((r - 0.9f64.powi(39)).abs() < 1e-10, "{r}");
}

/// `rnnscope gradflow --cell rnn --activation identity --recurrence orthogonal --json`: rho,
/// sigma_1 and the measured decay per step are 1, the measured gradients match `W_hh^l`.
#[test]
fn cli_orthogonal_identity_acceptance() {
    let out = temp_dir("cli");
    let o = Command::new(BIN)
        .args(["gradflow", "--cell", "rnn", "--activation", "identity"])
        .args(["--recurrence", "orthogonal", "--json", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["rho", "sigma_1", "decay_per_step"] {
        let x = v[key].as_f64().unwrap();
        assert!((x - 1.0).abs() <= 1e-9, "{key} = {x}");
    }
    let err = v["theory_max_rel_error"].as_f64().unwrap();
    assert!(err <= 1e-9, "theory_max_rel_error {err}");
    assert_eq!(v["recurrence"], "orthogonal");
    assert!(v["regime_reason"]
        .as_str()
        .unwrap()
        .contains("orthogonal by construction"));
    let _ = std::fs::remove_dir_all(&out);
}

/// 1,000 updates of an orthogonal RNN on the copy task (f32, Adam): its `W_hh` stays
/// orthogonal, `W^T W = I` to 1e-5, because training moves the generator, never `W_hh`.
#[test]
fn orthogonal_w_hh_stays_orthogonal_through_training() {
    let out = temp_dir("train");
    let o = Command::new(BIN)
        .args(["task", "copy", "--length", "10", "--cell", "rnn"])
        .args(["--recurrence", "orthogonal", "--activation", "modrelu"])
        .args(["--hidden", "24", "--batch", "8", "--steps", "1000"])
        .args(["--eval-every", "1000", "--test-size", "16", "--lr", "3e-3"])
        .args(["--threads", "1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ck = rnnscope::checkpoint::load::<f32>(&out.join("last.safetensors")).unwrap();
    let first = initialised(ck.model.config.clone(), InitScheme::Default, 0);
    let h = ck.model.config.hidden;
    let w = ck.model.layer_params(0).w_hh;
    let mut worst = 0.0f64;
    for i in 0..h {
        for j in 0..h {
            let dot: f64 = (0..h)
                .map(|k| w[k * h + i] as f64 * w[k * h + j] as f64)
                .sum();
            worst = worst.max((dot - f64::from(u8::from(i == j))).abs());
        }
    }
    assert!(worst <= 1e-5, "|W^T W - I| max {worst:e}");
    // It trained: the generator moved away from where any seed-0 init puts it.
    let moved = ck
        .model
        .params()
        .iter()
        .zip(first.params())
        .any(|(a, b)| (*a as f64 - b).abs() > 1e-3);
    assert!(moved, "the parameters did not move");
    let _ = std::fs::remove_dir_all(&out);
}

/// Chrono initialisation (Tallec and Ollivier 2018): LSTM forget biases `ln u`,
/// `u ~ U(1, T_MAX - 1)`, input biases their negatives, all other biases 0; the GRU's update
/// gate likewise. `exp(b_f) - 1` is then uniform on `(0, T_MAX - 2)`: mean and range checked.
#[test]
fn chrono_biases_follow_their_distribution() {
    let t_max = 100.0;
    for cell in [CellKind::Lstm, CellKind::Gru] {
        let mut c = config(cell, Activation::Tanh, 2, false);
        c.hidden = 500;
        let m = initialised(c.clone(), InitScheme::Chrono(t_max), 3);
        let h = c.hidden;
        for k in 0..2 {
            let view = |n: &str| m.layout.view(m.params(), n).unwrap().to_vec();
            let b_ih = view(&format!("rnn.bias_ih_l{k}"));
            let b_hh = view(&format!("rnn.bias_hh_l{k}"));
            assert!(b_hh.iter().all(|&v| v == 0.0), "{cell:?}: b_hh is 0");
            let keep = &b_ih[h..2 * h];
            let u: Vec<f64> = keep.iter().map(|b| b.exp()).collect();
            assert!(u.iter().all(|&u| (1.0..t_max - 1.0 + 1e-9).contains(&u)));
            let mean = u.iter().sum::<f64>() / h as f64;
            // U(1, 99): mean 50, sd 28.3; the mean of 500 has sd 1.27: 5 sd bound.
            assert!((mean - 50.0).abs() < 6.4, "{cell:?}: mean of u {mean}");
            for (g, block) in b_ih.chunks(h).enumerate() {
                match (cell, g) {
                    (_, 1) => {}
                    (CellKind::Lstm, 0) => {
                        for (i, f) in block.iter().zip(keep) {
                            assert_eq!(*i, -f, "b_i = -b_f");
                        }
                    }
                    _ => assert!(block.iter().all(|&v| v == 0.0), "{cell:?} block {g}"),
                }
            }
        }
    }
    let err = LanguageModel::<f64>::zeros(config(CellKind::Rnn, Activation::Tanh, 1, false))
        .and_then(|mut m| {
            rnnscope::init::initialize(
                &mut m,
                &InitConfig {
                    scheme: InitScheme::Chrono(t_max),
                    ..Default::default()
                },
            )
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("gated cell"), "{err}");
}

/// The vertical profile: `|dJ^(i)/dh^(k)_i|` at each layer of a stack, against the top layer's.
/// Identity activation, each `W_ih` of layers above the first `s I` (scaled identity), no
/// residual connections: the gradient crossing one layer is multiplied by `s` exactly, so the
/// ratio at layer `k` is `s^(L - 1 - k)`; with residual connections it is `(1 + s)^(L - 1 - k)`.
#[test]
fn vertical_profile_is_the_product_of_the_layer_jacobians() {
    let s = 0.5;
    for residual in [false, true] {
        let mut c = config(CellKind::Rnn, Activation::Identity, 4, false);
        c.hidden = 3;
        c.embedding = 3;
        c.residual = residual;
        let mut m = initialised(c.clone(), InitScheme::Default, 1);
        let layout = m.layout.clone();
        {
            let mut p = m.params_mut();
            for k in 1..4 {
                let e = layout.get(&format!("rnn.weight_ih_l{k}")).unwrap().range();
                for (x, v) in p[e].iter_mut().enumerate() {
                    *v = if x % 4 == 0 { s } else { 0.0 };
                }
            }
        }
        let (steps, batch) = (1, 3);
        let inp = tokens(steps * batch, c.vocab, 1);
        let tgt = tokens(steps * batch, c.vocab, 2);
        let opts = SnapshotOptions {
            jacobian: None,
            ..Default::default()
        };
        let snap = analysis::snapshot(&m, &inp, &tgt, None, batch, &opts).unwrap();
        let per = &snap.summary.per_layer;
        for (k, l) in per.iter().enumerate() {
            let want = if residual { 1.0 + s } else { s }.powi(3 - k as i32);
            let got = l.vertical_ratio.unwrap();
            assert!(
                (got - want).abs() < 1e-12,
                "residual {residual} layer {k}: {got} vs {want}"
            );
        }
    }
}
