//! A task run (`rnnscope task`, one run of `demo` or `experiment`): the task's metric and
//! loss against step, with its baseline and success criterion.

use super::common::{
    baseline_name, baseline_word, capitalise, criterion, fig, is_mse, jnum, jstr, length_word,
    metric_axis, metric_value, num, seconds, steps_axis, Part, Prefix,
};
use super::data::Csv;
use super::plot::{Axis, Figure, HLine, LineChart, Marker, Series, PALETTE};
use super::Section;
use serde_json::Value;

/// The part of a task run: `metrics.csv` with a `metric` column, and its `summary.json`.
pub(super) fn task_part(m: &Csv, summary: Option<&Value>, p: &Prefix, part: &mut Part) {
    part.kind = "task".into();
    part.title = summary
        .map(|v| {
            format!(
                "Task run: {} on `{}` ({} {})",
                jstr(v, "label").unwrap_or_default(),
                jstr(v, "task").unwrap_or_default(),
                length_word(&jstr(v, "task").unwrap_or_default()),
                jstr(v, "length").unwrap_or_default()
            )
        })
        .unwrap_or_else(|| "Task run".into());
    let mut s = Section::new(p.name("task"), "Training on the task");
    let metric_name = summary
        .and_then(|v| jstr(v, "metric_name"))
        .unwrap_or_else(|| "metric".into());
    // Copy runs written before `baseline_name` existed stored the loss baseline there.
    let baseline = summary
        .filter(|v| {
            jstr(v, "task").as_deref() != Some("copy") || jstr(v, "baseline_name").is_some()
        })
        .and_then(|v| jnum(v, "baseline"));
    let loss_baseline = summary.and_then(|v| jnum(v, "loss_baseline"));
    let metric = m.pairs("step", "metric");
    if !metric.is_empty() {
        let mut c = LineChart::new(
            format!("{} against training step", capitalise(&metric_name)),
            steps_axis(),
            metric_axis(&metric_name),
        );
        c.series.push(
            Series::line_points(&metric_name, metric.clone(), Marker::Circle).color(PALETTE[0]),
        );
        if let Some(b) = baseline {
            c.hlines.push(HLine {
                name: baseline_name(&metric_name, b),
                y: b,
            });
        }
        c.hlines.push(criterion(&metric_name));
        s.blocks.push(fig(
            p.name("metric"),
            Figure::Line(c),
            format!("{metric_name} on the held-out test sequences at each evaluation, with the level a model reaches without learning the long-range dependency and the success criterion."),
        ));
    }
    let train = m.pairs("step", "train_loss");
    let test = m.pairs("step", "valid_loss");
    if !train.is_empty() || !test.is_empty() {
        let y = if is_mse(&metric_name) {
            Axis::log("loss (mean squared error)")
        } else {
            Axis::linear("loss (nats per scored token)")
        };
        let mut c = LineChart::new("Loss against training step", steps_axis(), y);
        c.series.push(
            Series::line_points(
                "train (mean since the last evaluation)",
                train,
                Marker::Circle,
            )
            .color(PALETTE[0]),
        );
        c.series
            .push(Series::line_points("test", test, Marker::Triangle).color(PALETTE[1]));
        let caption = match loss_baseline {
            Some(b) => {
                c.hlines.push(HLine {
                    name: format!("memoryless loss baseline ({})", num(b)),
                    y: b,
                });
                "Task loss on the training sequences (averaged between evaluations) and on the held-out test set, with the loss of the best model that remembers nothing (a loss, not an accuracy)."
            }
            None => "Task loss on the training sequences (averaged between evaluations) and on the held-out test set.",
        };
        s.blocks
            .push(fig(p.name("task_loss"), Figure::Line(c), caption));
    }
    if let Some(v) = summary {
        let task = jstr(v, "task").unwrap_or_default();
        let length = jnum(v, "length").unwrap_or(f64::NAN);
        let label = jstr(v, "label").unwrap_or_default();
        let final_metric = jnum(v, "metric");
        let solved = v.get("solved").and_then(Value::as_bool);
        let fmt_metric = |x: f64| metric_value(&metric_name, x);
        part.headline.push((
            "task".into(),
            format!("{task}, {} {length:.0}", length_word(&task)),
        ));
        part.headline.push(("model".into(), label.clone()));
        if let Some(x) = final_metric {
            part.headline.push((metric_name.clone(), fmt_metric(x)));
        }
        if let Some(x) = jnum(v, "best_metric") {
            part.headline
                .push((format!("best {metric_name}"), fmt_metric(x)));
        }
        if let Some(b) = baseline {
            part.headline
                .push((baseline_word(&metric_name).into(), fmt_metric(b)));
        }
        if let Some(b) = loss_baseline {
            part.headline
                .push(("memoryless loss baseline".into(), num(b)));
        }
        if let Some(sv) = solved {
            part.headline
                .push(("solved".into(), if sv { "yes" } else { "no" }.into()));
        }
        if let Some(u) = jnum(v, "updates") {
            part.headline.push(("updates".into(), format!("{u:.0}")));
        }
        if let Some(t) = jnum(v, "seconds") {
            part.headline.push(("training time".into(), seconds(t)));
        }
        if let (Some(x), Some(sv)) = (final_metric, solved) {
            let vs = baseline.map_or(String::new(), |b| {
                format!(" ({} {})", baseline_word(&metric_name), fmt_metric(b))
            });
            let near_chance = baseline.is_some_and(|b| {
                if is_mse(&metric_name) {
                    x > 0.8 * b
                } else {
                    x < b + 0.05
                }
            });
            part.reading.push(format!(
                "{label} {} the {task} task at {} {length:.0}: {metric_name} {}{vs} after {} updates{}.",
                if sv { "solved" } else { "did not solve" },
                length_word(&task),
                fmt_metric(x),
                jnum(v, "updates").map_or("?".into(), |u| format!("{u:.0}")),
                if !sv && near_chance {
                    ": no better than a model that ignores the long-range dependency"
                } else {
                    ""
                }
            ));
        }
    }
    part.sections.push(s);
}
