//! Parameter initialisers.
//!
//! ```text
//! default      PyTorch: cell weights and biases U(-1/sqrt(H), 1/sqrt(H)), embedding N(0, 1),
//!              decoder U(-1/sqrt(H), 1/sqrt(H))
//! uniform:A    every parameter U(-A, A) (char-rnn uses 0.08)
//! xavier       cell weight blocks U(+-sqrt(6 / (fan_in + fan_out))), biases 0
//! orthogonal   W_hh blocks orthogonal (QR of a Gaussian, Saxe et al. 2014), biases 0
//! identity     W_hh blocks = I, biases 0 (IRNN, Le et al. 2015)
//! chrono:T     as default, then the gate biases of Tallec and Ollivier (2018) for dependencies
//!              up to T_MAX = T steps: LSTM forget bias b_f = ln u, u ~ U(1, T_MAX - 1), input
//!              bias b_i = -b_f; GRU update-gate bias b_z = ln u (z keeps h_{t-1}); other
//!              biases 0
//! ```
//! Attention weights (`attention.*`, shape `[out, in]`) start as `nn.Linear`'s,
//! U(-1/sqrt(in), 1/sqrt(in)), under every scheme but `uniform:A`.
//! Orthogonal recurrence (`W_hh = expm(A)`) initialises its generator: uniform schemes draw it
//! as they would `W_hh`; `identity` gives `A = 0` (`W_hh = I`); `orthogonal` gives the
//! block-diagonal rotations `[[0, -t], [t, 0]]`, `t ~ U(-pi, pi)` of Henaff et al. (2016), the
//! initialisation expRNN uses. modReLU biases start at U(-0.01, 0.01), as in expRNN.
//! `spectral_radius` rescales each `W_hh` gate block to that spectral radius; `forget_bias` sets
//! the LSTM forget-gate bias (`b_ih` block f; `b_hh` block f = 0; Gers et al. 2000, Jozefowicz 2015).

use crate::analysis::spectrum::spectral_radius;
use crate::cell::{CellKind, Recurrence};
use crate::error::{Error, Result};
use crate::model::LanguageModel;
use crate::tensor::Float;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// How recurrent weights start out.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitScheme {
    Default,
    Uniform(f64),
    Xavier,
    Orthogonal,
    Identity,
    /// Chrono gate biases for dependencies up to `T_MAX` steps.
    Chrono(f64),
}

impl InitScheme {
    /// Parses `default`, `uniform:A` (or `uniform`, A = 0.08), `xavier`, `orthogonal`,
    /// `identity`, `chrono:T_MAX`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::Config(format!(
                "unknown init `{s}`: use default, uniform:A, xavier, orthogonal, identity or chrono:T_MAX"
            ))
        };
        if let Some(t) = s.strip_prefix("chrono:") {
            return match t.parse::<f64>() {
                Ok(t) if t.is_finite() && t > 2.0 => Ok(InitScheme::Chrono(t)),
                _ => Err(Error::Config(format!(
                    "init `{s}`: chrono needs the longest dependency T_MAX, a number above 2 (e.g. chrono:200)"
                ))),
            };
        }
        Ok(match s {
            "default" | "pytorch" => InitScheme::Default,
            "uniform" => InitScheme::Uniform(0.08),
            "xavier" | "glorot" => InitScheme::Xavier,
            "orthogonal" => InitScheme::Orthogonal,
            "identity" | "irnn" => InitScheme::Identity,
            _ => match s.strip_prefix("uniform:") {
                Some(a) => match a.parse::<f64>() {
                    Ok(a) if a.is_finite() && a > 0.0 => InitScheme::Uniform(a),
                    _ => {
                        return Err(Error::Config(format!(
                            "init `{s}`: uniform needs a positive half-width A (e.g. uniform:0.08)"
                        )))
                    }
                },
                None => return Err(bad()),
            },
        })
    }

    pub fn name(&self) -> String {
        match self {
            InitScheme::Default => "default".into(),
            InitScheme::Uniform(a) => format!("uniform:{a}"),
            InitScheme::Xavier => "xavier".into(),
            InitScheme::Orthogonal => "orthogonal".into(),
            InitScheme::Identity => "identity".into(),
            InitScheme::Chrono(t) => format!("chrono:{t}"),
        }
    }
}

/// Full initialisation recipe.
#[derive(Clone, Debug, PartialEq)]
pub struct InitConfig {
    pub scheme: InitScheme,
    /// Rescale every `W_hh` gate block to this spectral radius.
    pub spectral_radius: Option<f64>,
    /// LSTM forget-gate bias.
    pub forget_bias: Option<f64>,
    pub seed: u64,
}

impl InitConfig {
    /// Checks the values a user gives: `spectral_radius` positive and finite, `forget_bias`
    /// finite (the scheme was checked when parsed).
    pub fn validate(&self) -> Result<()> {
        if let Some(r) = self.spectral_radius {
            if !(r.is_finite() && r > 0.0) {
                return Err(Error::Config(format!(
                    "`spectral_radius` = {r} must be a positive number (leave it out to keep the initial radius)"
                )));
            }
        }
        if let Some(b) = self.forget_bias {
            if !b.is_finite() {
                return Err(Error::Config(format!(
                    "`forget_bias` = {b} must be a finite number (e.g. 1)"
                )));
            }
        }
        Ok(())
    }
}

impl Default for InitConfig {
    fn default() -> Self {
        InitConfig {
            scheme: InitScheme::Default,
            spectral_radius: None,
            forget_bias: None,
            seed: 0,
        }
    }
}

fn uniform(rng: &mut StdRng, out: &mut [f64], a: f64) {
    for v in out {
        *v = rng.gen_range(-a..=a);
    }
}

/// A random `[n, n]` orthogonal matrix: QR (modified Gram-Schmidt) of a Gaussian matrix, which
/// gives the Haar distribution because the columns are normalised one by one (sign of R >= 0).
pub fn random_orthogonal(rng: &mut StdRng, n: usize) -> Vec<f64> {
    let mut q: Vec<f64> = (0..n * n).map(|_| StandardNormal.sample(rng)).collect();
    // Orthonormalise the rows (twice for full double precision).
    for i in 0..n {
        for _ in 0..2 {
            for j in 0..i {
                let dot: f64 = (0..n).map(|k| q[i * n + k] * q[j * n + k]).sum();
                for k in 0..n {
                    q[i * n + k] -= dot * q[j * n + k];
                }
            }
        }
        let norm = (0..n).map(|k| q[i * n + k].powi(2)).sum::<f64>().sqrt();
        for k in 0..n {
            q[i * n + k] /= norm;
        }
    }
    q
}

/// Initialises all parameters of `model` in place.
pub fn initialize<T: Float>(model: &mut LanguageModel<T>, init: &InitConfig) -> Result<()> {
    init.validate()?;
    let c = model.config.clone();
    let mut rng = StdRng::seed_from_u64(init.seed);
    let h = c.hidden;
    let gates = c.cell.gates();
    let k_h = 1.0 / (h as f64).sqrt();
    let layout = model.layout.clone();
    let mut p = vec![0.0f64; layout.total()];
    if c.proj_size > 0
        && (matches!(init.scheme, InitScheme::Orthogonal | InitScheme::Identity)
            || init.spectral_radius.is_some())
    {
        return Err(Error::Config(
            "`init` = orthogonal or identity and `spectral_radius` need square W_hh blocks, which an LSTM with `proj_size` does not have: use default, uniform:A, xavier or chrono".into(),
        ));
    }
    if let InitScheme::Chrono(_) = init.scheme {
        if !matches!(c.cell, CellKind::Lstm | CellKind::Gru) {
            return Err(Error::Config(format!(
                "`init` = chrono sets gate biases: it needs a gated cell (lstm or gru), not {}",
                c.cell.name()
            )));
        }
    }
    for e in layout.entries() {
        let block = &mut p[e.range()];
        let name = e.name.as_str();
        match init.scheme {
            _ if name.contains(".bias_modrelu_") => uniform(&mut rng, block, 0.01),
            _ if name.contains(".skew_hh_") && init.scheme == InitScheme::Identity => {
                block.fill(0.0)
            }
            _ if name.contains(".skew_hh_") && init.scheme == InitScheme::Orthogonal => {
                // Henaff et al. 2016: rotations by angles t ~ U(-pi, pi) in 2 x 2 blocks;
                // the generator's strictly lower triangle holds A[2i+1][2i] = t.
                block.fill(0.0);
                for i in 0..h / 2 {
                    block[(2 * i + 1) * h + 2 * i] =
                        rng.gen_range(-std::f64::consts::PI..std::f64::consts::PI);
                }
            }
            InitScheme::Uniform(a) => uniform(&mut rng, block, a),
            _ if name == "embedding.weight" => {
                for v in block.iter_mut() {
                    *v = StandardNormal.sample(&mut rng);
                }
            }
            _ if name.starts_with("decoder.") => uniform(&mut rng, block, k_h),
            // nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
            _ if name.starts_with("attention.") => {
                uniform(&mut rng, block, 1.0 / (e.shape[1] as f64).sqrt())
            }
            InitScheme::Default | InitScheme::Chrono(_) => uniform(&mut rng, block, k_h),
            InitScheme::Xavier => {
                if name.contains(".bias_") {
                    block.fill(0.0);
                } else {
                    let fan_in = e.shape[1];
                    let a = (6.0 / (fan_in + h) as f64).sqrt();
                    uniform(&mut rng, block, a);
                }
            }
            InitScheme::Orthogonal | InitScheme::Identity => {
                if name.contains(".bias_") {
                    block.fill(0.0);
                } else if name.contains("weight_hh") {
                    for g in 0..gates {
                        let b = &mut block[g * h * h..(g + 1) * h * h];
                        if init.scheme == InitScheme::Identity {
                            b.fill(0.0);
                            for i in 0..h {
                                b[i * h + i] = 1.0;
                            }
                        } else {
                            b.copy_from_slice(&random_orthogonal(&mut rng, h));
                        }
                    }
                } else {
                    uniform(&mut rng, block, k_h);
                }
            }
        }
    }
    for k in 0..c.layers {
        let w_hh = layout
            .get(&c.recurrent_param(k))
            .expect("layout has every layer");
        if let Some(rho) = init.spectral_radius {
            if c.recurrence == Recurrence::Orthogonal {
                return Err(Error::Config(
                    "`spectral_radius` cannot be set with orthogonal recurrence: every eigenvalue of its W_hh has modulus 1".into(),
                ));
            }
            if !(rho.is_finite() && rho >= 0.0) {
                return Err(Error::Config(format!(
                    "`spectral_radius` = {rho} must be a finite number >= 0"
                )));
            }
            for g in 0..gates {
                let r = w_hh.offset + g * h * h..w_hh.offset + (g + 1) * h * h;
                let current = spectral_radius(&p[r.clone()], h)?;
                if current == 0.0 {
                    return Err(Error::Config(
                        "cannot rescale a nilpotent W_hh to a spectral radius: choose another init"
                            .into(),
                    ));
                }
                for v in &mut p[r] {
                    *v *= rho / current;
                }
            }
        }
        if let (Some(fb), CellKind::Lstm) = (init.forget_bias, c.cell) {
            let b_ih = layout
                .get(&format!("rnn.bias_ih_l{k}"))
                .expect("layer bias");
            let b_hh = layout
                .get(&format!("rnn.bias_hh_l{k}"))
                .expect("layer bias");
            p[b_ih.offset + h..b_ih.offset + 2 * h].fill(fb);
            p[b_hh.offset + h..b_hh.offset + 2 * h].fill(0.0);
        }
        if let InitScheme::Chrono(t_max) = init.scheme {
            let b_ih = layout
                .get(&format!("rnn.bias_ih_l{k}"))
                .expect("layer bias");
            let b_hh = layout
                .get(&format!("rnn.bias_hh_l{k}"))
                .expect("layer bias");
            p[b_ih.range()].fill(0.0);
            p[b_hh.range()].fill(0.0);
            // The keeping gate is block 1 of both: LSTM i, f, g, o (b_f = ln u, b_i = -b_f);
            // GRU r, z, n (b_z = ln u).
            for j in 0..h {
                let b = rng.gen_range(1.0..t_max - 1.0f64).ln();
                p[b_ih.offset + h + j] = b;
                if c.cell == CellKind::Lstm {
                    p[b_ih.offset + j] = -b;
                }
            }
        }
    }
    for (dst, src) in model.params_mut().iter_mut().zip(&p) {
        *dst = T::from_f64(*src);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::Activation;
    use crate::model::ModelConfig;

    fn cfg(cell: CellKind) -> ModelConfig {
        ModelConfig {
            cell,
            activation: Activation::Tanh,
            vocab: 5,
            embedding: 4,
            hidden: 6,
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

    #[test]
    fn orthogonal_is_orthogonal() {
        let mut rng = StdRng::seed_from_u64(3);
        let n = 9;
        let q = random_orthogonal(&mut rng, n);
        for i in 0..n {
            for j in 0..n {
                let dot: f64 = (0..n).map(|k| q[i * n + k] * q[j * n + k]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-14);
            }
        }
    }

    #[test]
    fn spectral_radius_and_forget_bias_are_applied() {
        let mut m = LanguageModel::<f64>::zeros(cfg(CellKind::Lstm)).unwrap();
        let init = InitConfig {
            scheme: InitScheme::Default,
            spectral_radius: Some(0.7),
            forget_bias: Some(1.0),
            seed: 11,
        };
        initialize(&mut m, &init).unwrap();
        let w = m.layout.view(m.params(), "rnn.weight_hh_l1").unwrap();
        for g in 0..4 {
            let rho = spectral_radius(&w[g * 36..(g + 1) * 36], 6).unwrap();
            assert!((rho - 0.7).abs() < 1e-12);
        }
        let b = m.layout.view(m.params(), "rnn.bias_ih_l0").unwrap();
        assert!(b[6..12].iter().all(|&v| v == 1.0));
    }

    #[test]
    fn identity_init_and_seed_reproducibility() {
        let mut a = LanguageModel::<f32>::zeros(cfg(CellKind::Rnn)).unwrap();
        let init = InitConfig {
            scheme: InitScheme::Identity,
            ..Default::default()
        };
        initialize(&mut a, &init).unwrap();
        let w = a.layout.view(a.params(), "rnn.weight_hh_l0").unwrap();
        for i in 0..6 {
            for j in 0..6 {
                assert_eq!(w[i * 6 + j], if i == j { 1.0 } else { 0.0 });
            }
        }
        let mut b = LanguageModel::<f32>::zeros(cfg(CellKind::Rnn)).unwrap();
        initialize(&mut b, &init).unwrap();
        assert_eq!(a.params(), b.params());
        assert!(InitScheme::parse("uniform:0.1").unwrap() == InitScheme::Uniform(0.1));
        assert_eq!(
            InitScheme::parse("nonsense").unwrap_err().to_string(),
            "invalid configuration: unknown init `nonsense`: use default, uniform:A, xavier, orthogonal, identity or chrono:T_MAX"
        );
        for bad in ["uniform:x", "uniform:-1", "uniform:0", "uniform:nan"] {
            assert_eq!(
                InitScheme::parse(bad).unwrap_err().to_string(),
                format!("invalid configuration: init `{bad}`: uniform needs a positive half-width A (e.g. uniform:0.08)")
            );
        }
        assert_eq!(
            InitScheme::parse("chrono:200").unwrap(),
            InitScheme::Chrono(200.0)
        );
        for bad in ["chrono:2", "chrono:x", "chrono:inf"] {
            assert!(InitScheme::parse(bad)
                .unwrap_err()
                .to_string()
                .contains("chrono needs the longest dependency T_MAX, a number above 2"));
        }
    }
}
