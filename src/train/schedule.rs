//! Learning-rate schedules.
//!
//! ```text
//! constant              lr_s = lr
//! step:N[:G]            lr_s = lr * G^floor(s / N)                   (G = 0.5 by default)
//! plateau[:K[:P]]       lr_s = lr / K^d, d = number of decays: after P + 1 evaluations in a row
//!                       without a new best validation loss, d += 1   (K = 2, P = 0 by default;
//!                       Zaremba et al. 2014 and the PyTorch word LM example divide SGD's lr by 4)
//! cosine[:M]            lr_s = lr * (M + (1 - M) (1 + cos(pi s / S)) / 2) over the S steps of the run
//! ```
//! `s` counts updates from 0. A validation loss counts as a new best when it is below the best so
//! far by more than 1e-4 nats.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// A learning-rate schedule (see the module docs for the formulas).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    Constant,
    Step { every: u64, gamma: f64 },
    Plateau { factor: f64, patience: u32 },
    Cosine { min_fraction: f64 },
}

/// What a schedule remembers between evaluations (saved for `--resume`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// Product of the plateau decays so far (1 before the first).
    #[serde(with = "exact_f64")]
    pub scale: f64,
    /// Best validation loss seen (infinity before the first evaluation).
    #[serde(with = "exact_f64")]
    pub best: f64,
    /// Evaluations in a row without a new best.
    pub bad_evals: u32,
}

impl Default for ScheduleState {
    fn default() -> Self {
        ScheduleState {
            scale: 1.0,
            best: f64::INFINITY,
            bad_evals: 0,
        }
    }
}

/// Minimum improvement (nats) for a validation loss to count as a new best.
pub const IMPROVEMENT: f64 = 1e-4;

impl Schedule {
    /// Parses `constant`, `step:N[:G]`, `plateau[:K[:P]]`, `cosine[:M]`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::Config(format!(
                "schedule `{s}`: {why}; use constant, step:N[:GAMMA], plateau[:K[:PATIENCE]] or cosine[:MIN_FRACTION]"
            ))
        };
        let mut parts = s.split(':');
        let name = parts.next().unwrap_or("");
        let args: Vec<&str> = parts.collect();
        let num = |i: usize, default: Option<f64>| -> Result<f64> {
            match args.get(i) {
                Some(a) => a
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| bad(&format!("`{a}` is not a number"))),
                None => default.ok_or_else(|| bad("missing a number")),
            }
        };
        let max_args = |n: usize| {
            if args.len() > n {
                Err(bad("too many `:` parts"))
            } else {
                Ok(())
            }
        };
        let sched = match name {
            "constant" => {
                max_args(0)?;
                Schedule::Constant
            }
            "step" => {
                max_args(2)?;
                let every = num(0, None)?;
                let gamma = num(1, Some(0.5))?;
                if every < 1.0 || every.fract() != 0.0 {
                    return Err(bad(
                        "N (updates between decays) must be a whole number >= 1",
                    ));
                }
                if !(gamma > 0.0 && gamma <= 1.0) {
                    return Err(bad("GAMMA must be in (0, 1]"));
                }
                Schedule::Step {
                    every: every as u64,
                    gamma,
                }
            }
            "plateau" => {
                max_args(2)?;
                let factor = num(0, Some(2.0))?;
                let patience = num(1, Some(0.0))?;
                if factor < 1.0 {
                    return Err(bad("K (the divisor) must be >= 1"));
                }
                if patience < 0.0 || patience.fract() != 0.0 {
                    return Err(bad("PATIENCE must be a whole number >= 0"));
                }
                Schedule::Plateau {
                    factor,
                    patience: patience as u32,
                }
            }
            "cosine" => {
                max_args(1)?;
                let min_fraction = num(0, Some(0.0))?;
                if !(0.0..=1.0).contains(&min_fraction) {
                    return Err(bad("MIN_FRACTION must be in [0, 1]"));
                }
                Schedule::Cosine { min_fraction }
            }
            _ => return Err(bad("unknown name")),
        };
        Ok(sched)
    }

    /// The canonical spelling (parses back to the same schedule).
    pub fn name(&self) -> String {
        match *self {
            Schedule::Constant => "constant".into(),
            Schedule::Step { every, gamma } => format!("step:{every}:{gamma}"),
            Schedule::Plateau { factor, patience } => format!("plateau:{factor}:{patience}"),
            Schedule::Cosine { min_fraction } => format!("cosine:{min_fraction}"),
        }
    }

    /// Learning rate of update `step` (0-based) of a run of `total` updates.
    pub fn lr(&self, base: f64, step: u64, total: u64, state: &ScheduleState) -> f64 {
        let shape = match *self {
            Schedule::Constant | Schedule::Plateau { .. } => 1.0,
            Schedule::Step { every, gamma } => {
                gamma.powi((step / every).min(i32::MAX as u64) as i32)
            }
            Schedule::Cosine { min_fraction } => {
                let x = (step as f64 / total.max(1) as f64).min(1.0);
                min_fraction + (1.0 - min_fraction) * 0.5 * (1.0 + (std::f64::consts::PI * x).cos())
            }
        };
        base * state.scale * shape
    }

    /// Records a validation loss; returns the new scale when the plateau schedule decays.
    pub fn observe(&self, state: &mut ScheduleState, valid_loss: f64) -> Option<f64> {
        if valid_loss.is_finite() && valid_loss < state.best - IMPROVEMENT {
            state.best = valid_loss;
            state.bad_evals = 0;
            return None;
        }
        state.bad_evals += 1;
        if let Schedule::Plateau { factor, patience } = *self {
            if state.bad_evals > patience {
                state.bad_evals = 0;
                state.scale /= factor;
                return Some(state.scale);
            }
        }
        None
    }
}

/// Serialises an `f64` as its shortest round-trip decimal string (`"0.002"`, `"inf"`), so
/// JSON keeps it bit for bit (serde_json's own float parsing may be off by one ulp).
pub mod exact_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a number")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_name_round_trip() {
        for s in ["constant", "step:100:0.5", "plateau:4:1", "cosine:0.1"] {
            let p = Schedule::parse(s).unwrap();
            assert_eq!(p.name(), s);
            assert_eq!(Schedule::parse(&p.name()).unwrap(), p);
        }
        assert_eq!(
            Schedule::parse("plateau").unwrap(),
            Schedule::Plateau {
                factor: 2.0,
                patience: 0
            }
        );
        for (bad, why) in [
            ("", "unknown name"),
            ("linear", "unknown name"),
            ("step", "missing a number"),
            (
                "step:0",
                "N (updates between decays) must be a whole number >= 1",
            ),
            ("step:10:2", "GAMMA must be in (0, 1]"),
            ("plateau:0.5", "K (the divisor) must be >= 1"),
            ("cosine:x", "`x` is not a number"),
            ("constant:1", "too many `:` parts"),
        ] {
            let e = Schedule::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("schedule `{bad}`: {why}; use constant")),
                "{e}"
            );
        }
    }

    #[test]
    fn step_and_cosine_follow_their_formulas() {
        let st = ScheduleState::default();
        let s = Schedule::parse("step:10:0.5").unwrap();
        assert_eq!(s.lr(1.0, 9, 100, &st), 1.0);
        assert_eq!(s.lr(1.0, 10, 100, &st), 0.5);
        assert_eq!(s.lr(1.0, 25, 100, &st), 0.25);
        let c = Schedule::parse("cosine:0.1").unwrap();
        assert!((c.lr(2.0, 0, 100, &st) - 2.0).abs() < 1e-15);
        assert!((c.lr(2.0, 50, 100, &st) - 2.0 * 0.55).abs() < 1e-15);
        assert!((c.lr(2.0, 100, 100, &st) - 0.2).abs() < 1e-15);
    }

    #[test]
    fn plateau_divides_after_patience_bad_evaluations() {
        let s = Schedule::parse("plateau:4:1").unwrap();
        let mut st = ScheduleState::default();
        assert_eq!(s.observe(&mut st, 2.0), None);
        assert_eq!(s.observe(&mut st, 1.5), None);
        assert_eq!(s.observe(&mut st, 1.6), None); // one bad evaluation: patience 1
        assert_eq!(s.observe(&mut st, 1.49995), Some(0.25)); // not better by 1e-4: decay
        assert_eq!(s.lr(1.0, 0, 1, &st), 0.25);
        assert_eq!(s.observe(&mut st, 1.4), None);
        assert_eq!(st.best, 1.4);
        let json = serde_json::to_string(&st).unwrap();
        assert_eq!(serde_json::from_str::<ScheduleState>(&json).unwrap(), st);
    }
}
