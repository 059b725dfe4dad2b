//! Plots and reports, checked structurally: every SVG parses as XML and draws the expected
//! number of series and points with its labels; PNGs decode at the figure's size; reports of
//! generated run directories inline every plot their files allow and reference nothing outside.

mod common;

use common::TempDir;

use rnnscope::analysis;
use rnnscope::data::tasks::{Task, TaskKind};
use rnnscope::report::plot::{
    Axis, CircleGuide, ComplexPlane, Figure, Guide, HLine, HeatMap, LineChart, Marker, PointGroup,
    Series, COLORBAR_STEPS, DATA_STROKE, GUIDE, PALETTE,
};
use rnnscope::report::{self, Options};
use rnnscope::train::task::{run_task, TaskRunConfig};
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_rnnscope");

/// Parses an SVG document; panics with the parser's message if it is not well-formed XML.
fn parse(svg: &str) -> roxmltree::Document<'_> {
    let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("SVG does not parse: {e}"));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc
}

fn elements<'a, 'i>(doc: &'a roxmltree::Document<'i>, tag: &str) -> Vec<roxmltree::Node<'a, 'i>> {
    doc.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == tag)
        .collect()
}

/// Point counts of the data series (polylines of the data stroke width), in drawing order.
fn series_points(doc: &roxmltree::Document<'_>) -> Vec<usize> {
    let width = DATA_STROKE.to_string();
    elements(doc, "polyline")
        .iter()
        .filter(|n| n.attribute("stroke-width") == Some(width.as_str()))
        .map(|n| {
            n.attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .count()
        })
        .collect()
}

fn series_colors(doc: &roxmltree::Document<'_>) -> Vec<String> {
    let width = DATA_STROKE.to_string();
    elements(doc, "polyline")
        .iter()
        .filter(|n| n.attribute("stroke-width") == Some(width.as_str()))
        .map(|n| n.attribute("stroke").unwrap_or("").to_string())
        .collect()
}

/// Every text drawn (trimmed), plus the `<title>`.
fn texts(doc: &roxmltree::Document<'_>) -> Vec<String> {
    doc.descendants()
        .filter(|n| n.is_element() && matches!(n.tag_name().name(), "text" | "title"))
        .map(|n| n.text().unwrap_or("").trim().to_string())
        .collect()
}

fn has_text(doc: &roxmltree::Document<'_>, want: &str) -> bool {
    texts(doc).iter().any(|t| t == want)
}

fn hex(c: (u8, u8, u8)) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

fn line_chart() -> LineChart {
    let mut c = LineChart::new(
        "Gradient profile R(l)",
        Axis::linear("distance l (time steps)"),
        Axis::log("R(l) = P(l) / P(0)"),
    );
    c.series.push(Series::line(
        "rnn",
        (0..25).map(|l| (l as f64, 0.5f64.powi(l))).collect(),
    ));
    c.series.push(Series::line_points(
        "lstm",
        (0..10).map(|l| (l as f64, 0.9f64.powi(l))).collect(),
        Marker::Triangle,
    ));
    c.series.push(Series::line(
        "gru",
        (0..40).map(|l| (l as f64 * 0.5, 0.8f64.powi(l))).collect(),
    ));
    c.guides.push(Guide {
        name: "bound (gamma*sigma_1)^l".into(),
        points: (0..25).map(|l| (l as f64, 0.95f64.powi(l))).collect(),
        color: GUIDE,
    });
    c.hlines.push(HLine {
        name: "1e-3".into(),
        y: 1e-3,
    });
    c
}

#[test]
fn line_chart_svg_has_one_polyline_per_series_with_every_point_and_its_labels() {
    let svg = Figure::Line(line_chart()).svg().unwrap();
    let doc = parse(&svg);
    let root = doc.root_element();
    assert_eq!(root.attribute("width"), Some("760"));
    assert_eq!(root.attribute("height"), Some("440"));
    assert_eq!(series_points(&doc), vec![25, 10, 40]);
    // Palette colours in order (Okabe-Ito), one per series.
    assert_eq!(
        series_colors(&doc),
        PALETTE[..3].iter().map(|&c| hex(c)).collect::<Vec<_>>()
    );
    for want in [
        "Gradient profile R(l)",
        "distance l (time steps)",
        "R(l) = P(l) / P(0)",
        "rnn",
        "lstm",
        "gru",
        "bound (gamma*sigma_1)^l",
    ] {
        assert!(
            has_text(&doc, want),
            "missing text `{want}` in {:?}",
            texts(&doc)
        );
    }
    // Log axis: decades in scientific notation, down to the smallest value (0.5^24 ~ 6e-8).
    let t = texts(&doc);
    for want in ["1e0", "1e-4", "1e-8"] {
        assert!(t.iter().any(|x| x == want), "tick `{want}` missing: {t:?}");
    }
    // Markers of the second series: a triangle per point, plus one in the legend.
    assert_eq!(elements(&doc, "polygon").len(), 10 + 1);
    // Every data series is inside the plotting area (no coordinates beyond the canvas).
    for p in elements(&doc, "polyline") {
        for xy in p.attribute("points").unwrap().split_whitespace() {
            let (x, y) = xy.split_once(',').unwrap();
            let (x, y): (i32, i32) = (x.parse().unwrap(), y.parse().unwrap());
            assert!((0..=760).contains(&x) && (0..=440).contains(&y), "{xy}");
        }
    }
}

/// The tick labels of one axis as `(pixel, value)`: the numeric `<text>` elements with the
/// axis's anchor (`end` for y labels, left of the axis; `middle` for x labels, below it), at
/// their `y` (y axis) or `x` (x axis) attribute.
fn tick_labels(doc: &roxmltree::Document<'_>, anchor: &str, coord: &str) -> Vec<(f64, f64)> {
    elements(doc, "text")
        .iter()
        .filter(|n| n.attribute("text-anchor") == Some(anchor))
        .filter_map(|n| {
            let value: f64 = n.text()?.trim().parse().ok()?;
            Some((n.attribute(coord)?.parse().ok()?, value))
        })
        .collect()
}

/// The axis map `pixel = a + b g(value)` (g = log10 on a log axis) fitted by least squares to
/// the tick labels, which must all lie on it to within a pixel.
fn axis_map(ticks: &[(f64, f64)], log: bool, what: &str) -> (f64, f64) {
    assert!(ticks.len() >= 3, "{what}: tick labels {ticks:?}");
    let g = |v: f64| if log { v.log10() } else { v };
    let n = ticks.len() as f64;
    let mx = ticks.iter().map(|t| g(t.1)).sum::<f64>() / n;
    let my = ticks.iter().map(|t| t.0).sum::<f64>() / n;
    let sxy: f64 = ticks.iter().map(|t| (g(t.1) - mx) * (t.0 - my)).sum();
    let sxx: f64 = ticks.iter().map(|t| (g(t.1) - mx).powi(2)).sum();
    let b = sxy / sxx;
    let a = my - b * mx;
    for &(px, v) in ticks {
        let off = (a + b * g(v) - px).abs();
        assert!(
            off <= 1.0,
            "{what}: label {v} at {px} is {off:.2} px off the axis"
        );
    }
    (a, b)
}

/// Every drawn data point, mapped back through the axes that the tick labels define, lands on
/// the datum it stands for to within a pixel (coordinates are whole pixels): for a linear x
/// axis with a log y axis and for linear axes with negative values. Larger values are drawn
/// further right and higher up; a flipped or mislabelled axis fails.
#[test]
fn drawn_points_map_back_through_the_axes_to_the_data() {
    let xs: Vec<f64> = (1..=40).map(|i| i as f64).collect();
    let decaying: Vec<(f64, f64)> = xs
        .iter()
        .map(|&x| (x, 10f64.powf(-0.08 * x) * (1.5 + x.sin())))
        .collect();
    let slow: Vec<(f64, f64)> = xs.iter().map(|&x| (x, 10f64.powf(-0.03 * x))).collect();
    let wave: Vec<(f64, f64)> = xs
        .iter()
        .map(|&x| (x * 2.5 - 20.0, 3.0 * (x / 5.0).sin() + 0.5))
        .collect();
    let mut log = LineChart::new("log", Axis::linear("x"), Axis::log("y"));
    log.series.push(Series::line("decaying", decaying.clone()));
    log.series.push(Series::line("slow", slow.clone()));
    let mut lin = LineChart::new("linear", Axis::linear("x"), Axis::linear("y"));
    lin.series.push(Series::line("wave", wave.clone()));
    for (chart, ylog, data) in [(log, true, vec![decaying, slow]), (lin, false, vec![wave])] {
        let title = chart.title.clone();
        let svg = Figure::Line(chart).svg().unwrap();
        let doc = parse(&svg);
        let (ax, bx) = axis_map(
            &tick_labels(&doc, "middle", "x"),
            false,
            &format!("{title} x"),
        );
        let (ay, by) = axis_map(&tick_labels(&doc, "end", "y"), ylog, &format!("{title} y"));
        assert!(bx > 0.0, "{title}: larger x drawn further left");
        assert!(by < 0.0, "{title}: larger y drawn lower");
        let width = DATA_STROKE.to_string();
        let lines: Vec<Vec<(f64, f64)>> = elements(&doc, "polyline")
            .iter()
            .filter(|n| n.attribute("stroke-width") == Some(width.as_str()))
            .map(|n| {
                n.attribute("points")
                    .unwrap()
                    .split_whitespace()
                    .map(|pt| {
                        let (x, y) = pt.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect()
            })
            .collect();
        assert_eq!(lines.len(), data.len(), "{title}: one polyline per series");
        let g = |v: f64| if ylog { v.log10() } else { v };
        for (k, (drawn, want)) in lines.iter().zip(&data).enumerate() {
            assert_eq!(drawn.len(), want.len(), "{title} series {k}");
            for (&(px, py), &(x, y)) in drawn.iter().zip(want) {
                let (dx, dy) = ((px - ax) / bx - x, (py - ay) / by - g(y));
                assert!(
                    dx.abs() <= 1.0 / bx.abs() && dy.abs() <= 1.0 / by.abs(),
                    "{title} series {k}: ({px}, {py}) maps back {dx:+.3}, {dy:+.3} from ({x}, {y})"
                );
            }
        }
    }
}

#[test]
fn points_a_log_axis_cannot_show_are_left_out() {
    let mut c = LineChart::new("t", Axis::linear("x"), Axis::log("y"));
    c.series.push(Series::line(
        "s",
        vec![
            (0.0, 1.0),
            (1.0, 0.0),
            (2.0, -1.0),
            (3.0, f64::NAN),
            (4.0, 0.1),
            (5.0, 0.01),
        ],
    ));
    let svg = Figure::Line(c).svg().unwrap();
    assert_eq!(series_points(&parse(&svg)), vec![3]);
}

#[test]
fn long_series_are_averaged_to_at_most_the_asked_number_of_points() {
    let pts: Vec<(f64, f64)> = (0..10_000).map(|k| (k as f64, 1.0)).collect();
    let d = rnnscope::report::plot::downsample(&pts, 1500);
    assert!(d.len() <= 1500 && d.len() >= 1400, "{}", d.len());
    let mut c = LineChart::new("t", Axis::linear("step"), Axis::linear("loss"));
    c.series.push(Series::line("train", d.clone()));
    assert_eq!(
        series_points(&parse(&Figure::Line(c).svg().unwrap())),
        vec![d.len()]
    );
}

#[test]
fn marker_only_series_draw_a_marker_per_point() {
    let mut c = LineChart::new("t", Axis::linear("x"), Axis::linear("y").range(0.0, 1.0));
    c.series.push(Series::points(
        "acc",
        (0..7).map(|k| (k as f64, 0.1 * k as f64)).collect(),
        Marker::Circle,
    ));
    let doc_text = Figure::Line(c).svg().unwrap();
    let doc = parse(&doc_text);
    assert!(
        series_points(&doc).is_empty(),
        "no line for a marker-only series"
    );
    assert_eq!(
        elements(&doc, "circle").len(),
        7 + 1,
        "7 points + the legend's"
    );
}

fn lower_triangle(n: usize) -> Vec<f64> {
    (0..n * n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            if j <= i {
                0.7f64.powi((i - j) as i32)
            } else {
                f64::NAN
            }
        })
        .collect()
}

fn heat(n: usize) -> HeatMap {
    HeatMap {
        title: "Influence |dJ^(i)/dh^(j)|".into(),
        x_label: "source step j".into(),
        y_label: "target step i".into(),
        bar_label: "mean |dJ^(i)/dh^(j)|".into(),
        n,
        values: lower_triangle(n),
    }
}

#[test]
fn heat_map_draws_the_lower_triangle_and_a_log_colour_bar() {
    let n = 12;
    let svg = Figure::Heat(heat(n)).svg().unwrap();
    let doc = parse(&svg);
    let rects = elements(&doc, "rect").len();
    // Background, one cell per (i, j <= i), the colour bar's steps.
    assert_eq!(rects, 1 + n * (n + 1) / 2 + COLORBAR_STEPS);
    for want in [
        "Influence |dJ^(i)/dh^(j)|",
        "source step j",
        "target step i",
        "mean |dJ^(i)/dh^(j)|",
        "1e0",
    ] {
        assert!(
            has_text(&doc, want),
            "missing `{want}` in {:?}",
            texts(&doc)
        );
    }
    // Log colour scale: 0.7^11 ~ 2e-2, so the bar spans two decades.
    assert!(has_text(&doc, "1e-2"), "{:?}", texts(&doc));
    // The diagonal is the brightest colour of viridis, the far corner darker.
    let fills: Vec<&str> = elements(&doc, "rect")
        .iter()
        .filter_map(|r| r.attribute("fill"))
        .collect();
    assert!(fills.len() >= n * (n + 1) / 2);
}

#[test]
fn heat_map_of_a_long_window_is_drawn_in_blocks() {
    let n = 200;
    let svg = Figure::Heat(heat(n)).svg().unwrap();
    let doc = parse(&svg);
    // 200 steps in blocks of 4: 50 x 50 blocks, 1275 on or below the diagonal.
    assert_eq!(
        elements(&doc, "rect").len(),
        1 + 50 * 51 / 2 + COLORBAR_STEPS
    );
    assert!(svg.len() < 400_000, "{} bytes", svg.len());
}

#[test]
fn complex_plane_draws_every_eigenvalue_the_unit_circle_and_the_1_over_gamma_circle() {
    let pts: Vec<(f64, f64)> = (0..9)
        .map(|k| {
            let a = k as f64 * 0.7;
            (0.5 * a.cos(), 0.5 * a.sin())
        })
        .collect();
    let c = ComplexPlane {
        title: "Eigenvalues of W_hh".into(),
        x_label: "Re(lambda)".into(),
        y_label: "Im(lambda)".into(),
        groups: vec![PointGroup {
            name: "W_hh".into(),
            points: pts,
        }],
        circles: vec![
            CircleGuide {
                name: "unit circle |z| = 1".into(),
                radius: 1.0,
                dashed: false,
            },
            CircleGuide {
                name: "|z| = 1/gamma = 4".into(),
                radius: 4.0,
                dashed: true,
            },
        ],
    };
    let svg = Figure::Complex(c).svg().unwrap();
    let doc = parse(&svg);
    assert_eq!(
        elements(&doc, "circle").len(),
        9 + 1,
        "9 eigenvalues + the legend's"
    );
    // The unit circle: one solid polyline of 181 points.
    let solid: Vec<usize> = elements(&doc, "polyline")
        .iter()
        .filter(|p| p.attribute("points").unwrap().split_whitespace().count() == 181)
        .map(|_| 1)
        .collect();
    assert_eq!(solid.len(), 1);
    // The dashed 1/gamma circle: many short dashes.
    assert!(elements(&doc, "polyline").len() > 20);
    for want in [
        "Eigenvalues of W_hh",
        "Re(lambda)",
        "Im(lambda)",
        "unit circle |z| = 1",
        "|z| = 1/gamma = 4",
    ] {
        assert!(has_text(&doc, want), "missing `{want}`");
    }
}

fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn png_decodes_with_the_figure_size_and_shows_the_data_colours() {
    let figs = [
        Figure::Line(line_chart()),
        Figure::Heat(heat(30)),
        Figure::Complex(ComplexPlane {
            title: "Eigenvalues".into(),
            x_label: "Re".into(),
            y_label: "Im".into(),
            groups: vec![PointGroup {
                name: "W_hh".into(),
                points: vec![(0.5, 0.5), (-0.3, 0.0)],
            }],
            circles: vec![CircleGuide {
                name: "|z| = 1".into(),
                radius: 1.0,
                dashed: false,
            }],
        }),
    ];
    for f in &figs {
        let (w, h, px) = decode(&f.png().unwrap());
        assert_eq!((w, h), f.size(), "{}", f.title());
        let non_white = px.chunks(3).filter(|p| p != &[255, 255, 255]).count();
        let frac = non_white as f64 / (w * h) as f64;
        assert!(frac > 0.01, "{}: {frac} non-white", f.title());
        let blue = px.chunks(3).filter(|p| p == &[0, 114, 178]).count();
        let first = match f {
            Figure::Heat(_) => continue,
            _ => blue,
        };
        assert!(
            first > 20,
            "{}: the first palette colour is drawn",
            f.title()
        );
    }
    // Heat map: many distinct colours (viridis).
    let (_, _, px) = decode(&figs[1].png().unwrap());
    let mut colors: Vec<&[u8]> = px.chunks(3).collect();
    colors.sort();
    colors.dedup();
    assert!(colors.len() > 50, "{} colours", colors.len());
}

/// A task run with its gradient-flow analysis, made with the library (as `demo` makes them).
fn task_run(dir: &Path, length: usize, cell: rnnscope::CellKind) {
    let mut cfg = TaskRunConfig::new(TaskKind::Dependency, length);
    cfg.cell = cell;
    cfg.hidden = 8;
    cfg.embedding = 4;
    cfg.batch = 8;
    cfg.steps = 20;
    cfg.eval_every = 10;
    cfg.test_size = 16;
    let (_, model) = run_task(&cfg, Some(dir), &mut |_| {}).unwrap();
    let task = Task::new(TaskKind::Dependency, length).unwrap();
    use rand::SeedableRng;
    let b = task.generate(4, &mut rand::rngs::StdRng::seed_from_u64(1));
    let snap = analysis::snapshot(
        &model,
        &b.tokens,
        &b.targets,
        None,
        b.batch,
        &Default::default(),
    )
    .unwrap();
    analysis::output::write_dir(&dir.join("gradflow"), &snap).unwrap();
}

/// Every inline `<svg>...</svg>` of a page.
fn inline_svgs(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(a) = rest.find("<svg ") {
        let b = rest[a..].find("</svg>").expect("closed svg") + a + "</svg>".len();
        out.push(&rest[a..b]);
        rest = &rest[b..];
    }
    out
}

/// The page is self-contained: no scripts, images, stylesheets or fonts from elsewhere.
fn assert_self_contained(html: &str) {
    let lower = html.to_ascii_lowercase();
    for bad in [
        "<script",
        "<img",
        "<link",
        "<iframe",
        " src=",
        "url(",
        "@import",
        "href=\"http",
    ] {
        assert!(!lower.contains(bad), "the report contains `{bad}`");
    }
}

#[test]
fn report_of_a_task_run_inlines_every_plot_its_files_allow() {
    let dir = TempDir::new("task");
    let run = dir.join("run");
    task_run(&run, 6, rnnscope::CellKind::Lstm);
    let w = report::write(&run, &Options::default()).unwrap();
    assert_eq!(w.html, run.join("report.html"));
    let html = std::fs::read_to_string(&w.html).unwrap();
    assert_self_contained(&html);
    let svgs = inline_svgs(&html);
    assert_eq!(svgs.len(), w.figures);
    for s in &svgs {
        parse(s);
    }
    // Task curves, the gradient profile with the cell state, both influence matrices, the
    // spectrum and the Jacobian products.
    for id in [
        "fig-metric",
        "fig-task_loss",
        "fig-gradflow_profile",
        "fig-influence_l0",
        "fig-influence_cell_l0",
        "fig-eigenvalues_l0",
        "fig-singular_values_l0",
        "fig-jacobian_l0",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "no figure {id}");
    }
    assert_eq!(w.figures, 8);
    // LSTM profile: hidden state and cell state, one line each.
    let profile = std::fs::read_to_string(run.join("plots/gradflow_profile.svg")).unwrap();
    assert_eq!(series_points(&parse(&profile)).len(), 2);
    // Eigenvalues: one marker per eigenvalue of the four gate blocks (H = 8), plus the legend.
    let eig = std::fs::read_to_string(run.join("plots/eigenvalues_l0.svg")).unwrap();
    let d = parse(&eig);
    let markers = ["circle", "polygon", "rect"]
        .iter()
        .map(|t| elements(&d, t).len())
        .sum::<usize>();
    assert_eq!(
        markers,
        1 + 4 * 8 + 4 + 1,
        "background, 32 eigenvalues, 4 legend markers, the unit circle's legend swatch"
    );
    for text in [
        "What the plots show",
        "config.toml",
        "Gradient flow through time",
        "(top layer), measured on",
    ] {
        assert!(html.contains(text), "missing `{text}`");
    }
    // One SVG file per figure; no PNG unless asked.
    let files: Vec<_> = std::fs::read_dir(run.join("plots")).unwrap().collect();
    assert_eq!(files.len(), 8);
}

#[test]
fn png_files_on_request_and_report_elsewhere() {
    let dir = TempDir::new("png");
    let run = dir.join("run");
    task_run(&run, 6, rnnscope::CellKind::Rnn);
    let out = Command::new(BIN)
        .args(["report", run.to_str().unwrap(), "--png", "--out"])
        .arg(dir.join("elsewhere/r.html"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("elsewhere/r.html").exists());
    let plots = dir.join("elsewhere/plots");
    let mut pngs = 0;
    for e in std::fs::read_dir(&plots).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "png") {
            pngs += 1;
            let (w, h, _) = decode(&std::fs::read(&p).unwrap());
            assert!(w >= 600 && h >= 400, "{}: {w} x {h}", p.display());
            assert!(p.with_extension("svg").exists());
        }
    }
    // Vanilla RNN: no cell-state influence matrix.
    assert_eq!(pngs, 7);
}

/// A demo directory written by hand: results.csv and two runs with their profiles.
fn fake_demo(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("results.csv"),
        "cell,distance,accuracy,chance,gradient_ratio,decay_per_step,updates,seconds\n\
         lstm,6,1,0.125,0.13,0.73,500,1.4\nrnn,6,1,0.125,0.66,0.83,750,0.6\n\
         lstm,10,1,0.125,0.15,0.77,1000,3.4\nrnn,10,0.127,0.125,4.3e-7,0.32,6000,6.2\n",
    )
    .unwrap();
    for (cell, label, l, rate) in [
        ("lstm", "lstm", 6usize, 0.8),
        ("rnn", "rnn-tanh", 6, 0.6),
        ("lstm", "lstm", 10, 0.8),
        ("rnn", "rnn-tanh", 10, 0.3),
    ] {
        let run = dir.join(format!("{cell}_l{l}"));
        std::fs::create_dir_all(run.join("gradflow")).unwrap();
        std::fs::write(
            run.join("summary.json"),
            format!(
                r#"{{"task":"dependency","length":{l},"label":"{label}","metric_name":"accuracy","metric":0.9,"best_metric":0.9,"baseline":0.125,"solved":false,"test_loss":0.5,"updates":20,"sequences_seen":160,"seconds":1.0}}"#
            ),
        )
        .unwrap();
        std::fs::write(
            run.join("metrics.csv"),
            "step,train_loss,valid_loss,lr,grad_norm,tokens_per_s,metric\n10,1.0,0.9,0.001,0.5,1000,0.2\n20,0.8,0.7,0.001,0.4,1000,0.9\n",
        )
        .unwrap();
        let mut prof = String::from("distance,mean,median,p10,p90,ratio\n");
        for d in 0..(l + 8) {
            let r = f64::powi(rate, d as i32);
            prof += &format!("{d},{r},{r},{r},{r},{r}\n");
        }
        std::fs::write(run.join("gradflow/profile_l0.csv"), prof).unwrap();
    }
}

#[test]
fn demo_report_shows_every_runs_profile_in_one_plot_and_accuracy_against_distance() {
    let dir = TempDir::new("demo");
    let demo = dir.join("demo");
    fake_demo(&demo);
    let r = report::build(&demo).unwrap();
    assert_eq!(r.kind, "demo");
    let w = report::write(&demo, &Options::default()).unwrap();
    let html = std::fs::read_to_string(&w.html).unwrap();
    assert_self_contained(&html);
    for s in inline_svgs(&html) {
        parse(s);
    }
    let acc = std::fs::read_to_string(demo.join("plots/demo_accuracy.svg")).unwrap();
    let d = parse(&acc);
    // One line per cell with a point per distance; the chance line; axis labels.
    assert_eq!(series_points(&d), vec![2, 2]);
    assert!(has_text(&d, "chance (12.5%)"));
    assert!(has_text(&d, "LSTM") && has_text(&d, "tanh RNN"));
    assert!(texts(&d)
        .iter()
        .any(|t| t.starts_with("accuracy on the dependent word")));
    let prof = std::fs::read_to_string(demo.join("plots/profiles.svg")).unwrap();
    let d = parse(&prof);
    // One line per run, each with its profile's points (l + 8 distances).
    assert_eq!(series_points(&d), vec![14, 18, 14, 18]);
    assert!(has_text(&d, "rnn-tanh, l = 10"));
    // Every run in its own (closed) details block.
    assert_eq!(html.matches("<details").count(), 4);
    assert!(
        html.contains("tanh RNN (solved: held-out accuracy &gt;= 99%): solved l = 6, not l = 10.")
    );
}

#[test]
fn experiment_report_shows_success_rate_against_length_per_model() {
    let dir = TempDir::new("exp");
    let e = dir.join("exp");
    std::fs::create_dir_all(&e).unwrap();
    std::fs::write(
        e.join("results.csv"),
        "model,length,runs,solved,success_rate,mean_metric,mean_decay_per_step,mean_seconds\n\
         lstm,100,2,2,1,0.006,0.97,60\nlstm,200,2,1,0.5,0.02,0.98,300\n\
         rnn-tanh,100,2,0,0,0.16,0.81,30\nrnn-tanh,200,2,0,0,0.17,0.76,70\n",
    )
    .unwrap();
    std::fs::write(
        e.join("runs.csv"),
        "model,length,seed,metric_name,metric,baseline,solved,updates,seconds,decay_per_step\n\
         lstm,100,0,test MSE,0.006,0.1666,true,100,60,0.97\n",
    )
    .unwrap();
    let w = report::write(&e, &Options::default()).unwrap();
    let html = std::fs::read_to_string(&w.html).unwrap();
    assert_self_contained(&html);
    let d = std::fs::read_to_string(e.join("plots/experiment_success.svg")).unwrap();
    let d = parse(&d);
    assert_eq!(series_points(&d), vec![2, 2]);
    assert!(has_text(&d, "sequence length T (time steps)"));
    assert!(has_text(&d, "runs solved (fraction)"));
    // MSE on a log axis, with the baseline and the criterion.
    let m = std::fs::read_to_string(e.join("plots/experiment_metric.svg")).unwrap();
    let m = parse(&m);
    assert!(has_text(&m, "test MSE (log scale)"));
    assert!(has_text(&m, "solved: MSE < 0.01"));
    assert!(html.contains("rnn-tanh: solved 0/2 at length 100, 0/2 at length 200"));
}

/// Every caption and reading text of a built report, one per line.
fn said(r: &report::Report) -> String {
    let mut text: Vec<String> = r.figures().iter().map(|f| f.caption.clone()).collect();
    text.extend(r.reading.iter().cloned());
    text.join("\n")
}

/// A training run's reading diagnoses overfitting only when the validation loss rose while the
/// training loss kept falling; when both rose it says training itself got worse. The
/// gradient-norm caption says whether the run clipped, from its `config.toml`.
#[test]
fn a_training_report_calls_overfitting_only_what_the_losses_show() {
    let dir = TempDir::new("train-reading");
    let write = |name: &str, train: [f64; 6], clip: &str| -> String {
        let run = dir.join(name);
        std::fs::create_dir_all(&run).unwrap();
        let mut csv = String::from("step,train_loss,valid_loss,lr,grad_norm,tokens_per_s\n");
        for (k, t) in train.iter().enumerate() {
            let step = 10 * (k + 1);
            // validation at steps 20, 40, 60: best at 20, then 5% and 10% worse
            let v = match step {
                20 => "2.0",
                40 => "2.1",
                60 => "2.2",
                _ => "",
            };
            csv += &format!("{step},{t},{v},0.002,0.5,1000\n");
        }
        std::fs::write(run.join("metrics.csv"), csv).unwrap();
        std::fs::write(run.join("config.toml"), format!("clip = {clip}\n")).unwrap();
        said(&report::build(&run).unwrap())
    };
    let falling = write("falling", [2.5, 2.2, 2.0, 1.8, 1.6, 1.4], "5.0");
    assert!(
        falling.contains("Since then the validation loss has risen 10% (to 2.2000 at update 60) while the training loss kept falling (2.350 to 1.500): the model is overfitting"),
        "{falling}"
    );
    assert!(falling
        .contains("This run clipped the norm at 5: no update used a larger gradient than that."));
    let rising = write("rising", [2.5, 2.2, 2.3, 2.4, 2.5, 2.6], "0.0");
    assert!(
        rising.contains("and the training loss did not fall meanwhile (2.350 to 2.550): training itself got worse, which is not overfitting"),
        "{rising}"
    );
    assert!(!rising.contains("the model is overfitting"), "{rising}");
    assert!(rising.contains("This run did not clip: every update used the gradient as plotted."));
    for text in [&falling, &rising] {
        assert!(!text.contains("Spikes are exploding gradients"), "{text}");
        assert!(!text.contains("cannot learn"), "{text}");
    }
}

/// The demo's reading and captions: "solved" and "at chance" say what they measured, a
/// per-step factor below 1 is a shrinking gradient whose 1e-3 distance is named as
/// extrapolated, a factor above 1 is never called shrinking, and R(l) is described as the
/// average over the held-out sentences that it is, not as the key noun's own share.
#[test]
fn the_demo_report_says_what_was_measured_and_how() {
    let dir = TempDir::new("demo-reading");
    let demo = dir.join("demo");
    fake_demo(&demo);
    let text = said(&report::build(&demo).unwrap());
    for want in [
        "tanh RNN (solved: held-out accuracy >= 99%): solved l = 6, not l = 10. At l = 10 its accuracy is within 5 points of chance: it did not learn the dependency there.",
        // mean of 0.83 and 0.32: 0.575 per step, 1e-3 after ln 1e-3 / ln 0.575 = 12.5 steps
        "Measured on held-out sentences of the task, its gradient shrinks by x0.5750 per step on average; at that rate it would fall by a factor 1e-3 over about 12 steps (extrapolated).",
        "measured on held-out sentences of the task: the norm of a step's loss gradient l steps back, relative to its own step's, averaged over every step of the sentences",
        "a gradient 3.5e5 times weaker, relative to its own step's, at the key noun's distance (averages over the held-out sentences)",
    ] {
        assert!(text.contains(want), "no `{want}` in\n{text}");
    }
    for never in [
        "the fraction of the gradient at the dependent word that reaches the key noun",
        "times less training signal reaches the key noun",
        "a factor 1e-3 after about",
        "cannot reach far back",
        "cannot learn",
    ] {
        assert!(!text.contains(never), "`{never}` in\n{text}");
    }
    // A cell whose gradient grows per step is not said to shrink, nor given a 1e-3 distance.
    std::fs::write(
        demo.join("results.csv"),
        "cell,distance,accuracy,chance,gradient_ratio,decay_per_step,updates,seconds\n\
         gru,6,1,0.125,1.2,1.04,500,1.4\n",
    )
    .unwrap();
    let r = report::build(&demo).unwrap();
    let gru = r.reading.iter().find(|l| l.starts_with("GRU")).unwrap();
    assert!(
        gru.ends_with("Measured on held-out sentences of the task, its gradient changes by x1.040 per step on average."),
        "{gru}"
    );
    assert!(!gru.contains("shrinks") && !gru.contains("1e-3"), "{gru}");
}

/// The experiment's reading and decay caption: a measured factor per step, its 1e-3 distance
/// as an extrapolation compared with the longest length of the sweep, nothing about reaching
/// "arbitrarily far back", and a growing gradient never called shrinking.
#[test]
fn the_experiment_report_says_what_was_measured_and_how() {
    let dir = TempDir::new("exp-reading");
    let e = dir.join("exp");
    std::fs::create_dir_all(&e).unwrap();
    std::fs::write(
        e.join("results.csv"),
        "model,length,runs,solved,success_rate,mean_metric,mean_decay_per_step,mean_seconds\n\
         lstm,100,2,2,1,0.006,0.97,60\nlstm,200,2,1,0.5,0.02,0.98,300\n\
         rnn-tanh,100,2,0,0,0.16,0.81,30\nrnn-tanh,200,2,0,0,0.17,0.76,70\n\
         gru,100,2,2,1,0.005,1.01,40\n",
    )
    .unwrap();
    let text = said(&report::build(&e).unwrap());
    for want in [
        // mean 0.785 per step: 1e-3 after ln 1e-3 / ln 0.785 = 28.5 steps
        "rnn-tanh: solved 0/2 at length 100, 0/2 at length 200; measured on held-out sequences of the task, its gradient shrinks by x0.7850 per step; at that rate it would fall by a factor 1e-3 over about 29 steps (extrapolated), fewer than the longest length here, 200.",
        // mean 0.975: 1e-3 after 273 steps, more than 200
        "lstm: solved 2/2 at length 100, 1/2 at length 200; measured on held-out sequences of the task, its gradient shrinks by x0.9750 per step; at that rate it would fall by a factor 1e-3 over about 273 steps (extrapolated).",
        "gru: solved 2/2 at length 100; measured on held-out sequences of the task, its gradient changes by x1.010 per step.",
        "measured on held-out sequences of the task with each trained model (mean over runs): below 1 the gradient shrinks geometrically with distance",
    ] {
        assert!(text.contains(want), "no `{want}` in\n{text}");
    }
    for never in ["arbitrarily far back", "it has to bridge", "cannot learn"] {
        assert!(!text.contains(never), "`{never}` in\n{text}");
    }
}

#[test]
fn a_directory_without_run_files_is_refused_with_a_clear_message() {
    let dir = TempDir::new("empty");
    let err = report::build(&dir.0).unwrap_err().to_string();
    assert!(err.contains("no run files"), "{err}");
    let out = Command::new(BIN)
        .args(["report", dir.join("missing").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory"));
}

#[test]
fn train_with_track_gradflow_writes_a_report_with_loss_and_spectrum_plots() {
    let dir = TempDir::new("train");
    let corpus = dir.join("corpus.txt");
    let text: String = (0..600)
        .map(|k| {
            [
                "the cat sees the ball.\n",
                "a dog likes his hat.\n",
                "my friend finds a bird.\n",
            ][k % 3]
        })
        .collect();
    std::fs::write(&corpus, text).unwrap();
    let run = dir.join("run");
    let out = Command::new(BIN)
        .args(["train", "--corpus", corpus.to_str().unwrap(), "--out"])
        .arg(&run)
        .args([
            "--cell",
            "rnn",
            "--hidden",
            "16",
            "--embedding",
            "8",
            "--batch",
            "4",
            "--bptt",
            "16",
            "--steps",
            "30",
            "--eval-every",
            "10",
            "--track-gradflow",
            "10",
            "--threads",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("report: "));
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert_self_contained(&html);
    for id in [
        "fig-loss",
        "fig-perplexity",
        "fig-grad_norm",
        "fig-track_spectrum",
        "fig-track_grad_norm",
        "fig-track_decay",
        "fig-track_profiles",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "no figure {id}");
    }
    let loss = std::fs::read_to_string(run.join("plots/loss.svg")).unwrap();
    let d = parse(&loss);
    // Train loss at every update, validation at every evaluation.
    assert_eq!(series_points(&d), vec![30, 3]);
    assert!(has_text(&d, "training step (updates)") && has_text(&d, "loss (nats per token)"));
    let sp = std::fs::read_to_string(run.join("plots/track_spectrum.svg")).unwrap();
    let d = parse(&sp);
    // rho and sigma_1, three tracked steps each.
    assert_eq!(series_points(&d), vec![3, 3]);
    let prof = std::fs::read_to_string(run.join("plots/track_profiles.svg")).unwrap();
    assert_eq!(series_points(&parse(&prof)), vec![16, 16, 16]);
}
