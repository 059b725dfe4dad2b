//! Reports: plots of a run directory's files and one self-contained HTML page.
//!
//! [`build`] looks at the files in a directory and assembles a [`Report`] from every plot they
//! allow; [`write`] renders it to `report.html` (inline SVG, no scripts, no network) and the
//! plots to `plots/NAME.svg` (and `plots/NAME.png` on request).
//!
//! ```text
//! files in the directory                  what the report shows
//! metrics.csv (+ summary.json)            train run: loss, perplexity, gradient norm, learning rate
//! metrics.csv with `metric` column        task run: the task's metric and loss against step
//! gradflow_track.csv, gradflow/step_*.json  rho, sigma_1, decay rate and gradient norm during
//!                                         training; R(l) at several steps
//! gradflow.json (here or in gradflow/)    R(l) with the theory line rho^l or the bound
//!                                         (gamma sigma_1)^l, influence heat maps, eigenvalues
//!                                         and singular values of W_hh, Jacobian products
//! results.csv `cell,distance,accuracy..`  demo: accuracy and R(l) against distance per cell,
//!                                         every run's R(l) in one plot, each run in detail
//! results.csv `model,length,runs,...`     experiment: success rate, metric and decay against
//!                                         length per model, each run in detail
//! config.toml                             the configuration, verbatim
//! ```
//!
//! [`plot`] draws the figures; [`html`] writes the page; [`data`] reads the files. Each kind
//! of directory has its builder: `train`, `task`, `gradflow`, `tracking` (gradient flow
//! recorded during training), `run` (one run directory: the parts its files allow), `demo` and
//! `experiment` (with `sub_runs` for the runs they hold); `common` has what they share.

mod attention;
mod common;
pub mod data;
mod demo;
mod experiment;
mod gradflow;
pub mod html;
pub mod plot;
mod run;
mod sub_runs;
mod task;
mod tracking;
mod train;

use crate::checkpoint::write_atomic;
use crate::error::{Error, Result};
use common::Prefix;
use data::Csv;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A plot with its file name stem (unique within a report) and a caption.
#[derive(Clone, Debug)]
pub struct Fig {
    pub name: String,
    pub figure: plot::Figure,
    pub caption: String,
}

/// A table of text cells.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// The content of a section, in order.
#[derive(Clone, Debug)]
pub enum Block {
    Text(String),
    Note(String),
    /// Plain-language statements about the plots.
    Reading(Vec<String>),
    /// Headline numbers: label, value.
    Facts(Vec<(String, String)>),
    Pre(String),
    Table(Table),
    Figure(Fig),
    /// The influence view over the text: tokens coloured by `|dJ^(i)/dh^(j)|`.
    TextInfluence(crate::analysis::text_view::TextInfluence),
    Sub(Section),
}

/// A titled part of the page; `collapsed` sections are closed `<details>` (no script needed).
#[derive(Clone, Debug)]
pub struct Section {
    pub id: String,
    pub title: String,
    pub blocks: Vec<Block>,
    pub collapsed: bool,
}

impl Section {
    pub fn new(id: impl Into<String>, title: impl Into<String>) -> Self {
        Section {
            id: id.into(),
            title: title.into(),
            blocks: Vec::new(),
            collapsed: false,
        }
    }

    fn figures<'a>(&'a self, out: &mut Vec<&'a Fig>) {
        for b in &self.blocks {
            match b {
                Block::Figure(f) => out.push(f),
                Block::Sub(s) => s.figures(out),
                _ => {}
            }
        }
    }
}

/// What a report shows: headline numbers, a plain-language reading, sections with plots.
#[derive(Clone, Debug)]
pub struct Report {
    pub title: String,
    pub subtitle: String,
    /// The directory the report was made from, as given.
    pub dir: String,
    /// `train`, `task`, `gradflow`, `demo` or `experiment`.
    pub kind: String,
    pub headline: Vec<(String, String)>,
    pub reading: Vec<String>,
    pub sections: Vec<Section>,
}

impl Report {
    /// Every figure, in page order.
    pub fn figures(&self) -> Vec<&Fig> {
        let mut out = Vec::new();
        for s in &self.sections {
            s.figures(&mut out);
        }
        out
    }
}

/// Assembles the report of the run, task, gradient-flow, demo or experiment directory `dir`.
pub fn build(dir: &Path) -> Result<Report> {
    if !dir.is_dir() {
        return Err(Error::Data(format!(
            "{}: not a directory: give the directory a run wrote (rnnscope train/task/gradflow/demo/experiment --out)",
            dir.display()
        )));
    }
    let results = Csv::read(&dir.join("results.csv"))?;
    let part = match &results {
        Some(r) if r.has("cell") && r.has("distance") && r.has("accuracy") => {
            demo::demo_report(dir, r)?
        }
        Some(r) if r.has("model") && r.has("success_rate") => {
            experiment::experiment_report(dir, r)?
        }
        _ => run::run_part(dir, &Prefix::default())?,
    };
    if part.sections.is_empty() {
        return Err(Error::Data(format!(
            "{}: no run files to report on (expected metrics.csv, gradflow.json, gradflow/gradflow.json or results.csv): give the directory that rnnscope train, task, gradflow, demo or experiment wrote",
            dir.display()
        )));
    }
    let shown = dir.display().to_string();
    Ok(Report {
        title: part.title,
        subtitle: format!("Report of {shown}"),
        dir: shown,
        kind: part.kind,
        headline: part.headline,
        reading: part.reading,
        sections: part.sections,
    })
}

/// Where [`write`] puts things.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The HTML file (default `DIR/report.html`).
    pub out: Option<PathBuf>,
    /// Folder for the plot files (default `plots/` beside the HTML file).
    pub plots: Option<PathBuf>,
    /// Also write every plot as PNG.
    pub png: bool,
    /// Skip the plot files (the page inlines every plot anyway).
    pub no_plot_files: bool,
}

/// What [`write`] wrote.
#[derive(Clone, Debug)]
pub struct Written {
    pub html: PathBuf,
    pub figures: usize,
    pub plot_files: Vec<PathBuf>,
    pub html_bytes: usize,
}

/// A file-name-safe version of a figure name.
pub fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Builds the report of `dir`, writes the HTML page and the plot files.
pub fn write(dir: &Path, opts: &Options) -> Result<Written> {
    let report = build(dir)?;
    let html_path = opts.out.clone().unwrap_or_else(|| dir.join("report.html"));
    let figs = report.figures();
    let mut svgs = HashMap::with_capacity(figs.len());
    for f in &figs {
        svgs.insert(f.name.clone(), f.figure.svg()?);
    }
    let page = html::render(&report, &svgs);
    if let Some(parent) = html_path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    write_atomic(&html_path, page.as_bytes())?;
    let mut plot_files = Vec::new();
    if !opts.no_plot_files || opts.png {
        let plots = opts.plots.clone().unwrap_or_else(|| {
            html_path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("plots"), |p| p.join("plots"))
        });
        std::fs::create_dir_all(&plots).map_err(|e| Error::io(&plots, e))?;
        for f in &figs {
            let stem = file_stem(&f.name);
            if !opts.no_plot_files {
                let p = plots.join(format!("{stem}.svg"));
                write_atomic(&p, svgs[&f.name].as_bytes())?;
                plot_files.push(p);
            }
            if opts.png {
                let p = plots.join(format!("{stem}.png"));
                write_atomic(&p, &f.figure.png()?)?;
                plot_files.push(p);
            }
        }
    }
    Ok(Written {
        html: html_path,
        figures: figs.len(),
        plot_files,
        html_bytes: page.len(),
    })
}

/// The end of `train`, `task`, `experiment` and `demo`: writes `DIR/report.html` and the SVG
/// plots, and says where; a failure is a warning (the run itself succeeded).
pub fn write_after_run(dir: &Path, quiet: bool) {
    match write(dir, &Options::default()) {
        Ok(w) => {
            if !quiet {
                println!(
                    "report: {} ({} plots; open it in a browser)",
                    w.html.display(),
                    w.figures
                );
            }
        }
        Err(e) => eprintln!(
            "warning: the report of {} was not written: {e}",
            dir.display()
        ),
    }
}
