//! Memory estimates, checked before large allocations so that an oversized model, window or
//! task is refused with the estimate instead of being killed by the operating system.
//!
//! ```text
//! limit      = RNNSCOPE_MEMORY_LIMIT (bytes, or with a K/M/G/T suffix: "8G"), else 90% of the
//!              machine's memory (MemTotal in /proc/meminfo, or the cgroup's memory.max if lower)
//! parameters ~ V*E + L*G*H*(I + H + 2) + H*V + V           (G gates, I the layer's input size)
//! training   ~ 6 * parameters * f                         (weights, gradients, two optimizer
//!                                                          moments, best copy, checkpoint)
//!            + T * B * (L * (G + 4) * H + E + 2 * V) * f * 2  (activations kept for BPTT)
//! ```
//! with `f` the bytes per float. Estimates are upper bounds to within a small factor, computed
//! in f64 so that absurd sizes cannot overflow.

use crate::error::{Error, Result};
use crate::model::ModelConfig;

/// Environment variable that overrides the limit.
pub const LIMIT_VAR: &str = "RNNSCOPE_MEMORY_LIMIT";

/// Parses `123`, `512M`, `8G`, `1.5T` (powers of 1024) into bytes.
pub fn parse_size(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_uppercase()),
        _ => (s, 'B'),
    };
    let scale = match unit {
        'B' => 1.0,
        'K' => 1024.0,
        'M' => 1024.0f64.powi(2),
        'G' => 1024.0f64.powi(3),
        'T' => 1024.0f64.powi(4),
        _ => return None,
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v > 0.0).then_some(v * scale)
}

/// The machine's memory in bytes: MemTotal, or the cgroup limit when lower.
fn machine_memory() -> Option<f64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let total = kb * 1024.0;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok());
    Some(cgroup.map_or(total, |c| c.min(total)))
}

/// The limit in bytes and where it comes from; `None` when there is none.
pub fn limit() -> Result<Option<(f64, String)>> {
    if let Ok(v) = std::env::var(LIMIT_VAR) {
        return match parse_size(&v) {
            Some(b) => Ok(Some((b, format!("{LIMIT_VAR}={v}")))),
            None => Err(Error::Config(format!(
                "{LIMIT_VAR}={v:?} is not a size: give bytes or a number with K, M, G or T (e.g. 8G)"
            ))),
        };
    }
    Ok(machine_memory().map(|m| (0.9 * m, "90% of this machine's memory".to_string())))
}

/// `bytes` as a short human size.
pub fn human(bytes: f64) -> String {
    const G: f64 = 1024.0 * 1024.0 * 1024.0;
    if bytes >= G {
        format!("{:.1} GiB", bytes / G)
    } else if bytes >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", bytes / 1024.0)
    }
}

/// Refuses `bytes` of memory for `what` when over the limit; `fix` says what to make smaller.
pub fn check(what: &str, bytes: f64, fix: &str) -> Result<()> {
    let Some((limit, source)) = limit()? else {
        return Ok(());
    };
    if bytes <= limit {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{what} needs about {}, more than the memory limit of {} ({source}): {fix}, or set {LIMIT_VAR} (e.g. {LIMIT_VAR}=64G) to allow more",
        human(bytes),
        human(limit)
    )))
}

/// Parameters of a model of `c` (f64: no overflow).
pub fn parameters(c: &ModelConfig) -> f64 {
    let (v, h, l) = (c.vocab as f64, c.hidden as f64, c.layers as f64);
    let g = c.cell.gates() as f64;
    let first = c.layer_input(0) as f64;
    let embedding = if c.input_size > 0 {
        0.0
    } else {
        v * c.embedding as f64
    };
    let extra = if c.cell().extra_param().is_some() {
        h
    } else {
        0.0
    };
    // h has P values with a projection (W_hh [G*H, P], W_hr [P, H]).
    let (p, proj) = (c.h_size() as f64, c.proj_size as f64);
    let cells = g * h * (first + p + 2.0)
        + (l - 1.0).max(0.0) * g * h * (2.0 * p + 2.0)
        + l * (extra + proj * h);
    let attention: f64 = c
        .attention
        .params(c.hidden)
        .iter()
        .map(|(_, shape)| shape.iter().map(|&n| n as f64).product::<f64>())
        .sum();
    let decoder = if c.tie { 0.0 } else { p * v };
    embedding + cells + attention + decoder + v
}

/// Bytes to train a model of `c` on windows of `steps` x `batch` with `float` bytes per value.
pub fn training_bytes(c: &ModelConfig, batch: usize, steps: usize, float: usize) -> f64 {
    let f = float as f64;
    let (h, l) = (c.hidden as f64, c.layers as f64);
    let per_token =
        l * (c.cell.gates() as f64 + 4.0) * h + c.layer_input(0) as f64 + 2.0 * c.vocab as f64;
    6.0 * parameters(c) * f + steps as f64 * batch as f64 * per_token * f * 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_powers_of_1024() {
        assert_eq!(parse_size("123"), Some(123.0));
        assert_eq!(parse_size("2K"), Some(2048.0));
        assert_eq!(parse_size("1.5g"), Some(1.5 * 1024.0 * 1024.0 * 1024.0));
        for bad in ["", "G", "-1G", "1X", "nan"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_parameter_estimate_is_the_model_layout() {
        use crate::cell::CellKind;
        for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
            let c = ModelConfig {
                cell,
                activation: crate::cell::Activation::Tanh,
                vocab: 11,
                embedding: 5,
                hidden: 7,
                layers: 3,
                dropout: 0.0,
                tie: false,
                input_size: 0,
                output: Default::default(),
                recurrence: Default::default(),
                residual: false,
                attention: Default::default(),
                attention_span: 0,
                proj_size: 0,
            };
            assert_eq!(parameters(&c), c.layout().total() as f64, "{cell:?}");
            if cell == CellKind::Lstm {
                let p = ModelConfig { proj_size: 3, ..c };
                assert_eq!(parameters(&p), p.layout().total() as f64, "projection");
            }
        }
    }
}
