//! A training run (`rnnscope train`): loss, perplexity, gradient norm and learning rate
//! against step, with the headline numbers of `summary.json`.

use super::common::{fig, jnum, jstr, num, seconds, steps_axis, Part, Prefix, MAX_POINTS};
use super::data::Csv;
use super::plot::{downsample, Axis, Figure, LineChart, Marker, Series, PALETTE};
use super::Section;
use serde_json::Value;

/// `lstm, 2 x 128, embedding 64` from the `model` object of `summary.json` (`lstm with
/// projection 32, ...` for a projected LSTM).
fn model_text(m: &Value) -> Option<String> {
    let cell = jstr(m, "cell")?;
    let act = jstr(m, "activation").unwrap_or_default();
    let cell = match jnum(m, "proj_size") {
        _ if cell == "rnn" => format!("rnn ({act})"),
        Some(p) if p > 0.0 => format!("{cell} with projection {p:.0}"),
        _ => cell,
    };
    Some(format!(
        "{cell}, {} x {}, embedding {}",
        jstr(m, "layers").unwrap_or_default(),
        jstr(m, "hidden").unwrap_or_default(),
        jstr(m, "embedding").unwrap_or_default()
    ))
}

/// The part of a training run: `metrics.csv`, its `summary.json` and the gradient-norm
/// clipping threshold of its `config.toml` (`clip`; 0 = off, `None` = not known).
pub(super) fn train_part(
    m: &Csv,
    summary: Option<&Value>,
    clip: Option<f64>,
    p: &Prefix,
    part: &mut Part,
) {
    part.kind = "train".into();
    part.title = summary
        .and_then(|v| v.get("model"))
        .and_then(model_text)
        .map_or("Training run".into(), |m| format!("Training run: {m}"));
    let mut s = Section::new(p.name("training"), "Training");
    let train = m.pairs("step", "train_loss");
    let valid = m.pairs("step", "valid_loss");
    let per = train.len().div_ceil(MAX_POINTS);
    let train_name = if per > 1 {
        format!("train (mean of {per} updates)")
    } else {
        "train (each update)".to_string()
    };
    if !train.is_empty() || !valid.is_empty() {
        let mut c = LineChart::new(
            "Loss against training step",
            steps_axis(),
            Axis::linear("loss (nats per token)"),
        );
        c.series
            .push(Series::line(&train_name, downsample(&train, MAX_POINTS)).color(PALETTE[0]));
        if !valid.is_empty() {
            c.series.push(
                Series::line_points("validation", valid.clone(), Marker::Circle).color(PALETTE[1]),
            );
        }
        s.blocks.push(fig(
            p.name("loss"),
            Figure::Line(c.clone()),
            "Cross-entropy loss per token of the training windows and, at each evaluation, of the validation text.",
        ));
        let exp = |v: &[(f64, f64)]| -> Vec<(f64, f64)> {
            v.iter().map(|&(x, y)| (x, y.exp())).collect()
        };
        let mut q = LineChart::new(
            "Perplexity against training step",
            steps_axis(),
            Axis::log("perplexity (exp of the loss)"),
        );
        q.series.push(
            Series::line(&train_name, downsample(&exp(&train), MAX_POINTS)).color(PALETTE[0]),
        );
        if !valid.is_empty() {
            q.series.push(
                Series::line_points("validation", exp(&valid), Marker::Circle).color(PALETTE[1]),
            );
        }
        s.blocks.push(fig(
            p.name("perplexity"),
            Figure::Line(q),
            "Perplexity = exp(loss): the effective number of equally likely next tokens (log scale).",
        ));
    }
    let norm = m.pairs("step", "grad_norm");
    if !norm.is_empty() {
        let mut c = LineChart::new(
            "Gradient norm against training step",
            steps_axis(),
            Axis::log("gradient norm (L2, before clipping)"),
        );
        c.series.push(
            Series::line(
                if per > 1 {
                    format!("mean of {per} updates")
                } else {
                    "each update".into()
                },
                downsample(&norm, MAX_POINTS),
            )
            .color(PALETTE[2]),
        );
        let clipping = match clip {
            Some(c) if c > 0.0 => format!(
                " This run clipped the norm at {c}: no update used a larger gradient than that."
            ),
            Some(_) => " This run did not clip: every update used the gradient as plotted.".into(),
            None => String::new(),
        };
        s.blocks.push(fig(
            p.name("grad_norm"),
            Figure::Line(c),
            format!("L2 norm of the gradient of all parameters at each update, before clipping (log scale). Exploding gradients show as spikes: updates whose gradient is far larger than their neighbours'.{clipping}"),
        ));
    }
    let lr = m.pairs("step", "lr");
    if lr.windows(2).any(|w| w[0].1 != w[1].1) {
        let mut c = LineChart::new(
            "Learning rate against training step",
            steps_axis(),
            Axis::log("learning rate"),
        );
        c.series
            .push(Series::line("learning rate", downsample(&lr, MAX_POINTS)).color(PALETTE[3]));
        s.blocks.push(fig(
            p.name("lr"),
            Figure::Line(c),
            "The learning rate the schedule set at each update.",
        ));
    }

    // Headline and reading.
    if let Some(sm) = summary {
        let mut h = Vec::new();
        if let Some(m) = sm.get("model").and_then(model_text) {
            h.push(("model".into(), m));
        }
        if let (Some(st), Some(total)) = (jnum(sm, "step"), jnum(sm, "steps")) {
            h.push((
                "updates".into(),
                format!(
                    "{st:.0} of {total:.0} ({})",
                    jstr(sm, "status").unwrap_or_default()
                ),
            ));
        }
        if let Some(b) = jnum(sm, "best_valid_loss") {
            h.push((
                "best validation loss".into(),
                format!(
                    "{b:.4} nats/token (update {})",
                    jnum(sm, "best_step").map_or("?".into(), |s| format!("{s:.0}"))
                ),
            ));
            h.push(("best validation perplexity".into(), num(b.exp())));
            h.push((
                "bits per token".into(),
                format!("{:.4}", b / std::f64::consts::LN_2),
            ));
        }
        if let Some(t) = jnum(sm, "test_loss") {
            h.push((
                "test loss".into(),
                format!("{t:.4} (perplexity {})", num(t.exp())),
            ));
        }
        if let Some(t) = jnum(sm, "tokens_per_s") {
            h.push(("throughput".into(), format!("{t:.0} tokens/s")));
        }
        if let Some(t) = jnum(sm, "seconds") {
            h.push(("training time".into(), seconds(t)));
        }
        if let Some(t) = jnum(sm, "params") {
            h.push(("parameters".into(), format!("{t:.0}")));
        }
        part.headline.extend(h);
    }
    if train.len() >= 2 {
        let k = (train.len() / 20).max(1);
        let mean = |v: &[(f64, f64)]| v.iter().map(|p| p.1).sum::<f64>() / v.len() as f64;
        let (a, b) = (mean(&train[..k]), mean(&train[train.len() - k..]));
        part.reading.push(format!(
            "The training loss {} from {a:.3} to {b:.3} nats per token over {} updates{}.",
            if b < a { "fell" } else { "rose" },
            train.last().map_or(0.0, |p| p.0),
            if k > 1 {
                format!(" (means of the first and last {k} updates)")
            } else {
                String::new()
            }
        ));
    }
    if let Some((&best, &last)) = valid
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .zip(valid.last())
    {
        part.reading.push(format!(
            "The best validation loss is {:.4} nats per token (perplexity {}, {:.3} bits per token) at update {:.0}.",
            best.1,
            num(best.1.exp()),
            best.1 / std::f64::consts::LN_2,
            best.0
        ));
        if last.0 > best.0 && last.1 > best.1 * 1.03 {
            // Overfitting only if the training loss kept falling meanwhile (means of the
            // updates up to the best evaluation and after the last one's predecessor).
            let span = |lo: f64, hi: f64| -> Option<f64> {
                let v: Vec<f64> = train
                    .iter()
                    .filter(|p| p.0 > lo && p.0 <= hi)
                    .map(|p| p.1)
                    .collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            };
            let before = valid
                .iter()
                .rev()
                .find(|v| v.0 < best.0)
                .map_or(0.0, |v| v.0);
            let after = valid
                .iter()
                .rev()
                .find(|v| v.0 < last.0)
                .map_or(best.0, |v| v.0);
            let rise = format!(
                "Since then the validation loss has risen {:.0}% (to {:.4} at update {:.0})",
                100.0 * (last.1 / best.1 - 1.0),
                last.1,
                last.0
            );
            part.reading.push(match (span(before, best.0), span(after, last.0)) {
                (Some(a), Some(b)) if b < a => format!(
                    "{rise} while the training loss kept falling ({a:.3} to {b:.3}): the model is overfitting; more dropout, a smaller model or stopping near update {:.0} would help.",
                    best.0
                ),
                (Some(a), Some(b)) => format!(
                    "{rise}, and the training loss did not fall meanwhile ({a:.3} to {b:.3}): training itself got worse, which is not overfitting; a lower learning rate or stronger clipping would help."
                ),
                _ => format!("{rise}."),
            });
        }
    }
    let bad = m.non_finite("train_loss");
    if bad > 0 {
        part.reading.push(format!(
            "{bad} updates had a non-finite loss or gradient and were skipped (gaps in the curves): lower the learning rate or clip gradients."
        ));
    }
    part.sections.push(s);
}
