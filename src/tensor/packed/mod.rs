//! A right-hand GEMM operand packed once and multiplied many times: the recurrent weight of a
//! layer is the same for every time step, so `C (+)= A B` with a fixed `B` runs `T` times per
//! pass. A general GEMM repacks `B` on every call (17% of an LSTM step in a profile); packing it
//! once per pass leaves only the multiply.
//!
//! Layout: `B [k, n]` is cut into column panels of `NR` columns; panel `p` holds
//! `B[0..k, NR p..NR (p+1)]` as `k` consecutive rows of `NR` values (the last panel
//! zero-padded), so a micro-kernel streams one panel linearly while it keeps an `MR x NR` tile
//! of `C` in registers:
//!
//! ```text
//! path     registers         NR   MR   accumulators
//! avx512   32 x 512-bit      32   12   24
//! avx2     16 x 256-bit      16    6   12
//! generic  B kept row-major, multiplied by the `gemm` crate (`matmul_on`)
//! ```
//!
//! The path is chosen when `B` is packed: the fastest the CPU runs (f32 only; f64 always takes
//! the generic path), or the one forced by `RNNSCOPE_KERNEL` or [`set_kernel`]. All paths
//! agree to f32 rounding.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use super::{matmul_on, resize, Float, Trans};
use crate::error::{Error, Result};
use std::any::TypeId;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// Which micro-kernel multiplies a [`PackedRhs`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelPath {
    /// 512-bit AVX-512F kernel.
    Avx512,
    /// 256-bit AVX2/FMA kernel.
    Avx2,
    /// No packed kernel: `B` as a row-major copy, multiplied by the `gemm` crate.
    Generic,
}

impl KernelPath {
    /// Every path, fastest first.
    pub const ALL: [KernelPath; 3] = [KernelPath::Avx512, KernelPath::Avx2, KernelPath::Generic];

    /// `avx512`, `avx2` or `generic` (the values of `RNNSCOPE_KERNEL`).
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Avx512 => "avx512",
            KernelPath::Avx2 => "avx2",
            KernelPath::Generic => "generic",
        }
    }

    /// The path called `name` (see [`KernelPath::name`]).
    pub fn from_name(name: &str) -> Option<KernelPath> {
        KernelPath::ALL.into_iter().find(|p| p.name() == name)
    }

    /// What this CPU lacks to run the path (`None`: it can run it).
    pub fn missing(self) -> Option<&'static str> {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                KernelPath::Avx512
                    if !(std::arch::is_x86_feature_detected!("avx512f")
                        && super::has_avx2_fma()) =>
                {
                    Some("AVX-512F")
                }
                KernelPath::Avx2 if !super::has_avx2_fma() => Some("AVX2 and FMA"),
                _ => None,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            match self {
                KernelPath::Generic => None,
                _ => Some("x86-64"),
            }
        }
    }

    /// The fastest path this CPU runs.
    pub fn best() -> KernelPath {
        KernelPath::ALL
            .into_iter()
            .find(|p| p.missing().is_none())
            .unwrap_or(KernelPath::Generic)
    }

    /// The names of the paths this CPU runs, for error messages.
    fn runnable() -> String {
        let names: Vec<&str> = KernelPath::ALL
            .into_iter()
            .filter(|p| p.missing().is_none())
            .map(KernelPath::name)
            .collect();
        names.join(", ")
    }

    /// `Ok` when this CPU runs the path, else why not.
    fn check(self) -> std::result::Result<KernelPath, String> {
        match self.missing() {
            None => Ok(self),
            Some(lack) => Err(format!(
                "kernel path {} cannot run here: this CPU lacks {lack}; it runs {}",
                self.name(),
                KernelPath::runnable()
            )),
        }
    }
}

/// `KernelPath as u8 + 1` of a path forced by [`set_kernel`]; 0 when none is.
static FORCED: AtomicU8 = AtomicU8::new(0);

/// The environment variable that forces a kernel path for the whole process.
pub const KERNEL_ENV: &str = "RNNSCOPE_KERNEL";

/// The path `RNNSCOPE_KERNEL` asks for (read once per process), or the fastest the CPU runs
/// when it is unset or empty. An unknown name, or a path the CPU cannot run, is an error.
pub fn kernel_from_env() -> Result<KernelPath> {
    static FROM_ENV: OnceLock<std::result::Result<KernelPath, String>> = OnceLock::new();
    FROM_ENV
        .get_or_init(|| parse_kernel_env(&std::env::var(KERNEL_ENV).unwrap_or_default()))
        .clone()
        .map_err(Error::Config)
}

/// The path named by a value of `RNNSCOPE_KERNEL` (empty: the fastest the CPU runs).
fn parse_kernel_env(value: &str) -> std::result::Result<KernelPath, String> {
    if value.is_empty() {
        return Ok(KernelPath::best());
    }
    let path = KernelPath::from_name(value).ok_or_else(|| {
        format!(
            "{KERNEL_ENV}=`{value}` names no kernel path; use one of {} or unset it",
            KernelPath::runnable()
        )
    })?;
    path.check()
        .map_err(|e| format!("{KERNEL_ENV}={value}: {e}"))
}

/// Forces the kernel path of every [`PackedRhs`] packed from now on, process-wide (tests and
/// benchmarks); refused, with nothing changed, when the CPU cannot run it.
pub fn set_kernel(path: KernelPath) -> Result<()> {
    path.check().map_err(Error::Config)?;
    FORCED.store(path as u8 + 1, Ordering::Relaxed);
    Ok(())
}

/// The kernel path f32 products use when packed now: the one forced by [`set_kernel`], else by
/// `RNNSCOPE_KERNEL`, else the fastest the CPU runs.
///
/// # Panics
/// When `RNNSCOPE_KERNEL` is invalid and no path was forced; the command line checks it with
/// [`kernel_from_env`] before anything else runs.
pub fn kernel_path() -> KernelPath {
    match FORCED.load(Ordering::Relaxed) {
        0 => kernel_from_env().unwrap_or_else(|e| panic!("{e}")),
        forced => KernelPath::ALL[usize::from(forced - 1)],
    }
}

/// A matrix `B [k, n]` held ready for repeated products `C [m, n] (+)= A [m, k] B`.
#[derive(Debug)]
pub struct PackedRhs<T> {
    data: Vec<T>,
    k: usize,
    n: usize,
    /// The kernel `data` is laid out for: panels of [`panel_width`] columns, or (generic) a
    /// row-major copy.
    path: KernelPath,
}

impl<T> Default for PackedRhs<T> {
    fn default() -> Self {
        PackedRhs {
            data: Vec::new(),
            k: 0,
            n: 0,
            path: KernelPath::Generic,
        }
    }
}

/// Columns per panel of `path` (0: not packed in panels).
fn panel_width(path: KernelPath) -> usize {
    match path {
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx512 => avx512::NR,
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 => avx2::NR,
        _ => 0,
    }
}

impl<T: Float> PackedRhs<T> {
    /// Packs `op(b)` (`b` stored `[k, n]`, or `[n, k]` with `Trans::Yes`) for [`kernel_path`]
    /// (f32) or the generic path (f64), reusing the buffer.
    pub fn pack(&mut self, b: &[T], tb: Trans, k: usize, n: usize) {
        let path = if is_f32::<T>() {
            kernel_path()
        } else {
            KernelPath::Generic
        };
        self.pack_for(path, b, tb, k, n);
    }

    /// [`PackedRhs::pack`] for the given path; refused when the CPU cannot run it, or when it
    /// is a packed kernel and `T` is not f32.
    pub fn pack_with(
        &mut self,
        path: KernelPath,
        b: &[T],
        tb: Trans,
        k: usize,
        n: usize,
    ) -> Result<()> {
        path.check().map_err(Error::Config)?;
        if path != KernelPath::Generic && !is_f32::<T>() {
            return Err(Error::Config(format!(
                "kernel path {} multiplies f32 only, not {}",
                path.name(),
                T::NAME
            )));
        }
        self.pack_for(path, b, tb, k, n);
        Ok(())
    }

    /// The kernel path this matrix was packed for, which [`PackedRhs::matmul`] runs.
    pub fn path(&self) -> KernelPath {
        self.path
    }

    fn pack_for(&mut self, path: KernelPath, b: &[T], tb: Trans, k: usize, n: usize) {
        assert_eq!(b.len(), k * n, "pack: B must hold k * n values");
        self.k = k;
        self.n = n;
        self.path = path;
        let at = |row: usize, col: usize| match tb {
            Trans::No => b[row * n + col],
            Trans::Yes => b[col * k + row],
        };
        let nr = panel_width(path);
        if nr > 0 {
            let panels = n.div_ceil(nr);
            resize(&mut self.data, panels * k * nr);
            for (p, panel) in self.data.chunks_exact_mut(k * nr).enumerate() {
                let (first, cols) = (p * nr, nr.min(n - p * nr));
                match tb {
                    // Row `row` of the panel is a contiguous piece of row `row` of `b`.
                    Trans::No => {
                        for (row, out) in panel.chunks_exact_mut(nr).enumerate() {
                            out[..cols].copy_from_slice(&b[row * n + first..][..cols]);
                            out[cols..].fill(T::ZERO);
                        }
                    }
                    // Column `j` of the panel is row `first + j` of `b`: read it in order and
                    // write it down the panel (which is small enough to stay in cache).
                    Trans::Yes => {
                        for j in 0..nr {
                            let column = panel[j..].iter_mut().step_by(nr);
                            if j < cols {
                                for (o, &x) in column.zip(&b[(first + j) * k..][..k]) {
                                    *o = x;
                                }
                            } else {
                                column.for_each(|o| *o = T::ZERO);
                            }
                        }
                    }
                }
            }
        } else {
            resize(&mut self.data, k * n);
            match tb {
                Trans::No => self.data.copy_from_slice(b),
                Trans::Yes => {
                    for (row, out) in self.data.chunks_exact_mut(n).enumerate() {
                        for (col, o) in out.iter_mut().enumerate() {
                            *o = at(row, col);
                        }
                    }
                }
            }
        }
    }

    /// `C = A B` (or `C += A B` when `accumulate`) on the calling thread; `A [m, k]`, `C [m, n]`.
    pub fn matmul(&self, c: &mut [T], a: &[T], m: usize, accumulate: bool) {
        let (k, n) = (self.k, self.n);
        assert_eq!(a.len(), m * k, "packed matmul: A must be [m, k]");
        assert_eq!(c.len(), m * n, "packed matmul: C must be [m, n]");
        match self.path {
            KernelPath::Generic => matmul_on(
                c,
                a,
                Trans::No,
                &self.data,
                Trans::No,
                m,
                n,
                k,
                accumulate,
                1,
            ),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `pack_for` sets a packed path only for f32 (so the casts are exact) on a
            // CPU that runs it (`kernel_path` and `pack_with` check `missing`); the asserts
            // above and `pack_for` fix every length the kernel indexes.
            KernelPath::Avx512 => unsafe {
                avx512::matmul(cast_mut(c), cast(a), cast(&self.data), m, n, k, accumulate)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as for the AVX-512 path.
            KernelPath::Avx2 => unsafe {
                avx2::matmul(cast_mut(c), cast(a), cast(&self.data), m, n, k, accumulate)
            },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("packed kernels are never selected off x86-64"),
        }
    }
}

fn is_f32<T: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<f32>()
}

/// Views a `[T]` as `[f32]`; only called once `T` is known to be f32.
#[cfg(target_arch = "x86_64")]
unsafe fn cast<T>(s: &[T]) -> &[f32] {
    std::slice::from_raw_parts(s.as_ptr() as *const f32, s.len())
}

#[cfg(target_arch = "x86_64")]
unsafe fn cast_mut<T>(s: &mut [T]) -> &mut [f32] {
    std::slice::from_raw_parts_mut(s.as_mut_ptr() as *mut f32, s.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::io::Write;

    /// `sum_p a[i, p] b[p, j]` and `sum_p |a[i, p] b[p, j]|`, exactly enough in f64.
    fn reference(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> (Vec<f64>, Vec<f64>) {
        let mut exact = vec![0.0; m * n];
        let mut size = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    let x = a[i * k + p] as f64 * b[p * n + j] as f64;
                    exact[i * n + j] += x;
                    size[i * n + j] += x.abs();
                }
            }
        }
        (exact, size)
    }

    fn uniform(rng: &mut StdRng, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.gen_range(-1.0..1.0)).collect()
    }

    /// Shapes `(n, k)` with every kind of last panel for both panel widths (16, 32): narrower
    /// than one panel, exactly one, one column over, ragged after several; and one of the
    /// size the cells use (`[B/threads, H] x [H, 4H]`, H = 256).
    const SHAPES: [(usize, usize); 9] = [
        (1, 1),
        (5, 3),
        (16, 7),
        (31, 20),
        (32, 9),
        (33, 64),
        (47, 5),
        (100, 130),
        (1024, 256),
    ];

    /// Every tile height of every path (`m` = 1..=25: single tiles of 1..12 rows, then two and
    /// three tiles), each `SHAPES` entry, `B` stored both ways, set and accumulate, against the
    /// f64 product. Per element, f32 rounding allows
    ///
    /// ```text
    /// |C - C_exact| <= 4 eps (sqrt(k) sum_p |a_ip b_pj| + |C_exact|)
    /// ```
    ///
    /// (`sqrt(k)`: rounding errors of a sum of `k` terms add up like a random walk; the last
    /// term: the final rounding of `C` and of `C0 + A B` when accumulating). Values written
    /// past `C` are caught by a guard region after it.
    fn check_path(path: KernelPath) {
        if let Some(lack) = path.missing() {
            // Straight to the process's stderr, which the test harness does not capture (it
            // captures `eprintln!`): the line shows in every `cargo test` run.
            let _ = writeln!(
                std::io::stderr(),
                "kernel path {}: not tested (CPU lacks {lack})",
                path.name()
            );
            return;
        }
        let eps = f32::EPSILON as f64;
        let guard = 1234.5f32;
        let mut rng = StdRng::seed_from_u64(7);
        for (n, k) in SHAPES {
            let heights: Vec<usize> = if n * k > 10_000 {
                vec![8, 16, 32]
            } else {
                (1..=25).collect()
            };
            for m in heights {
                let a = uniform(&mut rng, m * k);
                let b = uniform(&mut rng, k * n);
                let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
                let c0 = uniform(&mut rng, m * n);
                let (exact, size) = reference(&a, &b, m, n, k);
                for (stored, tb) in [(&b, Trans::No), (&bt, Trans::Yes)] {
                    let mut packed = PackedRhs::default();
                    packed.pack_with(path, stored, tb, k, n).unwrap();
                    assert_eq!(packed.path(), path);
                    for accumulate in [false, true] {
                        let mut c = c0.clone();
                        c.extend([guard; 64]);
                        packed.matmul(&mut c[..m * n], &a, m, accumulate);
                        for (i, &got) in c[..m * n].iter().enumerate() {
                            let want = exact[i] + if accumulate { c0[i] as f64 } else { 0.0 };
                            let tol = 4.0 * eps * ((k as f64).sqrt() * size[i] + want.abs());
                            let err = (got as f64 - want).abs();
                            assert!(
                                err <= tol,
                                "{} m={m} n={n} k={k} {tb:?} accumulate={accumulate}: \
                                 C[{}, {}] = {got}, want {want} (error {err:e} > {tol:e})",
                                path.name(),
                                i / n,
                                i % n
                            );
                        }
                        assert!(
                            c[m * n..].iter().all(|&x| x == guard),
                            "{} m={m} n={n} k={k}: wrote past C",
                            path.name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn avx512_path_matches_f64_reference() {
        check_path(KernelPath::Avx512);
    }

    #[test]
    fn avx2_path_matches_f64_reference() {
        check_path(KernelPath::Avx2);
    }

    #[test]
    fn generic_path_matches_f64_reference() {
        check_path(KernelPath::Generic);
    }

    /// The tolerance of `check_path` is tight enough to see one term of the sum missing.
    #[test]
    fn tolerance_catches_a_dropped_term() {
        let (m, n, k) = (8, 32, 256);
        let mut rng = StdRng::seed_from_u64(3);
        let a = uniform(&mut rng, m * k);
        let b = uniform(&mut rng, k * n);
        let (exact, size) = reference(&a, &b, m, n, k);
        let eps = f32::EPSILON as f64;
        let caught = (0..m * n)
            .filter(|&i| {
                let (row, col) = (i / n, i % n);
                let dropped = exact[i] - a[row * k + k - 1] as f64 * b[(k - 1) * n + col] as f64;
                let tol = 4.0 * eps * ((k as f64).sqrt() * size[i] + exact[i].abs());
                (dropped - exact[i]).abs() > tol
            })
            .count();
        assert!(caught * 10 >= m * n * 9, "{caught} of {}", m * n);
    }

    #[test]
    fn f64_uses_the_row_major_copy_exactly() {
        let (m, n, k) = (3, 4, 5);
        let a: Vec<f64> = (0..m * k).map(|i| i as f64 * 0.25 - 1.0).collect();
        let b: Vec<f64> = (0..k * n).map(|i| 2.0 - i as f64 * 0.125).collect();
        let mut packed = PackedRhs::default();
        packed.pack(&b, Trans::No, k, n);
        assert_eq!(packed.path(), KernelPath::Generic);
        let mut c = vec![0.0; m * n];
        packed.matmul(&mut c, &a, m, false);
        let want: Vec<f64> = (0..m * n)
            .map(|i| (0..k).map(|p| a[i / n * k + p] * b[p * n + i % n]).sum())
            .collect();
        assert_eq!(c, want);
        let err = packed
            .pack_with(KernelPath::Avx2, &b, Trans::No, k, n)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("f32 only") || err.contains("lacks"), "{err}");
    }

    #[test]
    fn kernel_names_round_trip_and_bad_values_are_refused() {
        for path in KernelPath::ALL {
            assert_eq!(KernelPath::from_name(path.name()), Some(path));
        }
        assert_eq!(parse_kernel_env(""), Ok(KernelPath::best()));
        let err = parse_kernel_env("avx9").unwrap_err();
        assert!(
            err.contains("RNNSCOPE_KERNEL=`avx9`") && err.contains("generic"),
            "{err}"
        );
        for path in KernelPath::ALL {
            match path.missing() {
                None => assert_eq!(parse_kernel_env(path.name()), Ok(path)),
                Some(lack) => {
                    let err = parse_kernel_env(path.name()).unwrap_err();
                    assert!(err.contains(lack), "{err}");
                    let err = PackedRhs::<f32>::default()
                        .pack_with(path, &[1.0], Trans::No, 1, 1)
                        .unwrap_err()
                        .to_string();
                    assert!(err.contains(lack), "{err}");
                }
            }
        }
        assert_eq!(KernelPath::best().missing(), None);
    }
}
