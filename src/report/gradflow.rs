//! A gradient-flow directory (`rnnscope gradflow`, or the `gradflow/` of a run): R(l) with
//! its theory line, influence matrices, spectra of W_hh and Jacobian products.

use super::common::{fig, num, sci, Part, Prefix};
use super::plot::{
    Axis, CircleGuide, ComplexPlane, Figure, Guide, HLine, HeatMap, LineChart, Marker, PointGroup,
    Series, GUIDE,
};
use super::{Block, Section};
use crate::analysis::output;
use crate::analysis::profile::{Horizon, ProfileRow};
use crate::analysis::InputRecord;
use crate::cell::{Activation, CellKind, Recurrence};
use crate::error::Result;
use std::path::Path;

pub(super) fn gate_title(gate: &str) -> String {
    match gate {
        "hh" => "W_hh".into(),
        "i" => "W_hi (input gate)".into(),
        "f" => "W_hf (forget gate)".into(),
        "g" => "W_hg (cell candidate)".into(),
        "o" => "W_ho (output gate)".into(),
        "r" => "W_hr (reset gate)".into(),
        "z" => "W_hz (update gate)".into(),
        "n" => "W_hn (candidate)".into(),
        other => format!("W_h{other}"),
    }
}

/// `(l, R(l))` where `R(l)` is finite.
pub(super) fn ratio_points(rows: &[ProfileRow]) -> Vec<(f64, f64)> {
    rows.iter()
        .filter_map(|r| Some((r.distance as f64, r.ratio.filter(|x| x.is_finite())?)))
        .collect()
}

/// Plain-language reading of a measured profile `R(l)`, phrased as what was measured on
/// `input`: a distance beyond which the gradient is under 1e-3 is stated as the model's memory
/// horizon only on input the model reads (text, its training batch, task data), never on
/// random tokens.
pub(super) fn profile_reading(
    who: &str,
    ratio: &[(f64, f64)],
    decay: Option<f64>,
    input: &InputRecord,
    horizon: Option<&Horizon>,
) -> Option<String> {
    let &(lmax, rlast) = ratio.last()?;
    if ratio.len() < 2 {
        return None;
    }
    let on = input.describe();
    let peak = ratio.iter().map(|p| p.1).fold(0.0f64, f64::max);
    if peak > 10.0 {
        let (l, r) = ratio
            .iter()
            .copied()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((lmax, rlast));
        return Some(format!(
            "{who}, measured on {on}: the gradient grows with distance, to {} times its size at l = 0 by l = {l:.0}; on this input it explodes over long distances (clipping the gradient norm or a smaller spectral radius of W_hh counters that).",
            sci(r)
        ));
    }
    let per = decay.map_or(String::new(), |d| format!(" (x{d:.3} per step)"));
    let steps = lmax as usize + 1;
    match ratio.iter().find(|p| p.1 < 1e-3) {
        Some(&(l3, _)) if input.is_real() => Some(format!(
            "{who}, measured on {on}: the gradient falls by a factor of {} over {lmax:.0} steps{per}, and below 1e-3 of its size at distance 0 from {}. On this input, what lies more than about {l3:.0} steps back reaches the loss with under 1e-3 of the gradient of the current step: the memory horizon measured here.",
            sci(1.0 / rlast.max(1e-300)),
            horizon.map_or(format!("l = {l3:.0}"), |h| h.describe(steps))
        )),
        Some(&(l3, _)) => Some(format!(
            "{who}, measured on {on}: the gradient falls by a factor of {} over {lmax:.0} steps{per}, below 1e-3 of its size from l = {l3:.0} on. This input is not text the model reads, so it shows how the weights treat it, not how far back the model remembers its own text: analyse windows of that text for a memory horizon.",
            sci(1.0 / rlast.max(1e-300))
        )),
        None => Some(format!(
            "{who}, measured on {on}: the gradient keeps {} of its size over {lmax:.0} steps{per}: on this input the gradient signal reaches across the whole window (a memory horizon beyond {lmax:.0} steps).",
            sci(rlast)
        )),
    }
}

/// The part of the gradient-flow directory `g`: headline numbers when it is the report's
/// subject, a section of its own inside a run's report.
pub(super) fn gradflow_part(g: &Path, p: &Prefix, part: &mut Part) -> Result<()> {
    let Some(snap) = output::read_snapshot(&g.join(output::SNAPSHOT_FILE))? else {
        return Ok(());
    };
    let sm = &snap.summary;
    let is_rnn = sm.cell == CellKind::Rnn;
    let identity = is_rnn && sm.activation == Activation::Identity;
    let mut model = if is_rnn {
        format!("rnn ({})", sm.activation.name())
    } else {
        sm.cell.name().to_string()
    };
    if sm.recurrence == Recurrence::Orthogonal {
        model += ", W_hh = expm(A) orthogonal";
    }
    if sm.residual {
        model += ", residual";
    }
    if part.kind.is_empty() {
        part.kind = "gradflow".into();
        part.title = format!(
            "Gradient flow through time: {model}, H = {}, {} layer{}",
            sm.hidden,
            sm.layers,
            if sm.layers == 1 { "" } else { "s" }
        );
    }
    let mut s = Section::new(p.name("gradflow"), "Gradient flow through time");
    s.blocks.push(Block::Text(format!(
        "Measured on {}: B = {} windows of T = {} steps. The loss J^(i) at each step i is back-propagated alone, and P(l) is the mean norm |dJ^(i)/dh^(i-l)| over i and the windows; R(l) = P(l) / P(0).",
        sm.input.describe(), sm.batch, sm.bptt
    )));
    let mut facts = vec![
        (
            "model".to_string(),
            format!(
                "{model}, H = {}, {} layer{}",
                sm.hidden,
                sm.layers,
                if sm.layers == 1 { "" } else { "s" }
            ),
        ),
        ("input".into(), sm.input.describe()),
        ("spectral radius rho".into(), num(sm.rho)),
        ("largest singular value sigma_1".into(), num(sm.sigma_1)),
    ];
    if let Some(gm) = sm.gamma {
        facts.push(("gamma = max |s'|".into(), num(gm)));
    }
    facts.push(("regime".into(), sm.regime.clone()));
    if let Some(d) = sm.decay_per_step {
        facts.push(("measured decay per step".into(), num(d)));
    }
    if let Some(b) = sm.bound_per_step {
        facts.push(("bound gamma*sigma_1 per step".into(), num(b)));
    }
    if let Some(d) = sm.cell_decay_per_step {
        facts.push(("decay through the cell state".into(), num(d)));
    }
    let below = |x: Option<usize>| {
        x.map_or(format!("not within {} steps", sm.bptt), |l| {
            format!("l = {l}")
        })
    };
    facts.push(("R(l) < 1e-3 at".into(), below(sm.distance_below_1e3)));
    facts.push(("R(l) < 1e-6 at".into(), below(sm.distance_below_1e6)));
    if let Some(h) = &sm.memory_horizon {
        facts.push((
            "memory horizon (R(l) < 1e-3, top layer, on this input)".into(),
            h.describe(sm.bptt),
        ));
    }
    if let Some(e) = sm.theory_max_rel_error {
        facts.push(("theory vs measured (max rel. error)".into(), sci(e)));
    }
    // The headline of a gradflow directory; a section of its own in a task or train report.
    if part.headline.is_empty() {
        part.headline = facts;
    } else {
        s.blocks.push(Block::Facts(facts));
    }

    // `, layer k` in titles when there are several.
    let of_layer = |k: usize| {
        if sm.layers > 1 {
            format!(", layer {k}")
        } else {
            String::new()
        }
    };

    // R(l) per layer (and through the LSTM cell state), with the theory line.
    let mut c = LineChart::new(
        "Gradient profile R(l) against distance",
        Axis::linear("distance l = i - j (time steps)"),
        Axis::log("R(l) = P(l) / P(0)  (relative gradient norm)"),
    );
    let top = sm.layers.saturating_sub(1);
    let mut top_ratio = Vec::new();
    for pr in &snap.profiles {
        let k = pr.layer;
        let r = ratio_points(&pr.hidden);
        if k == top {
            top_ratio = r.clone();
        }
        let name = if sm.layers > 1 {
            format!("layer {k}, dJ/dh")
        } else {
            "measured, dJ/dh".into()
        };
        c.series.push(Series::line(name, r));
        if let Some(cell) = &pr.cell {
            let r = ratio_points(cell);
            let name = if sm.layers > 1 {
                format!("layer {k}, dJ/dc (cell state)")
            } else {
                "measured, dJ/dc (cell state)".into()
            };
            c.series.push(Series::line(name, r));
        }
    }
    let ls: Vec<f64> = (0..sm.bptt).map(|l| l as f64).collect();
    let theory = if identity {
        Some((format!("rho^l (theory), rho = {}", num(sm.rho)), sm.rho))
    } else {
        sm.bound_per_step
            .map(|b| (format!("bound (gamma*sigma_1)^l, {}^l", num(b)), b))
    };
    if let Some((name, base)) = &theory {
        c.guides.push(Guide {
            name: name.clone(),
            points: ls.iter().map(|&l| (l, base.powf(l))).collect(),
            color: GUIDE,
        });
    }
    c.hlines.push(HLine {
        name: "1e-3: the memory horizon's threshold".into(),
        y: 1e-3,
    });
    if !c.series.is_empty() {
        let caption = match &theory {
            Some(_) if identity => "Measured R(l) (log scale) and the theory line rho^l: with the identity activation the gradient is g W_hh^l exactly, so it decays (or grows) like the largest eigenvalue's modulus to the power l.",
            Some(_) => "Measured R(l) (log scale) and the bound (gamma*sigma_1)^l: every one-step Jacobian diag(s'(a)) W_hh has norm at most gamma*sigma_1, so the product over l steps cannot exceed its l-th power (Pascanu et al. 2013). The dashed line is clipped to the plotted range.",
            None => "Measured R(l) (log scale). For gated cells the gradient through the cell state is shown as well: its decay is set by the forget gate, not by W_hh alone.",
        };
        s.blocks
            .push(fig(p.name("gradflow_profile"), Figure::Line(c), caption));
    }
    // The vertical profile: the gradient at each layer of the stack at the step of its loss.
    if sm.layers > 1 {
        let points: Vec<(f64, f64)> = sm
            .per_layer
            .iter()
            .filter_map(|l| l.vertical_ratio.map(|r| (l.layer as f64, r)))
            .collect();
        let mut v = LineChart::new(
            "Gradient across the layers of the stack",
            Axis::linear("layer k (0 = first above the embedding)"),
            Axis::log("|dJ^(i)/dh^(k)_i| / top layer"),
        );
        v.series.push(Series::line("measured", points.clone()));
        s.blocks.push(fig(
            p.name("gradflow_vertical"),
            Figure::Line(v),
            "The vertical profile: the mean norm of dJ^(i)/dh^(k)_i, the gradient of each step's loss reaching layer k at that same step (it crosses the layers above k and no time step), relative to the top layer. A stack vanishes downward the way a recurrence vanishes backward in time; residual connections add a direct path around every layer.",
        ));
        if let Some(&(_, bottom)) = points.first() {
            part.reading.push(format!(
                "Across the depth of the stack, the gradient reaching layer 0 at the step of its loss is {} of the top layer's ({} layers{}).",
                sci(bottom),
                sm.layers,
                if sm.residual { ", residual connections" } else { ", no residual connections" }
            ));
        }
    }
    if let Some(r) = profile_reading(
        &format!("{model} (top layer)"),
        &top_ratio,
        sm.decay_per_step,
        &sm.input,
        sm.memory_horizon.as_ref(),
    ) {
        part.reading.push(r);
    }
    part.reading
        .push(format!("Regime ({}): {}", sm.regime, sm.regime_reason));
    if let Some(e) = sm.theory_max_rel_error {
        part.reading.push(format!(
            "The measured gradients match the theory g^(i)_(i-l) = g^(i)_i W_hh^l to a relative error of {}{}.",
            sci(e),
            if e < 1e-6 { " (rounding error)" } else { "" }
        ));
    }
    if let (Some(b), Some(ok)) = (sm.bound_per_step, sm.bound_respected) {
        part.reading.push(if ok {
            format!("Every measured gradient ratio stays within the bound (gamma*sigma_1)^l = {}^l.", num(b))
        } else {
            format!("Some measured ratios exceed the bound (gamma*sigma_1)^l = {}^l: that should not happen; please report it.", num(b))
        });
    }

    // The influence view over the text.
    if let Some(t) = &snap.text_influence {
        s.blocks.push(Block::Text(format!(
            "Which earlier tokens each prediction depends on, in window {} of {}: for each chosen target position i, every token j <= i is coloured by |dJ^(i)/dh^(j)|, the size of the gradient of the loss at i with respect to the top layer's state at j{}. Hover a token for its value.",
            t.window,
            sm.input.describe(),
            if t.targets.iter().any(|x| x.cell.is_some()) {
                " (and, in a second line, with respect to the LSTM cell state c^(j))"
            } else {
                ""
            }
        )));
        s.blocks.push(Block::TextInfluence(t.clone()));
    }

    // Influence matrices.
    for k in 0..sm.layers {
        for (cell_state, stem, what, sym) in [
            (false, "influence", "hidden state", "h"),
            (true, "influence_cell", "cell state", "c"),
        ] {
            let path = g.join(output::influence_file(k, cell_state));
            if let Some((n, values)) = output::read_influence(&path)? {
                let title = if sm.layers > 1 {
                    format!("Influence |dJ^(i)/d{sym}^(j)|, layer {k}")
                } else {
                    format!("Influence |dJ^(i)/d{sym}^(j)| ({what})")
                };
                s.blocks.push(fig(
                    p.name(&format!("{stem}_l{k}")),
                    Figure::Heat(HeatMap {
                        title,
                        x_label: format!("source step j (where {sym} is perturbed)"),
                        y_label: "target step i (loss J^(i))".into(),
                        bar_label: format!("mean |dJ^(i)/d{sym}^(j)|  (log scale)"),
                        n,
                        values,
                    }),
                    format!(
                        "How strongly the loss at step i depends on the {what} at step j <= i (mean over the batch, log colour scale; blank above the diagonal: the future cannot influence the past). Colour fading away from the diagonal is vanishing gradient.{}",
                        if n > super::plot::HEAT_MAX_CELLS {
                            format!(" {n} x {n} steps are shown in blocks of {} x {} (block means).", n.div_ceil(super::plot::HEAT_MAX_CELLS), n.div_ceil(super::plot::HEAT_MAX_CELLS))
                        } else {
                            String::new()
                        }
                    ),
                ));
            }
        }
    }

    super::attention::attention_blocks(g, &snap, p, &mut s, part)?;

    // Spectra: of W_hh, or with an LSTM projection of the [P, P] maps W_hr W_block.
    let (w, blocks) = if sm.proj_size > 0 {
        (
            "W_hr W_hh",
            "of W_hr times each gate block of the recurrent weight ([P, P]: the map from h_(t-1) back to h through that gate, before the gates' own factors)",
        )
    } else if is_rnn {
        ("W_hh", "of the recurrent weight")
    } else {
        ("W_hh", "of each gate block of the recurrent weight")
    };
    for sp in &snap.spectrum {
        let k = sp.layer;
        let groups: Vec<PointGroup> = sp
            .gates
            .iter()
            .map(|g| PointGroup {
                name: gate_title(&g.gate),
                points: g
                    .eigenvalues
                    .iter()
                    .map(|z| (z.re, z.im))
                    .filter(|(r, i)| r.is_finite() && i.is_finite())
                    .collect(),
            })
            .filter(|g| !g.points.is_empty())
            .collect();
        let gamma = sp.gamma.or(sm.gamma);
        let mut circles = Vec::new();
        match gamma {
            Some(gm) if (1.0 / gm - 1.0).abs() < 1e-9 => circles.push(CircleGuide {
                name: "|z| = 1 = 1/gamma".into(),
                radius: 1.0,
                dashed: false,
            }),
            Some(gm) => {
                circles.push(CircleGuide {
                    name: "unit circle |z| = 1".into(),
                    radius: 1.0,
                    dashed: false,
                });
                if gm > 0.0 {
                    circles.push(CircleGuide {
                        name: format!("|z| = 1/gamma = {}", num(1.0 / gm)),
                        radius: 1.0 / gm,
                        dashed: true,
                    });
                }
            }
            None => circles.push(CircleGuide {
                name: "unit circle |z| = 1".into(),
                radius: 1.0,
                dashed: false,
            }),
        }
        let rho = sp.rho;
        let layer = of_layer(k);
        s.blocks.push(fig(
            p.name(&format!("eigenvalues_l{k}")),
            Figure::Complex(ComplexPlane {
                title: format!("Eigenvalues of {w}{layer} (rho = {})", num(rho)),
                x_label: "Re(lambda)".into(),
                y_label: "Im(lambda)".into(),
                groups,
                circles,
            }),
            if gamma.is_some() {
                "Eigenvalues of the recurrent weight in the complex plane. With the identity activation, eigenvalues outside the unit circle make gradients explode and inside make them vanish; for a nonlinear activation, all singular values (not just eigenvalues) below 1/gamma guarantee vanishing.".to_string()
            } else {
                format!("Eigenvalues {blocks}. For gated cells they do not decide the gradient flow alone: the forget (LSTM) or update (GRU) gate carries gradient through time additively.")
            },
        ));
    }
    for sp in &snap.spectrum {
        let k = sp.layer;
        let mut c = LineChart::new(
            format!("Singular values of {w}{}", of_layer(k)),
            Axis::linear("index (largest first)"),
            Axis::linear("singular value"),
        );
        for g in &sp.gates {
            let values: Vec<(f64, f64)> = g
                .singular_values
                .iter()
                .filter(|x| x.is_finite())
                .enumerate()
                .map(|(n, &x)| ((n + 1) as f64, x))
                .collect();
            if values.is_empty() {
                continue;
            }
            let mut series = Series::line(gate_title(&g.gate), values);
            if series.points.len() <= 40 {
                series.marker = Some(Marker::Circle);
            }
            c.series.push(series);
        }
        match sp.gamma {
            Some(gm) if gm > 0.0 => c.hlines.push(HLine {
                name: format!("1/gamma = {}", num(1.0 / gm)),
                y: 1.0 / gm,
            }),
            _ => c.hlines.push(HLine {
                name: "1".into(),
                y: 1.0,
            }),
        }
        s.blocks.push(fig(
            p.name(&format!("singular_values_l{k}")),
            Figure::Line(c),
            if is_rnn {
                "Singular values of the recurrent weight, sorted. sigma_1 (the first) bounds how much one step can stretch a gradient: sigma_1 below the dashed line 1/gamma guarantees that the gradient vanishes (Pascanu et al. 2013).".to_string()
            } else {
                format!("Singular values {blocks}, sorted. For a gated cell they bound nothing on their own: the gates scale every path through time, and the cell state (LSTM) or the update gate (GRU) carries gradient additively.")
            },
        ));
    }
    for j in &snap.jacobian {
        let k = j.layer;
        let width = j
            .products
            .iter()
            .map(|r| r.log_singular_values.len())
            .max()
            .unwrap_or(0);
        if width == 0 {
            continue;
        }
        let mut c = LineChart::new(
            format!("Singular values of the Jacobian product{}", of_layer(k)),
            Axis::linear("distance l (time steps)"),
            Axis::log("sigma_m of dh_t / dh_(t-l)"),
        );
        for m in 0..width.min(4) {
            let pts: Vec<(f64, f64)> = j
                .products
                .iter()
                .filter_map(|r| Some((r.distance as f64, r.log_singular_values.get(m)?.exp())))
                .collect();
            c.series.push(Series::line_points(
                format!("sigma_{}", m + 1),
                pts,
                Marker::Circle,
            ));
        }
        s.blocks.push(fig(
            p.name(&format!("jacobian_l{k}")),
            Figure::Line(c),
            format!(
                "Leading singular values of the product of one-step Jacobians along the trajectory of sequence {} (state size {}); sigma_1 is the most a perturbation can grow over l steps.",
                j.batch_index, j.state_dim
            ),
        ));
    }
    part.sections.push(s);
    Ok(())
}
