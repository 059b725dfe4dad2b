//! The attention part of a gradient-flow report: the two gradient paths side by side, the mean
//! attention weight against distance, and one window's weights as a heat map.

use super::common::{fig, Part, Prefix};
use super::gradflow::ratio_points;
use super::plot::{Axis, Figure, HeatMap, LineChart, Series};
use super::Section;
use crate::analysis::attention::WEIGHTS_FILE;
use crate::analysis::{output, GradflowSnapshot};
use crate::error::Result;
use std::path::Path;

/// Adds the attention figures of the gradient-flow directory `g` to `s` (nothing without
/// attention).
pub(super) fn attention_blocks(
    g: &Path,
    snap: &GradflowSnapshot,
    p: &Prefix,
    s: &mut Section,
    part: &mut Part,
) -> Result<()> {
    let (Some(att), Some(top)) = (&snap.attention, snap.profiles.last()) else {
        return Ok(());
    };
    let mut c = LineChart::new(
        "Two gradient paths: through the recurrence and through attention",
        Axis::linear("distance l = i - j (time steps)"),
        Axis::log("R(l) = P(l) / P(0)  (relative gradient norm)"),
    );
    c.series.push(Series::line(
        "through the recurrence",
        ratio_points(&top.hidden),
    ));
    c.series.push(Series::line(
        "through attention (one hop)",
        ratio_points(&att.path[1..]),
    ));
    s.blocks.push(fig(
        p.name("attention_paths"),
        Figure::Line(c),
        "dJ^(i)/dh^(j) along the recurrence (the gradient entering at h_i, carried back step by step through the recurrent Jacobians) and along attention (the single hop from the loss at step i to h_j through the attention weight a_ij), each relative to the gradient entering at the target's own step. The recurrent path decays with distance; the attention path does not have to: it is as large as the weight the model puts on step j.",
    ));
    let weights: Vec<(f64, f64)> = att
        .mean_weight
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(l, _)| att.span == 0 || *l <= att.span)
        .map(|(l, &w)| (l as f64, w))
        .collect();
    let mut w = LineChart::new(
        "Mean attention weight against distance",
        Axis::linear("distance l = t - j (time steps)"),
        Axis::log("mean a_(t, t-l)"),
    );
    w.series.push(Series::line("measured", weights));
    s.blocks.push(fig(
        p.name("attention_mean_weight"),
        Figure::Line(w),
        "How far back the model looks: the attention weight on the state l steps back, averaged over the steps and sequences of the window that reach that far (Daniluk et al. 2017 measured this for attentive language models).",
    ));
    if let Some((n, values)) = output::read_influence(&g.join(WEIGHTS_FILE))? {
        s.blocks.push(fig(
            p.name("attention_weights"),
            Figure::Heat(HeatMap {
                title: "Attention weights of one held-out sequence".into(),
                x_label: "attended step j".into(),
                y_label: "reading step t".into(),
                bar_label: "a_tj  (log scale)".into(),
                n,
                values,
            }),
            "Row t: the weights a_tj step t puts on each earlier step j of the first sequence of the window (log colour scale; blank: outside the window).",
        ));
    }
    part.reading.push(att.human(&top.hidden));
    Ok(())
}
