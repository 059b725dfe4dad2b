//! Time-major buffers `[steps, batch, width]` shared by threads that each own a block of batch
//! rows for a whole pass.
//!
//! Batch rows of a recurrent pass are independent through time, so each thread can run every
//! time step on its own rows with no synchronisation per step ([`for_each_row_block`]). The
//! views here make that safe: [`RowsMut::take`] splits a buffer's rows the way `split_at_mut`
//! splits a slice, so two threads never hold the same element, and within one thread a view
//! hands out one step's rows at a time (`at`), or two different steps (`pair`), each borrowed
//! from the view. This module holds the only `unsafe` of the recurrent passes.

use std::marker::PhantomData;
use std::ops::Range;

/// A mutable time-major buffer `[steps, batch, width]` restricted to a block of batch rows.
pub struct RowsMut<'a, T> {
    ptr: *mut T,
    steps: usize,
    batch: usize,
    width: usize,
    rows: Range<usize>,
    _buf: PhantomData<&'a mut [T]>,
}

// SAFETY: a `RowsMut` is a `&mut [T]` restricted to its rows; views made by `take` cover
// disjoint rows of every step, so sending one to another thread shares no element.
unsafe impl<T: Send> Send for RowsMut<'_, T> {}

impl<'a, T> RowsMut<'a, T> {
    /// All rows of `buf`, which holds whole steps of `batch * width` values.
    pub fn new(buf: &'a mut [T], batch: usize, width: usize) -> Self {
        let step = batch * width;
        assert!(
            buf.len().is_multiple_of(step),
            "RowsMut: {} values are not whole steps of {batch} x {width}",
            buf.len()
        );
        RowsMut {
            ptr: buf.as_mut_ptr(),
            steps: buf.len().checked_div(step).unwrap_or(0),
            batch,
            width,
            rows: 0..batch,
            _buf: PhantomData,
        }
    }

    /// Number of batch rows in this view.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// Splits off the first `n` rows of this view (every step), keeping the rest.
    pub fn take(&mut self, n: usize) -> Self {
        assert!(
            n <= self.rows.len(),
            "RowsMut::take: {n} rows of {}",
            self.rows.len()
        );
        let first = self.rows.start..self.rows.start + n;
        self.rows.start += n;
        RowsMut {
            ptr: self.ptr,
            steps: self.steps,
            batch: self.batch,
            width: self.width,
            rows: first,
            _buf: PhantomData,
        }
    }

    /// Element range of this view's rows at step `t` (empty for an empty buffer: a cell that
    /// does not keep this buffer reads nothing from it).
    fn span(&self, t: usize) -> Range<usize> {
        if self.steps == 0 {
            return 0..0;
        }
        assert!(t < self.steps, "RowsMut: step {t} of {}", self.steps);
        let start = (t * self.batch + self.rows.start) * self.width;
        start..start + self.rows.len() * self.width
    }

    /// This view's rows of step `t`, `[rows, width]`.
    pub fn at(&mut self, t: usize) -> &mut [T] {
        let s = self.span(t);
        // SAFETY: `span` is inside the buffer (asserted) and inside this view's rows, which no
        // other view holds; the slice borrows `self` mutably, so no other slice of this view
        // is alive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(s.start), s.len()) }
    }

    /// This view's rows of step `t` (read) and of step `t + 1` (written).
    pub fn pair(&mut self, t: usize) -> (&[T], &mut [T]) {
        let (a, b) = (self.span(t), self.span(t + 1));
        // SAFETY: as in `at`; the two spans belong to different steps, so they are disjoint.
        unsafe {
            (
                std::slice::from_raw_parts(self.ptr.add(a.start), a.len()),
                std::slice::from_raw_parts_mut(self.ptr.add(b.start), b.len()),
            )
        }
    }
}

/// A read-only time-major buffer `[steps, batch, width]` restricted to a block of batch rows.
#[derive(Clone, Copy)]
pub struct Rows<'a, T> {
    buf: &'a [T],
    batch: usize,
    width: usize,
    rows: (usize, usize),
}

impl<'a, T> Rows<'a, T> {
    pub fn new(buf: &'a [T], batch: usize, width: usize) -> Self {
        Rows {
            buf,
            batch,
            width,
            rows: (0, batch),
        }
    }

    /// Splits off the first `n` rows of this view, keeping the rest.
    pub fn take(&mut self, n: usize) -> Self {
        let (start, end) = self.rows;
        assert!(start + n <= end, "Rows::take: {n} rows of {}", end - start);
        self.rows.0 += n;
        Rows {
            rows: (start, start + n),
            ..*self
        }
    }

    /// This view's rows of step `t`, `[rows, width]` (empty for an empty buffer).
    pub fn at(&self, t: usize) -> &'a [T] {
        if self.buf.is_empty() {
            return &[];
        }
        let (start, end) = self.rows;
        let base = t * self.batch;
        &self.buf[(base + start) * self.width..(base + end) * self.width]
    }
}

/// Views that split by batch rows, so that [`for_each_row_block`] can hand each thread its part.
pub trait SplitRows: Sized {
    /// Splits off the first `n` batch rows of every buffer in `self`.
    fn take(&mut self, n: usize) -> Self;
}

impl<T> SplitRows for RowsMut<'_, T> {
    fn take(&mut self, n: usize) -> Self {
        RowsMut::take(self, n)
    }
}

impl<T> SplitRows for Rows<'_, T> {
    fn take(&mut self, n: usize) -> Self {
        Rows::take(self, n)
    }
}

impl<S: SplitRows> SplitRows for Option<S> {
    fn take(&mut self, n: usize) -> Self {
        self.as_mut().map(|s| s.take(n))
    }
}

macro_rules! split_tuple {
    ($($s:ident $i:tt),+) => {
        impl<$($s: SplitRows),+> SplitRows for ($($s,)+) {
            fn take(&mut self, n: usize) -> Self {
                ($(self.$i.take(n),)+)
            }
        }
    };
}
split_tuple!(A 0, B 1);
split_tuple!(A 0, B 1, C 2);
split_tuple!(A 0, B 1, C 2, D 3);
split_tuple!(A 0, B 1, C 2, D 3, E 4);
split_tuple!(A 0, B 1, C 2, D 3, E 4, F 5);
split_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
split_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

/// Runs `f` on blocks of the `batch` rows of `views` in parallel, one block per GEMM thread,
/// each for a whole pass. The arithmetic per row is the same as on one thread, so the results
/// are identical for any thread count. Batches under 16 rows stay on one thread.
pub fn for_each_row_block<S: SplitRows + Send>(batch: usize, mut views: S, f: impl Fn(S) + Sync) {
    let threads = super::gemm_threads();
    let blocks = if threads > 1 && batch >= 16 {
        threads.min(batch / 8)
    } else {
        1
    };
    if blocks == 1 {
        return f(views);
    }
    let size = |i: usize| batch * (i + 1) / blocks - batch * i / blocks;
    rayon::scope(|s| {
        let f = &f;
        let first = views.take(size(0));
        for i in 1..blocks {
            let block = views.take(size(i));
            s.spawn(move |_| f(block));
        }
        f(first);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_every_row_once() {
        // [steps 3, batch 20, width 2]; each block writes its row numbers.
        let mut buf = vec![0usize; 3 * 20 * 2];
        let before = crate::tensor::gemm_threads();
        crate::tensor::set_gemm_threads(3);
        let counter = std::sync::atomic::AtomicUsize::new(0);
        for_each_row_block(20, RowsMut::new(&mut buf, 20, 2), |mut v| {
            let id = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            for t in 0..3 {
                for x in v.at(t) {
                    *x += id;
                }
            }
        });
        crate::tensor::set_gemm_threads(before);
        assert_eq!(
            counter.into_inner(),
            2,
            "20 rows on 3 threads: 2 blocks of >= 8 rows"
        );
        for step in buf.chunks(40) {
            // every element written exactly once, rows 0..10 by one block, 10..20 by the other
            assert!(step[..20].iter().all(|&x| x == step[0]) && step[0] > 0);
            assert!(step[20..].iter().all(|&x| x == step[20]) && step[20] > 0);
            assert_ne!(step[0], step[20]);
        }
    }

    #[test]
    fn pair_and_read_views_address_the_right_rows() {
        let mut buf: Vec<u32> = (0..2 * 4 * 3).collect();
        let mut v = RowsMut::new(&mut buf, 4, 3);
        let _first = v.take(1);
        let mut rest = v.take(2);
        let (prev, next) = rest.pair(0);
        assert_eq!(prev, &[3, 4, 5, 6, 7, 8]);
        assert_eq!(next, &[15, 16, 17, 18, 19, 20]);
        let data: Vec<u32> = (0..2 * 4 * 3).collect();
        let mut r = Rows::new(&data, 4, 3);
        r.take(3);
        assert_eq!(r.at(1), &[21, 22, 23]);
    }
}
