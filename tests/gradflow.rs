//! Gradient flow through time: the batched sweep against `T` separate backward passes, the
//! identity-activation theory (`W_hh^l`, eigen-expansion, exact rates), the nonlinear bound,
//! the Jacobians against finite differences, and the `gradflow` command end to end.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rnnscope::analysis::{self, jacobian, profile, theory, SnapshotOptions};
use rnnscope::cell::{self, Cell, StateIo};
use rnnscope::{
    Activation, CellKind, InitConfig, InitScheme, LanguageModel, LossWeights, ModelConfig, State,
    StepRecord, Workspace,
};

fn config(cell: CellKind, activation: Activation, layers: usize, hidden: usize) -> ModelConfig {
    ModelConfig {
        cell,
        activation,
        vocab: 7,
        embedding: 5,
        hidden,
        layers,
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

fn model(c: ModelConfig, scheme: InitScheme, rho: Option<f64>, seed: u64) -> LanguageModel<f64> {
    let mut m = LanguageModel::zeros(c).unwrap();
    let init = InitConfig {
        scheme,
        spectral_radius: rho,
        forget_bias: None,
        seed,
    };
    rnnscope::init::initialize(&mut m, &init).unwrap();
    m
}

fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(0..vocab as u32)).collect()
}

fn random_state(c: &ModelConfig, batch: usize, seed: u64) -> State<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut s = State::zeros(c, batch);
    for v in s.h.iter_mut().chain(s.c.iter_mut()) {
        *v = rng.gen_range(-0.8..0.8);
    }
    s
}

/// Every `g^(i)_j` of every layer from the batched sweep: `[layer][(i * T + j) * B * H ..]`
/// (and the LSTM's `dc`).
struct Everything {
    dh: Vec<Vec<f64>>,
    dc: Vec<Vec<f64>>,
}

fn sweep_everything(
    m: &LanguageModel<f64>,
    inp: &[u32],
    tgt: &[u32],
    s: &State<f64>,
    steps: usize,
    batch: usize,
) -> (Everything, profile::InfluenceNorms) {
    let c = &m.config;
    // rows of h (P wide with a projection) and of c (H wide)
    let (bh, bc) = (batch * c.h_size(), batch * c.hidden);
    let mut all = Everything {
        dh: vec![vec![0.0; steps * steps * bh]; c.layers],
        dc: vec![vec![0.0; steps * steps * bc]; c.layers],
    };
    let mut ws = Workspace::default();
    let mut visit = |v: &profile::StepView<'_, f64>| {
        let t = v.step;
        for i in t..steps {
            let at = (i * steps + t) * bh;
            let src = (i - t) * bh..(i - t + 1) * bh;
            all.dh[v.layer][at..at + bh].copy_from_slice(&v.dh[src]);
            if let Some(dc) = v.dc {
                let at = (i * steps + t) * bc;
                all.dc[v.layer][at..at + bc].copy_from_slice(&dc[(i - t) * bc..(i - t + 1) * bc]);
            }
        }
    };
    let norms = analysis::influence(m, &mut ws, inp, tgt, s, batch, Some(&mut visit));
    (all, norms)
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn batched_sweep_equals_separate_single_target_passes() {
    let (steps, batch) = (7, 3);
    // (cell, proj_size): the LSTM also with a projection (h of 2 values, c of 4).
    for (cell, proj) in [
        (CellKind::Rnn, 0),
        (CellKind::Lstm, 0),
        (CellKind::Lstm, 2),
        (CellKind::Gru, 0),
    ] {
        for layers in [1, 2, 3] {
            let acts: &[Activation] = if cell == CellKind::Rnn {
                &[Activation::Tanh, Activation::Sigmoid, Activation::Identity]
            } else {
                &[Activation::Tanh]
            };
            // With more than one layer, also with residual connections between them.
            let residual: &[bool] = if layers > 1 { &[false, true] } else { &[false] };
            for (&act, &res) in acts
                .iter()
                .flat_map(|a| residual.iter().map(move |r| (a, r)))
            {
                let mut c = config(cell, act, layers, 4);
                c.residual = res;
                c.proj_size = proj;
                let m = model(c.clone(), InitScheme::Uniform(0.6), None, 3);
                let inp = tokens(steps * batch, c.vocab, 5);
                let tgt = tokens(steps * batch, c.vocab, 6);
                let s = random_state(&c, batch, 7);
                let (all, norms) = sweep_everything(&m, &inp, &tgt, &s, steps, batch);
                let (hp, bh, bc) = (c.h_size(), batch * c.h_size(), batch * c.hidden);
                let mut ws = Workspace::default();
                let mut grads = vec![0.0; m.layout.total()];
                let mut scale = 0.0f64;
                let mut worst = 0.0f64;
                for i in 0..steps {
                    let mut w = vec![0.0; steps * batch];
                    w[i * batch..(i + 1) * batch].fill(1.0);
                    m.forward(&mut ws, &inp, &s, steps, batch, None);
                    m.loss(&mut ws, &tgt);
                    let mut rec = StepRecord::default();
                    m.backward(
                        &mut ws,
                        &mut grads,
                        LossWeights::PerToken(&w),
                        None,
                        Some(&mut rec),
                    )
                    .unwrap();
                    for k in 0..layers {
                        for j in 0..=i {
                            let want = &rec.dh[k][j * bh..(j + 1) * bh];
                            let got = &all.dh[k][(i * steps + j) * bh..(i * steps + j + 1) * bh];
                            scale = scale.max(want.iter().fold(0.0, |a, x| a.max(x.abs())));
                            worst = worst.max(max_abs_diff(got, want));
                            for b in 0..batch {
                                let n = want[b * hp..(b + 1) * hp]
                                    .iter()
                                    .map(|x| x * x)
                                    .sum::<f64>()
                                    .sqrt();
                                let got_n = norms.get(k, i, j, b);
                                assert!(
                                    (n - got_n).abs() <= 1e-12 * n.max(1e-300),
                                    "norm {cell:?} L{layers} k{k} i{i} j{j} b{b}: {got_n} vs {n}"
                                );
                            }
                            if cell == CellKind::Lstm {
                                let want = &rec.dc[k][j * bc..(j + 1) * bc];
                                let got =
                                    &all.dc[k][(i * steps + j) * bc..(i * steps + j + 1) * bc];
                                worst = worst.max(max_abs_diff(got, want));
                                for b in 0..batch {
                                    let n = want[b * c.hidden..(b + 1) * c.hidden]
                                        .iter()
                                        .map(|x| x * x)
                                        .sum::<f64>()
                                        .sqrt();
                                    let at = norms.index(i, j, b);
                                    assert!((n - norms.dc[k][at]).abs() <= 1e-12 * n.max(1e-300));
                                }
                            }
                        }
                    }
                }
                assert!(scale > 1e-3, "the test gradients are not trivially zero");
                assert!(
                    worst <= 1e-13 * scale,
                    "{cell:?} proj {proj} {act:?} layers {layers}: max |batched - separate| = {worst:e} (scale {scale:e})"
                );
            }
        }
    }
}

fn rnn_identity(
    hidden: usize,
    layers: usize,
    scheme: InitScheme,
    rho: Option<f64>,
) -> LanguageModel<f64> {
    model(
        config(CellKind::Rnn, Activation::Identity, layers, hidden),
        scheme,
        rho,
        11,
    )
}

fn snap(
    m: &LanguageModel<f64>,
    steps: usize,
    batch: usize,
    seed: u64,
) -> analysis::GradflowSnapshot {
    let inp = tokens(steps * batch, m.config.vocab, seed);
    let tgt = tokens(steps * batch, m.config.vocab, seed + 1);
    analysis::snapshot(m, &inp, &tgt, None, batch, &SnapshotOptions::default()).unwrap()
}

#[test]
fn identity_profile_matches_powers_and_eigen_expansion() {
    // Normal (scaled orthogonal) and non-normal (default init) W_hh, one and two layers.
    let cases = [
        (InitScheme::Orthogonal, Some(0.9)),
        (InitScheme::Orthogonal, Some(1.1)),
        (InitScheme::Default, None),
        (InitScheme::Xavier, Some(0.95)),
    ];
    for (scheme, rho) in cases {
        for layers in [1, 2] {
            let m = rnn_identity(12, layers, scheme, rho);
            let s = snap(&m, 40, 3, 1);
            let check = s.theory.identity.as_ref().expect("identity check runs");
            assert_eq!(check.layer, layers - 1);
            assert!(check.targets.contains(&39));
            assert!(
                check.max_rel_error_powers <= 1e-10 && check.max_rel_error_eigen <= 1e-10,
                "{scheme:?} {rho:?} layers {layers}: {check:?}"
            );
            assert_eq!(s.summary.theory_max_rel_error, Some(check.max_rel_error));
        }
    }
}

#[test]
fn identity_check_with_synthetic_well_conditioned_injection() {
    // Inject random full-rank g_i (not confined to the decoder's row space) straight into the
    // sweep, capture every target and compare with W^l and the eigen-expansion.
    let (steps, batch, h) = (50, 4, 16);
    let m = rnn_identity(h, 1, InitScheme::Default, Some(0.97));
    let c = &m.config;
    let inp = tokens(steps * batch, c.vocab, 2);
    let mut ws = Workspace::default();
    m.forward(&mut ws, &inp, &State::zeros(c, batch), steps, batch, None);
    let mut rng = StdRng::seed_from_u64(9);
    let inject: Vec<f64> = (0..steps * batch * h)
        .map(|_| rng.gen_range(-1.0..1.0))
        .collect();
    let mut cap = theory::Capture::new(0, steps, batch, h, steps, usize::MAX);
    assert_eq!(cap.targets, (0..steps).collect::<Vec<_>>());
    let mut visit = |v: &profile::StepView<'_, f64>| cap.visit(v);
    profile::sweep(&m, &ws.caches, &inject, Some(&mut visit));
    let check = theory::identity_check(m.layer_params(0).w_hh, &cap).unwrap();
    assert!(check.max_rel_error <= 1e-10, "{check:?}");
    // and the injection itself is what the sweep starts from
    for i in 0..steps {
        assert_eq!(cap.get(i, i), &inject[i * batch * h..(i + 1) * batch * h]);
    }
}

#[test]
fn identity_rates_are_exactly_log_rho() {
    for rho in [0.9, 1.1] {
        let m = rnn_identity(16, 1, InitScheme::Orthogonal, Some(rho));
        let steps = 64;
        let s = snap(&m, steps, 4, 3);
        let rows = &s.profiles[0].hidden;
        for r in rows {
            let want = rho.powi(r.distance as i32);
            let got = r.ratio.unwrap();
            assert!(
                (got / want - 1.0).abs() < 1e-12,
                "rho {rho} l {}: {got} vs {want}",
                r.distance
            );
        }
        let rate = s.profiles[0].hidden_rate.as_ref().unwrap();
        assert_eq!(rate.last, steps - 1);
        assert!((rate.per_step.ln() - rho.ln()).abs() < 1e-13, "{rate:?}");
        assert!(
            (rate.per_step_fit.ln() - rho.ln()).abs() < 1e-13,
            "{rate:?}"
        );
        assert!((s.summary.decay_per_step.unwrap() - rho).abs() < 1e-13);
        assert_eq!(
            s.summary.regime,
            if rho < 1.0 { "vanishing" } else { "exploding" }
        );
        // The Jacobian product is W^l: sigma_1 = rho^l, every Lyapunov exponent ln rho.
        let j = &s.jacobian[0];
        assert!((j.rate_per_step.unwrap().ln() - rho.ln()).abs() < 1e-12);
        for r in j
            .products
            .iter()
            .filter(|r| !r.log_singular_values.is_empty())
        {
            for ls in &r.log_singular_values {
                assert!((ls - r.distance as f64 * rho.ln()).abs() < 1e-10);
            }
        }
        for e in &j.lyapunov_exponents {
            assert!((e - rho.ln()).abs() < 1e-10, "{e} vs {}", rho.ln());
        }
        assert_eq!(
            j.one_step_norm.iter().flatten().count(),
            steps,
            "S <= 128: every step"
        );
        assert!(j
            .one_step_norm
            .iter()
            .flatten()
            .all(|n| (n - rho).abs() < 1e-10));
    }
}

#[test]
fn nonlinear_profile_never_exceeds_the_gamma_sigma_bound() {
    let cases = [
        (Activation::Tanh, InitScheme::Uniform(0.15)),
        (Activation::Tanh, InitScheme::Uniform(0.6)),
        (Activation::Tanh, InitScheme::Orthogonal),
        (Activation::Sigmoid, InitScheme::Uniform(0.9)),
        (Activation::Relu, InitScheme::Identity),
    ];
    for (act, scheme) in cases {
        for layers in [1, 2] {
            let rho = (scheme == InitScheme::Orthogonal).then_some(1.4);
            let m = model(config(CellKind::Rnn, act, layers, 10), scheme, rho, 5);
            let s = snap(&m, 48, 4, 8);
            let top = layers - 1;
            let bound = act.gamma() * s.spectrum[top].sigma_1;
            let check = s
                .theory
                .bound
                .as_ref()
                .expect("bound check for a nonlinear RNN");
            assert_eq!(check.layer, top);
            assert!((check.bound_per_step - bound).abs() < 1e-15);
            assert_eq!(check.violations, 0, "{act:?} {scheme:?}: {check:?}");
            assert!(check.max_ratio_to_bound <= 1.0 + 1e-9, "{check:?}");
            assert_eq!(s.summary.bound_respected, Some(true));
            assert!(s.summary.theory_max_rel_error.is_none());
            // the profile: R(l) <= (gamma sigma_1)^l
            for r in &s.profiles[top].hidden {
                if let Some(x) = r.ratio {
                    assert!(
                        x.ln() <= r.distance as f64 * bound.ln() + 1e-9,
                        "{act:?} l {}",
                        r.distance
                    );
                }
            }
            // and every one-step Jacobian: |diag(s') W| <= gamma sigma_1
            for n in s.jacobian[top].one_step_norm.iter().flatten() {
                assert!(*n <= bound * (1.0 + 1e-9), "{n} > {bound}");
            }
            if s.spectrum[top].sigma_1 < 1.0 / act.gamma() {
                assert_eq!(s.summary.regime, "vanishing");
                assert_eq!(s.summary.vanishing_guaranteed, Some(true));
            } else {
                assert_eq!(s.summary.regime, "undetermined");
            }
        }
    }
}

#[test]
fn one_step_jacobians_match_finite_differences() {
    let (steps, batch) = (5, 2);
    // (cell, proj_size): with a projection the LSTM's state is (h [2], c [4]) and layer 1
    // reads 2 inputs.
    for (cell, proj) in [
        (CellKind::Rnn, 0),
        (CellKind::Lstm, 0),
        (CellKind::Lstm, 2),
        (CellKind::Gru, 0),
    ] {
        let mut c = config(cell, Activation::Tanh, 2, 4);
        c.proj_size = proj;
        let m = model(c.clone(), InitScheme::Uniform(0.6), None, 21);
        let inp = tokens(steps * batch, c.vocab, 4);
        let s0 = random_state(&c, batch, 5);
        let mut ws = Workspace::default();
        m.forward(&mut ws, &inp, &s0, steps, batch, None);
        let emb = m
            .layout
            .view(m.params(), "embedding.weight")
            .unwrap()
            .to_vec();
        // `h` values of h (P with a projection), `hc` of c
        let (h, hc) = (c.h_size(), c.hidden);
        let sd = jacobian::state_dim(&c);
        assert_eq!(sd, if cell == CellKind::Lstm { h + hc } else { h });
        for k in 0..2 {
            for (t, b) in [(0, 0), (3, 1)] {
                let j = jacobian::one_step(&m, &ws.caches[k], k, t, b);
                let x: Vec<f64> = if k == 0 {
                    let tok = inp[t * batch + b] as usize;
                    emb[tok * c.embedding..(tok + 1) * c.embedding].to_vec()
                } else {
                    ws.caches[0].h_at(t + 1)[b * h..(b + 1) * h].to_vec()
                };
                let mut state: Vec<f64> = ws.caches[k].h_at(t)[b * h..(b + 1) * h].to_vec();
                if cell == CellKind::Lstm {
                    state.extend_from_slice(&ws.caches[k].c_at(t)[b * hc..(b + 1) * hc]);
                }
                let step = |st: &[f64]| -> Vec<f64> {
                    let mut cache = cell::LayerCache::default();
                    let cc = if cell == CellKind::Lstm {
                        &st[h..]
                    } else {
                        &[][..]
                    };
                    cell::forward(
                        Cell {
                            kind: cell,
                            activation: Activation::Tanh,
                        },
                        &mut cache,
                        cell::Input::Dense(&x),
                        StateIo { h: &st[..h], c: cc },
                        m.layer_params(k),
                        c.dims(k, 1, 1),
                    );
                    let mut out = cache.h_at(1).to_vec();
                    if cell == CellKind::Lstm {
                        out.extend_from_slice(cache.c_at(1));
                    }
                    out
                };
                assert!(
                    max_abs_diff(
                        &step(&state)[..h],
                        &ws.caches[k].h_at(t + 1)[b * h..(b + 1) * h]
                    ) < 1e-15
                );
                let eps = 1e-4;
                for q in 0..sd {
                    let f = |d: f64| {
                        let mut st = state.clone();
                        st[q] += d;
                        step(&st)
                    };
                    let (p1, m1, p2, m2) = (f(eps), f(-eps), f(2.0 * eps), f(-2.0 * eps));
                    for p in 0..sd {
                        let fd = (8.0 * (p1[p] - m1[p]) - (p2[p] - m2[p])) / (12.0 * eps);
                        let an = j[p * sd + q];
                        assert!(
                            (fd - an).abs() < 1e-9,
                            "{cell:?} proj {proj} layer {k} t {t} J[{p}][{q}]: {an} vs fd {fd}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn sweep_steps_are_the_one_step_jacobians() {
    // Single layer: g^(i)_{t-1} = g^(i)_t J_t for the RNN and GRU (state = h).
    let (steps, batch) = (6, 2);
    for cell in [CellKind::Rnn, CellKind::Gru] {
        let c = config(cell, Activation::Tanh, 1, 5);
        let m = model(c.clone(), InitScheme::Uniform(0.5), None, 2);
        let inp = tokens(steps * batch, c.vocab, 3);
        let tgt = tokens(steps * batch, c.vocab, 4);
        let s = State::zeros(&c, batch);
        let (all, _) = sweep_everything(&m, &inp, &tgt, &s, steps, batch);
        let mut ws = Workspace::default();
        m.forward(&mut ws, &inp, &s, steps, batch, None);
        let h = c.hidden;
        let bh = batch * h;
        for i in 0..steps {
            for t in 1..=i {
                for b in 0..batch {
                    let j = jacobian::one_step(&m, &ws.caches[0], 0, t, b);
                    let g = &all.dh[0][(i * steps + t) * bh + b * h..][..h];
                    let want: Vec<f64> = (0..h)
                        .map(|q| (0..h).map(|p| g[p] * j[p * h + q]).sum())
                        .collect();
                    let got = &all.dh[0][(i * steps + t - 1) * bh + b * h..][..h];
                    assert!(
                        max_abs_diff(got, &want) < 1e-14,
                        "{cell:?} i {i} t {t} b {b}"
                    );
                }
            }
        }
    }
}

#[test]
fn spectrum_and_regime_of_known_weights() {
    let m = rnn_identity(8, 1, InitScheme::Orthogonal, Some(0.9));
    let s = theory::layer_spectrum(&m, 0).unwrap();
    assert_eq!(s.gates.len(), 1);
    assert!(s.gates[0]
        .eigenvalues
        .iter()
        .all(|e| (e.modulus() - 0.9).abs() < 1e-12));
    assert!(s.gates[0]
        .singular_values
        .iter()
        .all(|v| (v - 0.9).abs() < 1e-12));
    assert_eq!(s.regime.name, "vanishing");
    let m = rnn_identity(8, 1, InitScheme::Identity, Some(1.1));
    let s = theory::layer_spectrum(&m, 0).unwrap();
    assert!((s.rho - 1.1).abs() < 1e-14 && (s.sigma_1 - 1.1).abs() < 1e-14);
    assert_eq!(s.regime.name, "exploding");
    // sigmoid: gamma = 1/4, so sigma_1 < 4 guarantees vanishing
    let r = theory::regime(
        CellKind::Rnn,
        Activation::Sigmoid,
        Default::default(),
        3.0,
        3.9,
    );
    assert_eq!(
        (r.name.as_str(), r.vanishing_guaranteed),
        ("vanishing", Some(true))
    );
    let r = theory::regime(
        CellKind::Rnn,
        Activation::Tanh,
        Default::default(),
        0.8,
        1.2,
    );
    assert_eq!(
        (r.name.as_str(), r.exploding_possible),
        ("undetermined", Some(true))
    );
    let m = model(
        config(CellKind::Lstm, Activation::Tanh, 1, 6),
        InitScheme::Default,
        None,
        1,
    );
    let s = theory::layer_spectrum(&m, 0).unwrap();
    let names: Vec<&str> = s.gates.iter().map(|g| g.gate.as_str()).collect();
    assert_eq!(names, ["i", "f", "g", "o"]);
    assert_eq!(s.regime.name, "gated");
    assert!(s.gamma.is_none());
}

#[test]
fn lstm_and_gru_snapshots_profile_the_cell_state_and_serialise() {
    for cell in [CellKind::Lstm, CellKind::Gru] {
        let m = model(
            config(cell, Activation::Tanh, 2, 6),
            InitScheme::Default,
            None,
            3,
        );
        let s = snap(&m, 20, 3, 5);
        assert_eq!(s.profiles.len(), 2);
        assert_eq!(s.jacobian.len(), 2);
        assert_eq!(
            s.jacobian[0].state_dim,
            if cell == CellKind::Lstm { 12 } else { 6 }
        );
        assert_eq!(s.profiles[1].cell.is_some(), cell == CellKind::Lstm);
        assert_eq!(
            s.influence_cell.len(),
            if cell == CellKind::Lstm { 2 } else { 0 }
        );
        assert_eq!(s.influence[0].len(), 400);
        assert!(s.summary.bound_per_step.is_none() && s.summary.gamma.is_none());
        // the diagonal of the influence matrix is the injection's size, the upper triangle 0
        assert!(s.influence[1][5 * 20 + 5] > 0.0 && s.influence[1][5 * 20 + 6] == 0.0);
        let json = serde_json::to_string(&s).unwrap();
        let back: analysis::GradflowSnapshot = serde_json::from_str(&json).unwrap();
        // serde_json's float parsing may differ from the shortest form by one ulp
        let a = serde_json::to_value(&back).unwrap();
        let b = serde_json::to_value(&s).unwrap();
        assert!(json_close(&a, &b), "round trip changed the snapshot");
    }
}

fn json_close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match (a, b) {
        (V::Number(x), V::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-14 * x.abs().max(y.abs())
        }
        (V::Array(x), V::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_close(p, q))
        }
        (V::Object(x), V::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, p)| y.get(k).is_some_and(|q| json_close(p, q)))
        }
        _ => a == b,
    }
}

#[test]
fn snapshot_rejects_bad_shapes_and_tokens() {
    let m = rnn_identity(4, 1, InitScheme::Default, None);
    let o = SnapshotOptions::default();
    let err = |r: rnnscope::Result<analysis::GradflowSnapshot>| r.err().unwrap().to_string();
    assert_eq!(
        err(analysis::snapshot(&m, &[0, 1, 2], &[0, 1, 2], None, 2, &o)),
        "invalid configuration: tokens (3) must be a non-empty [T, B] block with B = 2"
    );
    assert_eq!(
        err(analysis::snapshot(&m, &[0, 1], &[0], None, 2, &o)),
        "invalid configuration: targets (1) must have the shape of tokens (2)"
    );
    assert_eq!(
        err(analysis::snapshot(&m, &[0, 99], &[0, 1], None, 2, &o)),
        format!(
            "token 99 is outside the model's vocabulary of {}",
            m.config.vocab
        )
    );
    let bad = State {
        h: vec![0.0; 3],
        c: vec![],
    };
    let need = m.config.layers * 2 * m.config.hidden;
    assert_eq!(
        err(analysis::snapshot(&m, &[0, 1], &[0, 1], Some(&bad), 2, &o)),
        format!(
            "invalid configuration: state has 3 + 0 values; this model with batch 2 needs {need} + 0"
        )
    );
    // f32 models are converted
    let mut m32 = LanguageModel::<f32>::zeros(m.config.clone()).unwrap();
    for (d, s) in m32.params_mut().iter_mut().zip(m.params()) {
        *d = *s as f32;
    }
    let s = analysis::snapshot(&m32, &[0, 1, 2, 3], &[1, 2, 3, 4], None, 2, &o).unwrap();
    assert_eq!(s.summary.bptt, 2);
}

fn run_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rnnscope"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("rnnscope_gradflow_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn cli_identity_acceptance() {
    let out = temp_dir("acceptance");
    let o = run_cli(&[
        "gradflow",
        "--cell",
        "rnn",
        "--activation",
        "identity",
        "--hidden",
        "64",
        "--init",
        "orthogonal",
        "--spectral-radius",
        "0.9",
        "--bptt",
        "128",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).expect("stdout is one JSON object");
    let err = v["theory_max_rel_error"].as_f64().unwrap();
    let decay = v["decay_per_step"].as_f64().unwrap();
    assert!(err <= 1e-6, "theory_max_rel_error {err}");
    assert!((decay - 0.9).abs() <= 0.005, "decay_per_step {decay}");
    for key in [
        "cell",
        "activation",
        "hidden",
        "layers",
        "bptt",
        "rho",
        "sigma_1",
        "gamma",
        "regime",
        "bound_per_step",
        "distance_below_1e-3",
        "distance_below_1e-6",
        "influence_seconds",
    ] {
        assert!(v.get(key).is_some(), "missing key {key}");
    }
    assert_eq!(v["cell"], "rnn");
    assert_eq!(v["activation"], "identity");
    assert_eq!(v["bptt"], 128);
    assert_eq!(v["regime"], "vanishing");
    // 0.9^l < 1e-3 first at l = 66
    assert_eq!(v["distance_below_1e-3"], 66);
    for f in [
        "gradflow.json",
        "profile_l0.csv",
        "influence_l0.csv",
        "eigenvalues_l0.csv",
        "singular_values_l0.csv",
        "jacobian_l0.csv",
    ] {
        assert!(out.join(f).is_file(), "{f} written");
    }
    let prof = std::fs::read_to_string(out.join("profile_l0.csv")).unwrap();
    // The input line, the header, one row per distance.
    assert_eq!(
        prof.lines().next(),
        Some("# input: random tokens: 16 windows of 128 tokens, seed 0")
    );
    assert_eq!(
        prof.lines().nth(1),
        Some("distance,mean,median,p10,p90,ratio")
    );
    assert_eq!(prof.lines().count(), 130);
    let infl = std::fs::read_to_string(out.join("influence_l0.csv")).unwrap();
    assert_eq!(infl.lines().count(), 129);
    assert!(infl.lines().skip(1).all(|l| l.split(',').count() == 128));
    let full: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("gradflow.json")).unwrap()).unwrap();
    assert_eq!(
        full["spectrum"][0]["gates"][0]["eigenvalues"]
            .as_array()
            .unwrap()
            .len(),
        64
    );
    assert_eq!(
        full["jacobian"][0]["products"].as_array().unwrap().len(),
        128
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn cli_checkpoint_corpus_and_errors() {
    let dir = temp_dir("ckpt");
    std::fs::create_dir_all(&dir).unwrap();
    let m = model(
        config(CellKind::Lstm, Activation::Tanh, 2, 8),
        InitScheme::Default,
        None,
        4,
    );
    let ck = dir.join("m.safetensors");
    rnnscope::checkpoint::save(&m, &ck, &Default::default()).unwrap();
    let corpus = dir.join("corpus.txt");
    std::fs::write(
        &corpus,
        "the quick brown fox jumps over the lazy dog. ".repeat(20),
    )
    .unwrap();
    let out = dir.join("out");
    let o = run_cli(&[
        "gradflow",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--bptt",
        "24",
        "--batch",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("lstm, H=8, layers=2")
            && text.contains("regime: gated")
            && text.contains("input: random tokens: 4 windows of 24 tokens, seed 0"),
        "{text}"
    );
    for f in [
        "profile_cell_l1.csv",
        "influence_cell_l0.csv",
        "jacobian_l1.csv",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // model flags conflict with a checkpoint; a short corpus is an error naming the file
    let o = run_cli(&[
        "gradflow",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--hidden",
        "8",
    ]);
    assert!(!o.status.success());
    // --text needs the checkpoint's vocabulary, which this one lacks
    let o = run_cli(&[
        "gradflow",
        "--checkpoint",
        ck.to_str().unwrap(),
        "--text",
        corpus.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("m.safetensors") && e.contains("no vocabulary"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn f32_sweep_agrees_with_f64() {
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        let m = model(
            config(cell, Activation::Tanh, 2, 12),
            InitScheme::Default,
            None,
            6,
        );
        let (steps, batch) = (40, 4);
        let inp = tokens(steps * batch, m.config.vocab, 1);
        let tgt = tokens(steps * batch, m.config.vocab, 2);
        let run = |precision| {
            let o = SnapshotOptions {
                precision,
                ..Default::default()
            };
            analysis::snapshot(&m, &inp, &tgt, None, batch, &o).unwrap()
        };
        let (a, b) = (run(analysis::Precision::F64), run(analysis::Precision::F32));
        assert_eq!(b.summary.precision, analysis::Precision::F32);
        for (pa, pb) in a.profiles.iter().zip(&b.profiles) {
            for (ra, rb) in pa.hidden.iter().zip(&pb.hidden) {
                if ra.ratio.unwrap() > 1e-20 {
                    assert!(
                        (ra.mean / rb.mean - 1.0).abs() < 1e-4,
                        "{cell:?} l {}: {} vs {}",
                        ra.distance,
                        ra.mean,
                        rb.mean
                    );
                }
            }
        }
        let (da, db) = (
            a.summary.decay_per_step.unwrap(),
            b.summary.decay_per_step.unwrap(),
        );
        assert!((da - db).abs() < 1e-4 * da, "{da} vs {db}");
        assert_eq!(a.jacobian, b.jacobian, "Jacobians stay in f64");
        assert_eq!(a.spectrum, b.spectrum);
    }
}

/// The one-step Jacobian the analysis uses (built from the cell's own backward step) equals a
/// finite-difference Jacobian of the same cell's forward step, for every cell and every RNN
/// activation, with random inputs and states: `|J - J_fd|_F <= 1e-7 |J|_F`.
#[test]
fn one_step_jacobian_of_every_cell_matches_finite_differences_of_its_forward_step() {
    let (steps, batch, h) = (4, 3, 5);
    for &kind in CellKind::ALL {
        let acts: &[Activation] = if kind == CellKind::Rnn {
            &[
                Activation::Tanh,
                Activation::Relu,
                Activation::Sigmoid,
                Activation::Identity,
            ]
        } else {
            &[Activation::Tanh]
        };
        for &act in acts {
            let c = config(kind, act, 1, h);
            let m = model(c.clone(), InitScheme::Uniform(0.7), None, 17);
            let inp = tokens(steps * batch, c.vocab, 8);
            let s0 = random_state(&c, batch, 9);
            let mut ws = Workspace::default();
            m.forward(&mut ws, &inp, &s0, steps, batch, None);
            let emb = m.layout.view(m.params(), "embedding.weight").unwrap();
            let sd = jacobian::state_dim(&c);
            let with_c = sd > h;
            for (t, b) in [(0, 0), (2, 1), (3, 2)] {
                let j = jacobian::one_step(&m, &ws.caches[0], 0, t, b);
                let tok = inp[t * batch + b] as usize;
                let x = &emb[tok * c.embedding..(tok + 1) * c.embedding];
                let cache = &ws.caches[0];
                let mut state = cache.h_at(t)[b * h..(b + 1) * h].to_vec();
                if with_c {
                    state.extend_from_slice(&cache.c_at(t)[b * h..(b + 1) * h]);
                }
                let step = |st: &[f64]| -> Vec<f64> {
                    let mut one = cell::LayerCache::default();
                    let c0: &[f64] = if with_c { &st[h..] } else { &[] };
                    cell::forward(
                        Cell {
                            kind,
                            activation: act,
                        },
                        &mut one,
                        cell::Input::Dense(x),
                        StateIo { h: &st[..h], c: c0 },
                        m.layer_params(0),
                        c.dims(0, 1, 1),
                    );
                    let mut out = one.h_at(1).to_vec();
                    out.extend_from_slice(one.c_at(1));
                    out
                };
                let eps = 1e-3;
                let (mut err, mut norm) = (0.0f64, 0.0f64);
                for q in 0..sd {
                    let f = |d: f64| {
                        let mut st = state.clone();
                        st[q] += d;
                        step(&st)
                    };
                    let (p1, m1, p2, m2) = (f(eps), f(-eps), f(2.0 * eps), f(-2.0 * eps));
                    for p in 0..sd {
                        let fd = (8.0 * (p1[p] - m1[p]) - (p2[p] - m2[p])) / (12.0 * eps);
                        err += (fd - j[p * sd + q]).powi(2);
                        norm += j[p * sd + q].powi(2);
                    }
                }
                let rel = err.sqrt() / norm.sqrt();
                assert!(
                    norm > 0.0,
                    "{kind:?} {act:?}: an all-zero Jacobian proves nothing"
                );
                assert!(
                    rel <= 1e-7,
                    "{kind:?} {act:?} t {t} b {b}: relative error {rel:e}"
                );
            }
        }
    }
}
