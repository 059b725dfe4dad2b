//! Batching for truncated-BPTT language modelling.
//!
//! ```text
//! stream  w_0 w_1 ... w_{N-1}                    cols = (N - 1) / B,  windows = cols / bptt
//! column b = w[b*cols .. b*cols + cols]           (targets shifted by one)
//! window k: inputs[t][b] = w[b*cols + k*bptt + t], targets[t][b] = w[b*cols + k*bptt + t + 1]
//! ```
//! The B columns are read in parallel, window after window, so the hidden state at the end of
//! window k is the right initial state for window k + 1 of the same column: the trainer carries
//! it over, detached (the gradient stops at the window edge). The tail shorter than one window is
//! not trained on; at the end of an epoch the state is reset and reading starts again at window 0.

use crate::error::{Error, Result};

/// A token stream cut into `batch` columns and windows of `bptt` steps.
#[derive(Clone, Copy, Debug)]
pub struct Batches<'a> {
    stream: &'a [u32],
    pub batch: usize,
    pub bptt: usize,
    /// Input positions per column.
    pub cols: usize,
    /// Full windows per epoch.
    pub windows: usize,
}

impl<'a> Batches<'a> {
    /// `name` (a file name) goes into the error when the stream is shorter than one window.
    pub fn new(stream: &'a [u32], batch: usize, bptt: usize, name: &str) -> Result<Self> {
        if batch == 0 || bptt == 0 {
            return Err(Error::Config(format!(
                "`batch` = {batch} and `bptt` = {bptt} must both be at least 1"
            )));
        }
        let need = batch * bptt + 1;
        if stream.len() < need {
            return Err(Error::Data(format!(
                "{name}: {} tokens is shorter than one batch window (batch {batch} x bptt {bptt} + 1 = {need} tokens): use a longer corpus or lower --batch/--bptt",
                stream.len()
            )));
        }
        let cols = (stream.len() - 1) / batch;
        Ok(Batches {
            stream,
            batch,
            bptt,
            cols,
            windows: cols / bptt,
        })
    }

    /// Fills `inputs` and `targets` (`[bptt, batch]`, time-major) with window `k` of an epoch.
    pub fn window(&self, k: usize, inputs: &mut [u32], targets: &mut [u32]) {
        assert!(k < self.windows, "window {k} of {}", self.windows);
        let (b_n, t_n) = (self.batch, self.bptt);
        assert_eq!(inputs.len(), b_n * t_n);
        assert_eq!(targets.len(), b_n * t_n);
        for b in 0..b_n {
            let start = b * self.cols + k * t_n;
            let col = &self.stream[start..start + t_n + 1];
            for t in 0..t_n {
                inputs[t * b_n + b] = col[t];
                targets[t * b_n + b] = col[t + 1];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_and_windows_follow_the_stream() {
        let stream: Vec<u32> = (0..23).collect();
        let b = Batches::new(&stream, 2, 3, "s").unwrap();
        assert_eq!((b.cols, b.windows), (11, 3));
        let (mut x, mut y) = (vec![0; 6], vec![0; 6]);
        b.window(1, &mut x, &mut y);
        // Column 0 starts at 0, column 1 at 11; window 1 starts 3 further.
        assert_eq!(x, vec![3, 14, 4, 15, 5, 16]);
        assert_eq!(y, vec![4, 15, 5, 16, 6, 17]);
        // Consecutive windows of a column are contiguous: the carried state lines up.
        b.window(2, &mut x, &mut y);
        assert_eq!(x[0], 6);
    }

    #[test]
    fn too_short_a_stream_names_the_window_size() {
        let stream = vec![0u32; 80];
        let e = Batches::new(&stream, 32, 64, "corpus.txt")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "corpus.txt: 80 tokens is shorter than one batch window (batch 32 x bptt 64 + 1 = 2049 tokens): use a longer corpus or lower --batch/--bptt"
        );
        assert!(Batches::new(&vec![0u32; 2049], 32, 64, "c").is_ok());
    }
}
