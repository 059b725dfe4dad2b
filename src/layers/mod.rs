//! Embedding, dropout and softmax cross-entropy: the non-recurrent pieces of a language model.

pub mod attention;

use crate::tensor::Float;
use rand::Rng;

/// `out[r, :] = table[tokens[r], :]`; `table [V, E]`, `out [N, E]`.
pub fn embedding_forward<T: Float>(out: &mut [T], table: &[T], tokens: &[u32], dim: usize) {
    for (row, &tok) in out.chunks_exact_mut(dim).zip(tokens) {
        let t = tok as usize;
        row.copy_from_slice(&table[t * dim..(t + 1) * dim]);
    }
}

/// `dtable[tokens[r], :] += dout[r, :]`.
pub fn embedding_backward<T: Float>(dtable: &mut [T], dout: &[T], tokens: &[u32], dim: usize) {
    for (row, &tok) in dout.chunks_exact(dim).zip(tokens) {
        let t = tok as usize;
        crate::tensor::add_assign(&mut dtable[t * dim..(t + 1) * dim], row);
    }
}

/// Fills `mask` with inverted-dropout factors: `0` with probability `p`, else `1 / (1 - p)`.
pub fn dropout_mask<T: Float, R: Rng>(mask: &mut [T], p: f64, rng: &mut R) {
    let keep = T::from_f64(1.0 / (1.0 - p));
    for m in mask.iter_mut() {
        *m = if rng.gen::<f64>() < p { T::ZERO } else { keep };
    }
}

/// `x *= mask` element-wise.
pub fn apply_mask<T: Float>(x: &mut [T], mask: &[T]) {
    for (x, &m) in x.iter_mut().zip(mask) {
        *x *= m;
    }
}

/// Numerically stable softmax cross-entropy, row by row, in place.
///
/// ```text
/// J_r = logsumexp(z_r) - z_r[y_r] = -ln softmax(z_r)[y_r]
/// ```
/// `logits [N, V]` is overwritten with the probabilities `softmax(z_r)` (what backward needs);
/// `losses [N]` receives `J_r` (in f64).
pub fn softmax_cross_entropy<T: Float>(
    logits: &mut [T],
    targets: &[u32],
    losses: &mut [f64],
    vocab: usize,
) {
    for ((row, &y), loss) in logits
        .chunks_exact_mut(vocab)
        .zip(targets)
        .zip(losses.iter_mut())
    {
        let max = row
            .iter()
            .fold(T::from_f64(f64::NEG_INFINITY), |m, &v| m.max(v));
        let z_y = (row[y as usize] - max).to_f64();
        let mut sum = T::ZERO;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        let inv = T::ONE / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
        // -ln(e^{z_y - max} / sum) = ln(sum) - (z_y - max), with sum >= 1.
        *loss = sum.to_f64().ln() - z_y;
    }
}

/// Turns probabilities into the logit gradient in place: `dz_r = w_r (p_r - onehot(y_r))`.
pub fn softmax_cross_entropy_backward<T: Float>(
    probs: &mut [T],
    targets: &[u32],
    weights: &[T],
    vocab: usize,
) {
    for ((row, &y), &w) in probs.chunks_exact_mut(vocab).zip(targets).zip(weights) {
        row[y as usize] -= T::ONE;
        for v in row.iter_mut() {
            *v *= w;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_is_stable_and_exact() {
        // Logits far outside exp's range still give the exact loss.
        let mut z = vec![1000.0f64, 0.0, -1000.0, 2.0, 1.0, 0.0];
        let mut loss = vec![0.0; 2];
        softmax_cross_entropy(&mut z, &[1, 0], &mut loss, 3);
        assert!((loss[0] - 1000.0).abs() < 1e-9);
        let lse = (2f64.exp() + 1f64.exp() + 1.0).ln();
        assert!((loss[1] - (lse - 2.0)).abs() < 1e-14);
        assert!((z[3..].iter().sum::<f64>() - 1.0).abs() < 1e-15);
    }

    #[test]
    fn dropout_mask_keeps_expected_fraction() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut m = vec![0.0f64; 100_000];
        dropout_mask(&mut m, 0.25, &mut rng);
        let kept = m.iter().filter(|&&v| v > 0.0).count() as f64 / m.len() as f64;
        assert!((kept - 0.75).abs() < 0.01, "kept {kept}");
        assert!(m.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-15));
    }
}
