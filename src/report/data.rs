//! Reading the files of run directories for the report: CSV tables by column name, JSON
//! summaries, sub-directories in natural order. Missing files are `None`; unreadable or
//! malformed ones are errors naming the file. Gradient-flow files are read typed, by
//! [`crate::analysis::output`].

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// A CSV file as written by rnnscope: a header line, comma-separated values, no quoting.
#[derive(Clone, Debug)]
pub struct Csv {
    pub path: PathBuf,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Reads a text file; `None` if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

impl Csv {
    /// Reads `path`; `None` if it does not exist.
    pub fn read(path: &Path) -> Result<Option<Csv>> {
        read_optional(path)?
            .map(|t| Csv::parse(&t, path))
            .transpose()
    }

    pub fn parse(text: &str, path: &Path) -> Result<Csv> {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<String> = lines
            .next()
            .ok_or_else(|| Error::Data(format!("{}: empty file (no header line)", path.display())))?
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        let rows = lines
            .map(|l| l.split(',').map(|s| s.trim().to_string()).collect())
            .collect();
        Ok(Csv {
            path: path.to_path_buf(),
            header,
            rows,
        })
    }

    pub fn col(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.col(name).is_some()
    }

    /// The column's values as finite numbers (`None`: empty, missing, NaN or not a number).
    pub fn num(&self, name: &str) -> Vec<Option<f64>> {
        let Some(c) = self.col(name) else {
            return vec![None; self.rows.len()];
        };
        self.rows
            .iter()
            .map(|r| {
                r.get(c)
                    .and_then(|s| s.parse::<f64>().ok())
                    .filter(|v| v.is_finite())
            })
            .collect()
    }

    /// The column's values as text (empty when missing).
    pub fn text(&self, name: &str) -> Vec<String> {
        let c = self.col(name);
        self.rows
            .iter()
            .map(|r| c.and_then(|c| r.get(c)).cloned().unwrap_or_default())
            .collect()
    }

    /// `(x, y)` for the rows where both columns hold finite numbers.
    pub fn pairs(&self, x: &str, y: &str) -> Vec<(f64, f64)> {
        self.num(x)
            .into_iter()
            .zip(self.num(y))
            .filter_map(|(a, b)| Some((a?, b?)))
            .collect()
    }

    /// Rows whose column `name` is not a finite number although present (NaN, inf).
    pub fn non_finite(&self, name: &str) -> usize {
        let Some(c) = self.col(name) else { return 0 };
        self.rows
            .iter()
            .filter(|r| {
                r.get(c)
                    .and_then(|s| s.parse::<f64>().ok())
                    .is_some_and(|v| !v.is_finite())
            })
            .count()
    }
}

/// A JSON file as a generic value; `None` if it does not exist.
pub fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    read_optional(path)?
        .map(|t| {
            serde_json::from_str(&t)
                .map_err(|e| Error::Data(format!("{}: not valid JSON: {e}", path.display())))
        })
        .transpose()
}

/// Sub-directories of `dir`, sorted by name with numbers compared as numbers
/// (`rnn_l6` before `rnn_l10`).
pub fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        if e.file_type()
            .map_err(|err| Error::io(e.path(), err))?
            .is_dir()
        {
            out.push(e.path());
        }
    }
    out.sort_by_key(|p| natural_key(&p.file_name().unwrap_or_default().to_string_lossy()));
    Ok(out)
}

/// Sort key comparing digit runs numerically.
pub fn natural_key(s: &str) -> Vec<(String, u64)> {
    let mut key = Vec::new();
    let mut text = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            let mut num = c.to_digit(10).unwrap_or(0) as u64;
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                num = num.saturating_mul(10).saturating_add(d as u64);
                chars.next();
            }
            key.push((std::mem::take(&mut text), num));
        } else {
            text.push(c);
        }
    }
    key.push((text, u64::MAX));
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_columns_by_name_with_gaps() {
        let c = Csv::parse(
            "step,train_loss,valid_loss\n1,2.5,\n2,NaN,2.0\n3,1.5,1.9\n",
            Path::new("m.csv"),
        )
        .unwrap();
        assert_eq!(c.pairs("step", "train_loss"), vec![(1.0, 2.5), (3.0, 1.5)]);
        assert_eq!(c.pairs("step", "valid_loss"), vec![(2.0, 2.0), (3.0, 1.9)]);
        assert_eq!(c.non_finite("train_loss"), 1);
        assert_eq!(c.num("absent"), vec![None, None, None]);
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["rnn_l10", "rnn_l6", "lstm_l20", "lstm_l6"];
        v.sort_by_key(|s| natural_key(s));
        assert_eq!(v, ["lstm_l6", "lstm_l20", "rnn_l6", "rnn_l10"]);
    }
}
