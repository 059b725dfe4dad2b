//! The files of a gradient-flow analysis: [`write_dir`] turns a [`GradflowSnapshot`] into a
//! directory of JSON and CSV files; [`record_track`] appends a snapshot taken during training
//! to a run directory. The readers ([`read_snapshot`], [`read_profile`], [`read_influence`],
//! [`read_track`], [`step_snapshots`]) give them back typed, for the report.
//!
//! A gradient-flow directory (`rnnscope gradflow --out DIR`, a demo run's `gradflow/`):
//!
//! ```text
//! file                       contents (layer k = 0 is the lowest)
//! gradflow.json              the whole snapshot but the influence matrices: summary, spectra,
//!                            profiles, Jacobian products, theory checks
//! profile_l{k}.csv           distance,mean,median,p10,p90,ratio: statistics over (i, b) of
//!                            |dJ^(i)/dh^(i-l)| at distance l, and R(l) = P(l) / P_l(0)
//! profile_cell_l{k}.csv      LSTM: the same through the cell state, |dJ^(i)/dc^(i-l)|
//! influence_l{k}.csv         T x T, no header: row i (target), column j (source): the mean
//!                            over the batch of |dJ^(i)/dh^(j)|; empty for j > i
//! influence_cell_l{k}.csv    LSTM: the same for |dJ^(i)/dc^(j)|
//! eigenvalues_l{k}.csv       gate,index,re,im,modulus: eigenvalues of each gate block of W_hh,
//!                            by decreasing modulus
//! singular_values_l{k}.csv   gate,index,value: singular values of each gate block, decreasing
//! jacobian_l{k}.csv          distance,step,one_step_norm,log_frobenius,log_sigma_1..m,
//!                            log_stretch_1..m: at distance l (step t = T - l), sigma_1 of the
//!                            one-step Jacobian J_t, ln |A_l|_F, ln sigma_m(A_l) and the
//!                            log-stretch of the m-th direction of A_l = J_(T-1) ... J_(T-l)
//! ```
//!
//! Numbers are in their shortest round-trip form; a non-finite number is an empty cell. Every
//! CSV file starts with a comment line `# input: ...` naming what was analysed
//! ([`super::InputRecord::describe`]); the readers skip lines starting with `#`.
//!
//! A training run with `--track-gradflow N` holds, besides its own files:
//!
//! ```text
//! gradflow_track.csv         step,layer,rho,sigma_1,decay_per_step,distance_below_1e-3,
//!                            grad_norm: one row per layer at every tracked step
//! gradflow/step_{S:08}.json  the snapshot taken at update S (as gradflow.json, one line)
//! ```

use super::profile::ProfileRow;
use super::GradflowSnapshot;
use crate::checkpoint::write_atomic;
use crate::error::{Error, Result};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The snapshot's file in a gradient-flow directory.
pub const SNAPSHOT_FILE: &str = "gradflow.json";
/// A training run's tracked rows (in the run directory).
pub const TRACK_FILE: &str = "gradflow_track.csv";
/// A training run's folder of tracked snapshots.
pub const TRACK_DIR: &str = "gradflow";

/// `profile_l{k}.csv`, or through the LSTM cell state `profile_cell_l{k}.csv`.
pub fn profile_file(layer: usize, cell_state: bool) -> String {
    if cell_state {
        format!("profile_cell_l{layer}.csv")
    } else {
        format!("profile_l{layer}.csv")
    }
}

/// `influence_l{k}.csv`, or through the LSTM cell state `influence_cell_l{k}.csv`.
pub fn influence_file(layer: usize, cell_state: bool) -> String {
    if cell_state {
        format!("influence_cell_l{layer}.csv")
    } else {
        format!("influence_l{layer}.csv")
    }
}

/// Shortest round-trip form, in exponent notation when very large or small; empty if not finite.
fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:?}")
    } else {
        String::new()
    }
}

fn opt(x: Option<f64>) -> String {
    x.map_or(String::new(), num)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
    write_atomic(&dir.join(name), text.as_bytes())
}

/// The comment line that opens every CSV file of `snap`.
fn input_line(snap: &GradflowSnapshot) -> String {
    format!("# input: {}\n", snap.summary.input.describe())
}

/// Writes the gradient-flow directory of `snap` into `dir` (created if missing): the files
/// listed in the module docs, each atomically.
pub fn write_dir(dir: &Path, snap: &GradflowSnapshot) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let json = serde_json::to_string_pretty(snap).expect("the snapshot serialises");
    write(dir, SNAPSHOT_FILE, &json)?;
    let first = input_line(snap);
    if let Some(a) = &snap.attention {
        a.write_files(dir, &first)?;
    }
    let write = |dir: &Path, name: &str, text: &str| write(dir, name, &(first.clone() + text));
    let steps = snap.summary.bptt;
    for p in &snap.profiles {
        let mut sets = vec![(false, &p.hidden)];
        if let Some(c) = &p.cell {
            sets.push((true, c));
        }
        for (cell_state, rows) in sets {
            let mut s = format!("{}\n", ProfilePoint::HEADER);
            for r in rows {
                s += &ProfilePoint::from(r).line();
                s.push('\n');
            }
            write(dir, &profile_file(p.layer, cell_state), &s)?;
        }
    }
    let matrices = snap
        .influence
        .iter()
        .enumerate()
        .map(|(k, m)| (influence_file(k, false), m))
        .chain(
            snap.influence_cell
                .iter()
                .enumerate()
                .map(|(k, m)| (influence_file(k, true), m)),
        );
    for (name, m) in matrices {
        // row i (target), column j (source); empty above the diagonal (j > i)
        let mut s = String::new();
        for i in 0..steps {
            let row: Vec<String> = (0..steps)
                .map(|j| {
                    if j <= i {
                        num(m[i * steps + j])
                    } else {
                        String::new()
                    }
                })
                .collect();
            s += &row.join(",");
            s.push('\n');
        }
        write(dir, &name, &s)?;
    }
    for sp in &snap.spectrum {
        let k = sp.layer;
        let mut e = String::from("gate,index,re,im,modulus\n");
        let mut v = String::from("gate,index,value\n");
        for g in &sp.gates {
            for (n, x) in g.eigenvalues.iter().enumerate() {
                let _ = writeln!(
                    e,
                    "{},{n},{},{},{}",
                    g.gate,
                    num(x.re),
                    num(x.im),
                    num(x.modulus())
                );
            }
            for (n, x) in g.singular_values.iter().enumerate() {
                let _ = writeln!(v, "{},{n},{}", g.gate, num(*x));
            }
        }
        write(dir, &format!("eigenvalues_l{k}.csv"), &e)?;
        write(dir, &format!("singular_values_l{k}.csv"), &v)?;
    }
    for j in &snap.jacobian {
        let k = j.products.first().map_or(0, |r| r.log_stretch.len());
        let mut s = String::from("distance,step,one_step_norm,log_frobenius");
        for m in 1..=k {
            let _ = write!(s, ",log_sigma_{m}");
        }
        for m in 1..=k {
            let _ = write!(s, ",log_stretch_{m}");
        }
        s.push('\n');
        for r in &j.products {
            let t = steps - r.distance;
            let _ = write!(
                s,
                "{},{t},{},{}",
                r.distance,
                opt(j.one_step_norm[t]),
                opt(r.log_frobenius)
            );
            for m in 0..k {
                let _ = write!(
                    s,
                    ",{}",
                    r.log_singular_values
                        .get(m)
                        .map_or(String::new(), |x| num(*x))
                );
            }
            for m in 0..k {
                let _ = write!(
                    s,
                    ",{}",
                    r.log_stretch.get(m).map_or(String::new(), |x| num(*x))
                );
            }
            s.push('\n');
        }
        write(dir, &format!("jacobian_l{}.csv", j.layer), &s)?;
    }
    Ok(())
}

/// Records a snapshot taken at update `step` of a training run in `run_dir`: one
/// [`TrackRow`] per layer appended to `gradflow_track.csv` (the header first if the file is
/// new) and the whole snapshot in `gradflow/step_{step:08}.json`.
pub fn record_track(
    run_dir: &Path,
    step: u64,
    snap: &GradflowSnapshot,
    grad_norm: f64,
) -> Result<()> {
    let csv = run_dir.join(TRACK_FILE);
    let new = !csv.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&csv)
        .map_err(|e| Error::io(&csv, e))?;
    let mut text = String::new();
    if new {
        text += &input_line(snap);
        text.push_str(TrackRow::HEADER);
        text.push('\n');
    }
    for row in TrackRow::of_snapshot(step, snap, grad_norm) {
        text += &row.line();
        text.push('\n');
    }
    f.write_all(text.as_bytes())
        .map_err(|e| Error::io(&csv, e))?;
    let dir = run_dir.join(TRACK_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let json = serde_json::to_string(snap).expect("the snapshot serialises");
    write_atomic(&dir.join(format!("step_{step:08}.json")), json.as_bytes())
}

/// Reads a snapshot (`gradflow.json`, `gradflow/step_N.json`); `None` if the file is missing.
pub fn read_snapshot(path: &Path) -> Result<Option<GradflowSnapshot>> {
    read_text(path)?
        .map(|t| {
            serde_json::from_str(&t).map_err(|e| {
                Error::Data(format!(
                    "{}: not a gradient-flow snapshot of this rnnscope version: {e}",
                    path.display()
                ))
            })
        })
        .transpose()
}

/// The tracked snapshots of a training run, `(step, path)` by increasing step; empty when the
/// run has none.
pub fn step_snapshots(run_dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(run_dir.join(TRACK_DIR)) else {
        return Vec::new();
    };
    let mut out: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?;
            let step = name.strip_prefix("step_")?.strip_suffix(".json")?;
            Some((step.parse().unwrap_or(0), p))
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// One row of `profile_l{k}.csv` (a [`ProfileRow`] without its count).
#[derive(Clone, Debug, PartialEq)]
pub struct ProfilePoint {
    pub distance: usize,
    pub mean: f64,
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    /// `R(l)`; `None` when not finite.
    pub ratio: Option<f64>,
}

impl ProfilePoint {
    pub const HEADER: &'static str = "distance,mean,median,p10,p90,ratio";

    fn line(&self) -> String {
        format!(
            "{},{},{},{},{},{}",
            self.distance,
            num(self.mean),
            num(self.median),
            num(self.p10),
            num(self.p90),
            opt(self.ratio)
        )
    }
}

impl From<&ProfileRow> for ProfilePoint {
    fn from(r: &ProfileRow) -> Self {
        ProfilePoint {
            distance: r.distance,
            mean: r.mean,
            median: r.median,
            p10: r.p10,
            p90: r.p90,
            ratio: r.ratio.filter(|x| x.is_finite()),
        }
    }
}

/// Reads a profile CSV; `None` if the file is missing.
pub fn read_profile(path: &Path) -> Result<Option<Vec<ProfilePoint>>> {
    read_records(path, ProfilePoint::HEADER, |r| {
        Ok(ProfilePoint {
            distance: r.parse(0)?,
            mean: r.number(1)?,
            median: r.number(2)?,
            p10: r.number(3)?,
            p90: r.number(4)?,
            ratio: r.optional(5)?.filter(|x: &f64| x.is_finite()),
        })
    })
}

/// The profile of the top layer of the gradient-flow directory `dir` (the highest `k` with a
/// `profile_l{k}.csv`); `None` when there is none.
pub fn read_top_profile(dir: &Path) -> Result<Option<Vec<ProfilePoint>>> {
    match (0..)
        .take_while(|&k| dir.join(profile_file(k, false)).exists())
        .last()
    {
        Some(k) => read_profile(&dir.join(profile_file(k, false))),
        None => Ok(None),
    }
}

/// Reads an influence matrix (`T x T`, row `i` target, column `j` source; empty cells are
/// NaN) as `(T, values)`; `None` if the file is missing.
pub fn read_influence(path: &Path) -> Result<Option<(usize, Vec<f64>)>> {
    let Some(text) = read_text(path)? else {
        return Ok(None);
    };
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let n = rows.len();
    let mut v = vec![f64::NAN; n * n];
    for (i, line) in rows.iter().enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != n {
            return Err(Error::Data(format!(
                "{}: row {} has {} values, expected {n} (a square matrix)",
                path.display(),
                i + 1,
                cells.len()
            )));
        }
        for (j, s) in cells.iter().enumerate() {
            if !s.is_empty() {
                v[i * n + j] = s.trim().parse::<f64>().map_err(|_| {
                    Error::Data(format!(
                        "{}: row {}, column {}: `{s}` is not a number",
                        path.display(),
                        i + 1,
                        j + 1
                    ))
                })?;
            }
        }
    }
    Ok(Some((n, v)))
}

/// One row of `gradflow_track.csv`: one layer at one tracked step.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackRow {
    pub step: u64,
    pub layer: usize,
    /// Spectral radius of `W_hh` (largest over the gate blocks).
    pub rho: f64,
    /// Largest singular value of `W_hh` (largest over the gate blocks).
    pub sigma_1: f64,
    pub decay_per_step: Option<f64>,
    pub distance_below_1e3: Option<usize>,
    /// Norm of the full gradient at that update.
    pub grad_norm: f64,
}

impl TrackRow {
    pub const HEADER: &'static str =
        "step,layer,rho,sigma_1,decay_per_step,distance_below_1e-3,grad_norm";

    /// The rows of `snap` (one per layer), taken at update `step`.
    pub fn of_snapshot(step: u64, snap: &GradflowSnapshot, grad_norm: f64) -> Vec<TrackRow> {
        snap.summary
            .per_layer
            .iter()
            .map(|l| TrackRow {
                step,
                layer: l.layer,
                rho: l.rho,
                sigma_1: l.sigma_1,
                decay_per_step: l.decay_per_step,
                distance_below_1e3: l.distance_below_1e3,
                grad_norm,
            })
            .collect()
    }

    fn line(&self) -> String {
        let opt = |v: Option<f64>| v.map_or(String::new(), |x| x.to_string());
        format!(
            "{},{},{},{},{},{},{}",
            self.step,
            self.layer,
            self.rho,
            self.sigma_1,
            opt(self.decay_per_step),
            self.distance_below_1e3
                .map_or(String::new(), |d| d.to_string()),
            self.grad_norm
        )
    }
}

/// Reads `gradflow_track.csv`; `None` if the file is missing.
pub fn read_track(path: &Path) -> Result<Option<Vec<TrackRow>>> {
    read_records(path, TrackRow::HEADER, |r| {
        Ok(TrackRow {
            step: r.parse(0)?,
            layer: r.parse(1)?,
            rho: r.number(2)?,
            sigma_1: r.number(3)?,
            decay_per_step: r.optional(4)?,
            distance_below_1e3: r.optional(5)?,
            grad_norm: r.number(6)?,
        })
    })
}

fn read_text(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// One data line of a CSV file, for typed reading with errors that name the place.
struct Line<'a> {
    path: &'a Path,
    /// 1-based, counting the header.
    number: usize,
    header: &'a str,
    cells: Vec<&'a str>,
}

impl Line<'_> {
    fn bad(&self, column: usize, what: &str) -> Error {
        let name = self.header.split(',').nth(column).unwrap_or("?");
        Error::Data(format!(
            "{}: line {}, column `{name}`: `{}` is not {what}; the file is damaged: write it again with rnnscope",
            self.path.display(),
            self.number,
            self.cells[column]
        ))
    }

    fn parse<T: FromStr>(&self, column: usize) -> Result<T> {
        self.cells[column]
            .parse()
            .map_err(|_| self.bad(column, "a non-negative integer"))
    }

    /// A number; an empty cell (a non-finite value when written) is NaN.
    fn number(&self, column: usize) -> Result<f64> {
        Ok(self.optional(column)?.unwrap_or(f64::NAN))
    }

    /// An empty cell is `None`.
    fn optional<T: FromStr>(&self, column: usize) -> Result<Option<T>> {
        let s = self.cells[column];
        if s.is_empty() {
            return Ok(None);
        }
        s.parse()
            .map(Some)
            .map_err(|_| self.bad(column, "a number"))
    }
}

/// The records of a CSV file whose first line must be `header`, each data line read by
/// `record`; `None` if the file is missing.
fn read_records<T>(
    path: &Path,
    header: &str,
    record: impl Fn(&Line<'_>) -> Result<T>,
) -> Result<Option<Vec<T>>> {
    let Some(text) = read_text(path)? else {
        return Ok(None);
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let first = lines.next().map_or("", |(_, l)| l.trim());
    if first != header {
        return Err(Error::Data(format!(
            "{}: the header is `{first}`, expected `{header}`: not a file this rnnscope version wrote; write it again with rnnscope",
            path.display()
        )));
    }
    let columns = header.split(',').count();
    lines
        .map(|(i, l)| {
            let line = Line {
                path,
                number: i + 1,
                header,
                cells: l.split(',').map(str::trim).collect(),
            };
            if line.cells.len() != columns {
                return Err(Error::Data(format!(
                    "{}: line {} has {} values, expected {columns} ({header}): repair or delete that line",
                    path.display(),
                    line.number,
                    line.cells.len()
                )));
            }
            record(&line)
        })
        .collect::<Result<Vec<T>>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::snapshot;
    use crate::cell::{Activation, CellKind};
    use crate::init::{initialize, InitConfig, InitScheme};
    use crate::model::{LanguageModel, ModelConfig};

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("rnnscope-output-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A two-layer LSTM's snapshot on `T = 6`, `B = 2` tokens.
    fn lstm_snapshot() -> GradflowSnapshot {
        let config = ModelConfig {
            cell: CellKind::Lstm,
            activation: Activation::Tanh,
            vocab: 7,
            embedding: 3,
            hidden: 4,
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
        };
        let mut model = LanguageModel::<f64>::zeros(config).unwrap();
        let init = InitConfig {
            scheme: InitScheme::Default,
            spectral_radius: None,
            forget_bias: None,
            seed: 3,
        };
        initialize(&mut model, &init).unwrap();
        let tokens: Vec<u32> = (0..12).map(|k| (k * 5 % 7) as u32).collect();
        let targets: Vec<u32> = (0..12).map(|k| (k * 3 % 7) as u32).collect();
        snapshot(&model, &tokens, &targets, None, 2, &Default::default()).unwrap()
    }

    #[test]
    fn a_written_directory_reads_back_exactly() {
        let snap = lstm_snapshot();
        let dir = TempDir::new("dir");
        write_dir(&dir.0, &snap).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        let mut want = vec![SNAPSHOT_FILE.to_string()];
        for k in 0..2 {
            for stem in [
                "eigenvalues",
                "influence",
                "influence_cell",
                "jacobian",
                "profile",
                "profile_cell",
                "singular_values",
            ] {
                want.push(format!("{stem}_l{k}.csv"));
            }
        }
        want.sort();
        assert_eq!(names, want);

        let back = read_snapshot(&dir.0.join(SNAPSHOT_FILE)).unwrap().unwrap();
        assert_eq!(back.summary.rho.to_bits(), snap.summary.rho.to_bits());
        assert_eq!(back.spectrum, snap.spectrum);
        for (k, p) in snap.profiles.iter().enumerate() {
            for (cell_state, rows) in [(false, &p.hidden), (true, p.cell.as_ref().unwrap())] {
                let csv = read_profile(&dir.0.join(profile_file(k, cell_state)))
                    .unwrap()
                    .unwrap();
                let want: Vec<ProfilePoint> = rows.iter().map(ProfilePoint::from).collect();
                assert_eq!(csv, want, "layer {k}, cell state {cell_state}");
            }
            let (n, m) = read_influence(&dir.0.join(influence_file(k, false)))
                .unwrap()
                .unwrap();
            assert_eq!(n, 6);
            for i in 0..n {
                for j in 0..n {
                    let (got, want) = (m[i * n + j], snap.influence[k][i * n + j]);
                    if j <= i {
                        assert_eq!(got.to_bits(), want.to_bits(), "({i}, {j})");
                    } else {
                        assert!(got.is_nan(), "({i}, {j}) above the diagonal");
                    }
                }
            }
        }
        let top = read_top_profile(&dir.0).unwrap().unwrap();
        assert_eq!(
            top,
            read_profile(&dir.0.join("profile_l1.csv"))
                .unwrap()
                .unwrap()
        );
        assert!(read_profile(&dir.0.join("profile_l2.csv"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn tracked_steps_append_rows_and_snapshots() {
        let snap = lstm_snapshot();
        let dir = TempDir::new("track");
        std::fs::create_dir_all(&dir.0).unwrap();
        record_track(&dir.0, 20, &snap, 0.5).unwrap();
        record_track(&dir.0, 100, &snap, 0.25).unwrap();
        let text = std::fs::read_to_string(dir.0.join(TRACK_FILE)).unwrap();
        let first = format!("# input: {}", snap.summary.input.describe());
        assert_eq!(text.lines().next(), Some(first.as_str()));
        assert_eq!(text.lines().nth(1), Some(TrackRow::HEADER));
        assert_eq!(text.lines().count(), 2 + 2 * 2, "{text}");
        let rows = read_track(&dir.0.join(TRACK_FILE)).unwrap().unwrap();
        let mut want = TrackRow::of_snapshot(20, &snap, 0.5);
        want.extend(TrackRow::of_snapshot(100, &snap, 0.25));
        assert_eq!(rows, want);
        assert_eq!(rows[3].layer, 1);
        assert_eq!(rows[3].rho, snap.summary.per_layer[1].rho);
        let steps: Vec<u64> = step_snapshots(&dir.0).iter().map(|s| s.0).collect();
        assert_eq!(steps, [20, 100]);
        let first = read_snapshot(&step_snapshots(&dir.0)[0].1)
            .unwrap()
            .unwrap();
        assert_eq!(first.profiles, snap.profiles);
        assert!(step_snapshots(&dir.0.join("missing")).is_empty());
    }

    #[test]
    fn a_damaged_csv_is_an_error_naming_the_file_line_and_column() {
        let dir = TempDir::new("damaged");
        std::fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join("profile_l0.csv");
        let err = |text: &str| {
            std::fs::write(&path, text).unwrap();
            read_profile(&path).unwrap_err().to_string()
        };
        let e = err("distance,mean,median,p10,p90,ratio\n0,1,1,1,1,1\n1,x,1,1,1,0.5\n");
        assert!(
            e.contains("profile_l0.csv") && e.contains("line 3") && e.contains("`mean`"),
            "{e}"
        );
        let e = err("distance,mean,median,p10,p90,ratio\n0,1,1,1\n");
        assert!(e.contains("line 2 has 4 values, expected 6"), "{e}");
        let e = err("step,train_loss\n1,2\n");
        assert!(
            e.contains("header") && e.contains(ProfilePoint::HEADER),
            "{e}"
        );
        // Empty cells are what the writer makes of non-finite numbers.
        std::fs::write(&path, "distance,mean,median,p10,p90,ratio\n0,,1,1,1,\n").unwrap();
        let rows = read_profile(&path).unwrap().unwrap();
        assert!(rows[0].mean.is_nan() && rows[0].ratio.is_none());
    }
}
