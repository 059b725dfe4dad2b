//! `rnnscope report RUN_DIR`: one self-contained HTML page with every plot the directory's
//! files allow, plus the plots as SVG files (and PNG with `--png`).

use crate::error::Result;
use crate::report::{write, Options};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory written by rnnscope train, task, gradflow, demo or experiment.
    #[arg(value_name = "RUN_DIR")]
    pub dir: PathBuf,
    /// The HTML file [default: RUN_DIR/report.html].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Folder for the plot files [default: plots/ beside the HTML file].
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    /// Also write every plot as PNG (SVG files are always written).
    #[arg(long)]
    pub png: bool,
    /// Write only the HTML page (it inlines every plot), no plot files.
    #[arg(long, conflicts_with = "png")]
    pub no_plot_files: bool,
}

pub fn run(a: Args) -> Result<()> {
    let w = write(
        &a.dir,
        &Options {
            out: a.out,
            plots: a.plots,
            png: a.png,
            no_plot_files: a.no_plot_files,
        },
    )?;
    println!(
        "wrote {} ({} plots, {} KB){}",
        w.html.display(),
        w.figures,
        w.html_bytes.div_ceil(1024),
        match w.plot_files.first().and_then(|p| p.parent()) {
            Some(d) => format!("; {} plot files in {}", w.plot_files.len(), d.display()),
            None => String::new(),
        }
    );
    Ok(())
}
