//! Plots as SVG text (always) and PNG bytes (on request), drawn with plotters.
//!
//! A [`Figure`] is plain data (titles, axes, series); [`Figure::svg`] and [`Figure::png`]
//! draw the same picture through plotters' SVG and bitmap backends. Text is laid out (and,
//! for PNG, rasterised) with `ab_glyph` from DejaVu Sans embedded by the `dejavu` crate, so
//! no system font or fontconfig is needed; the SVG names the generic family `sans-serif`,
//! which every browser has.
//!
//! Conventions that the tests rely on (and that keep the pictures readable):
//!
//! ```text
//! data series      one <polyline> with stroke-width 2 per series (one point per datum),
//!                  optional markers (circle, triangle, square, diamond) at the data points
//! theory / guides  dashed, stroke-width 1 (many short <polyline>s)
//! legend           outside the plotting area, on the right: a filled swatch (a <rect>, never a
//!                  line) and the series name
//! log axes         drawn as log10 of the value on a linear axis, ticks at 1, 2, 5 x 10^k (short
//!                  ranges) or whole decades, labelled in scientific notation (1e-3)
//! colours          Okabe-Ito (distinguishable with the common colour-vision deficiencies);
//!                  heat maps use viridis (monotone lightness)
//! ```

use crate::error::{Error, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::sync::Once;

/// An sRGB colour.
pub type Rgb = (u8, u8, u8);

/// Okabe & Ito (2008) colours, yellow left out (too light on white): blue, vermillion, bluish
/// green, orange, reddish purple, sky blue, black.
pub const PALETTE: [Rgb; 7] = [
    (0x00, 0x72, 0xB2),
    (0xD5, 0x5E, 0x00),
    (0x00, 0x9E, 0x73),
    (0xE6, 0x9F, 0x00),
    (0xCC, 0x79, 0xA7),
    (0x56, 0xB4, 0xE9),
    (0x00, 0x00, 0x00),
];

/// Colour of theory lines and guides.
pub const GUIDE: Rgb = (0x44, 0x44, 0x44);

/// Stroke width of data series (the tests count polylines of this width).
pub const DATA_STROKE: u32 = 2;
/// Stroke width of dashed guides and theory lines.
pub const GUIDE_STROKE: u32 = 1;
/// Steps of a heat map's colour bar (one `<rect>` each).
pub const COLORBAR_STEPS: usize = 100;
/// A heat map draws at most this many cells per side (larger matrices are averaged in blocks).
pub const HEAT_MAX_CELLS: usize = 64;

const FONT: &str = "sans-serif";

/// Marker shapes, used in this order when colours run out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    Circle,
    Triangle,
    Square,
    Diamond,
}

pub const MARKERS: [Marker; 4] = [
    Marker::Circle,
    Marker::Triangle,
    Marker::Square,
    Marker::Diamond,
];

/// Linear or base-10 logarithmic axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log,
}

/// One axis: its label (with units) and scale, and optionally a fixed range.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub label: String,
    pub scale: Scale,
    /// Fixed range in data units (data outside it is clipped).
    pub range: Option<(f64, f64)>,
}

impl Axis {
    pub fn linear(label: impl Into<String>) -> Self {
        Axis {
            label: label.into(),
            scale: Scale::Linear,
            range: None,
        }
    }

    pub fn log(label: impl Into<String>) -> Self {
        Axis {
            label: label.into(),
            scale: Scale::Log,
            range: None,
        }
    }

    pub fn range(mut self, lo: f64, hi: f64) -> Self {
        self.range = Some((lo, hi));
        self
    }

    /// The value on the drawn (linear) axis: `log10` for log axes; `None` if not drawable.
    fn map(&self, v: f64) -> Option<f64> {
        match self.scale {
            Scale::Linear => v.is_finite().then_some(v),
            Scale::Log => (v.is_finite() && v > 0.0).then(|| v.log10()),
        }
    }
}

/// A data series: a line through the points (in order) and/or markers at them.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// `None`: the next palette colour.
    pub color: Option<Rgb>,
    /// `None`: no markers (or a shape chosen automatically once the palette runs out).
    pub marker: Option<Marker>,
    /// Draw the connecting line (`false`: markers only).
    pub line: bool,
}

impl Series {
    /// A line without markers.
    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
            color: None,
            marker: None,
            line: true,
        }
    }

    /// A line with markers at every point.
    pub fn line_points(name: impl Into<String>, points: Vec<(f64, f64)>, marker: Marker) -> Self {
        Series {
            marker: Some(marker),
            ..Series::line(name, points)
        }
    }

    /// Markers only.
    pub fn points(name: impl Into<String>, points: Vec<(f64, f64)>, marker: Marker) -> Self {
        Series {
            line: false,
            ..Series::line_points(name, points, marker)
        }
    }

    pub fn color(mut self, c: Rgb) -> Self {
        self.color = Some(c);
        self
    }
}

/// A dashed theory line or guide (clipped to the axes' range; it never widens them).
#[derive(Clone, Debug, PartialEq)]
pub struct Guide {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: Rgb,
}

/// A dashed horizontal line at `y` (included in the y range).
#[derive(Clone, Debug, PartialEq)]
pub struct HLine {
    pub name: String,
    pub y: f64,
}

/// Lines and markers on two axes.
#[derive(Clone, Debug, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    pub guides: Vec<Guide>,
    pub hlines: Vec<HLine>,
}

impl LineChart {
    pub fn new(title: impl Into<String>, x: Axis, y: Axis) -> Self {
        LineChart {
            title: title.into(),
            x,
            y,
            series: Vec::new(),
            guides: Vec::new(),
            hlines: Vec::new(),
        }
    }
}

/// A square `n x n` matrix as a heat map with a logarithmic colour scale and a colour bar.
/// Row `i` is drawn top to bottom; entries that are NaN (e.g. above the diagonal) are left
/// blank; values `<= 0` take the lowest colour.
#[derive(Clone, Debug, PartialEq)]
pub struct HeatMap {
    pub title: String,
    /// Column axis label (`j`).
    pub x_label: String,
    /// Row axis label (`i`).
    pub y_label: String,
    /// Label of the colour bar (the quantity and its unit).
    pub bar_label: String,
    pub n: usize,
    /// Row-major `[n, n]`.
    pub values: Vec<f64>,
}

/// A group of points in the complex plane (eigenvalues of one gate block).
#[derive(Clone, Debug, PartialEq)]
pub struct PointGroup {
    pub name: String,
    /// `(re, im)`.
    pub points: Vec<(f64, f64)>,
}

/// A circle around the origin.
#[derive(Clone, Debug, PartialEq)]
pub struct CircleGuide {
    pub name: String,
    pub radius: f64,
    pub dashed: bool,
}

/// Points in the complex plane with reference circles, on equal axes.
#[derive(Clone, Debug, PartialEq)]
pub struct ComplexPlane {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub groups: Vec<PointGroup>,
    pub circles: Vec<CircleGuide>,
}

/// Any plot of the report.
#[derive(Clone, Debug, PartialEq)]
pub enum Figure {
    Line(LineChart),
    Heat(HeatMap),
    Complex(ComplexPlane),
}

type PResult = std::result::Result<(), String>;

fn pe<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Registers DejaVu Sans under the family name plotters' text styles use.
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font shipped by the `dejavu` crate.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

impl Figure {
    pub fn title(&self) -> &str {
        match self {
            Figure::Line(c) => &c.title,
            Figure::Heat(h) => &h.title,
            Figure::Complex(c) => &c.title,
        }
    }

    /// Width and height in pixels (SVG user units, and PNG pixels).
    pub fn size(&self) -> (u32, u32) {
        match self {
            Figure::Line(_) => (760, 440),
            Figure::Heat(_) => (660, 545),
            Figure::Complex(_) => (680, 560),
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> PResult {
        root.fill(&WHITE).map_err(pe)?;
        match self {
            Figure::Line(c) => draw_line_chart(root, c),
            Figure::Heat(h) => draw_heat_map(root, h),
            Figure::Complex(c) => draw_complex(root, c),
        }
    }

    /// The figure as a standalone SVG document (`<svg>` root with a `<title>`).
    pub fn svg(&self) -> Result<String> {
        register_font();
        let mut s = String::new();
        {
            let root = SVGBackend::with_string(&mut s, self.size()).into_drawing_area();
            self.draw(&root)
                .and_then(|_| root.present().map_err(pe))
                .map_err(|e| Error::Data(format!("plot `{}`: {e}", self.title())))?;
        }
        // Accessible name, shown as a tooltip too.
        let title = format!(
            "<title>{}</title>",
            crate::report::html::escape(self.title())
        );
        Ok(match s.find('>') {
            Some(at) => {
                let mut out = String::with_capacity(s.len() + title.len() + 16);
                out.push_str(&s[..at]);
                out.push_str(" role=\"img\">");
                out.push('\n');
                out.push_str(&title);
                out.push_str(&s[at + 1..]);
                out
            }
            None => s,
        })
    }

    /// The figure as PNG bytes (RGB, [`Figure::size`] pixels).
    pub fn png(&self) -> Result<Vec<u8>> {
        register_font();
        let (w, h) = self.size();
        let mut buf = vec![255u8; (w * h * 3) as usize];
        {
            let root =
                Raster::new(BitMapBackend::with_buffer(&mut buf, (w, h))).into_drawing_area();
            self.draw(&root)
                .and_then(|_| root.present().map_err(pe))
                .map_err(|e| Error::Data(format!("plot `{}`: {e}", self.title())))?;
        }
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, w, h);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc
                .write_header()
                .map_err(|e| Error::Data(format!("PNG of `{}`: {e}", self.title())))?;
            writer
                .write_image_data(&buf)
                .map_err(|e| Error::Data(format!("PNG of `{}`: {e}", self.title())))?;
        }
        Ok(out)
    }
}

/// plotters' bitmap backend with its text drawn here by `ab_glyph`: plotters 0.3.7's
/// `ab_glyph` path places each glyph at the pen position without its left side bearing, so
/// narrow letters (`i`, `l`, `r`) sit too far left and words look broken. Everything else is
/// the bitmap backend's own drawing. Text is sized as the SVG backend sizes it (an em of
/// `size / 1.24` pixels), so PNG and SVG lay out alike.
struct Raster<'a> {
    inner: BitMapBackend<'a>,
    regular: ab_glyph::FontRef<'static>,
    bold: ab_glyph::FontRef<'static>,
}

type RasterError<'a> = <BitMapBackend<'a> as DrawingBackend>::ErrorType;
type BackendResult<'a> =
    std::result::Result<(), plotters_backend::DrawingErrorKind<RasterError<'a>>>;

impl<'a> Raster<'a> {
    fn new(inner: BitMapBackend<'a>) -> Self {
        // The `dejavu` crate ships valid TrueType files; `register_font` checked them too.
        let font =
            |b: &'static [u8]| ab_glyph::FontRef::try_from_slice(b).expect("DejaVu Sans parses");
        Raster {
            inner,
            regular: font(dejavu::sans::regular()),
            bold: font(dejavu::sans::bold()),
        }
    }
}

/// `(width, ascent, descent)` in pixels of `text` in `font` at the em size `size / 1.24`.
fn text_metrics(font: &ab_glyph::FontRef<'static>, size: f64, text: &str) -> (f32, f32, f32) {
    use ab_glyph::{Font, ScaleFont};
    let sf = font.as_scaled(px_scale(font, size));
    let mut w = 0.0;
    let mut prev = None;
    for c in text.chars() {
        let id = sf.glyph_id(c);
        if let Some(p) = prev {
            w += sf.kern(p, id);
        }
        w += sf.h_advance(id);
        prev = Some(id);
    }
    (w, sf.ascent(), sf.descent())
}

fn px_scale(font: &ab_glyph::FontRef<'static>, size: f64) -> ab_glyph::PxScale {
    use ab_glyph::Font;
    let em = (size / 1.24) as f32;
    let upem = font.units_per_em().unwrap_or(2048.0);
    ab_glyph::PxScale::from(em * font.height_unscaled() / upem)
}

impl<'a> DrawingBackend for Raster<'a> {
    type ErrorType = RasterError<'a>;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> BackendResult<'a> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> BackendResult<'a> {
        self.inner.present()
    }

    fn draw_pixel(
        &mut self,
        point: plotters_backend::BackendCoord,
        color: plotters_backend::BackendColor,
    ) -> BackendResult<'a> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: plotters_backend::BackendStyle>(
        &mut self,
        from: plotters_backend::BackendCoord,
        to: plotters_backend::BackendCoord,
        style: &S,
    ) -> BackendResult<'a> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: plotters_backend::BackendStyle>(
        &mut self,
        upper_left: plotters_backend::BackendCoord,
        bottom_right: plotters_backend::BackendCoord,
        style: &S,
        fill: bool,
    ) -> BackendResult<'a> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn blit_bitmap(
        &mut self,
        pos: plotters_backend::BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> BackendResult<'a> {
        self.inner.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<T: plotters_backend::BackendTextStyle>(
        &self,
        text: &str,
        style: &T,
    ) -> std::result::Result<(u32, u32), plotters_backend::DrawingErrorKind<Self::ErrorType>> {
        let font = match style.style() {
            FontStyle::Bold => &self.bold,
            _ => &self.regular,
        };
        let (w, a, d) = text_metrics(font, style.size(), text);
        Ok((w.ceil() as u32, (a - d).ceil() as u32))
    }

    fn draw_text<T: plotters_backend::BackendTextStyle>(
        &mut self,
        text: &str,
        style: &T,
        pos: plotters_backend::BackendCoord,
    ) -> BackendResult<'a> {
        use ab_glyph::{point, Font, ScaleFont};
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let Raster {
            inner,
            regular,
            bold,
        } = self;
        let font = match style.style() {
            FontStyle::Bold => &*bold,
            _ => &*regular,
        };
        let (width, ascent, descent) = text_metrics(font, style.size(), text);
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0.0,
            HPos::Center => -width / 2.0,
            HPos::Right => -width,
        };
        // The baseline, relative to `pos`, for the anchor's vertical position.
        let base = match anchor.v_pos {
            VPos::Top => ascent,
            VPos::Center => (ascent + descent) / 2.0,
            VPos::Bottom => descent,
        };
        let sf = font.as_scaled(px_scale(font, style.size()));
        let trans = style.transform();
        let (w, h) = inner.get_size();
        let mut pen = dx;
        let mut prev = None;
        let mut result = Ok(());
        for c in text.chars() {
            let id = sf.glyph_id(c);
            if let Some(p) = prev {
                pen += sf.kern(p, id);
            }
            let glyph = id.with_scale_and_position(sf.scale(), point(pen, base));
            if let Some(outline) = font.outline_glyph(glyph) {
                let b = outline.px_bounds();
                outline.draw(|x, y, cover| {
                    if result.is_err() || cover <= 0.0 {
                        return;
                    }
                    let (tx, ty) =
                        trans.transform(b.min.x as i32 + x as i32, b.min.y as i32 + y as i32);
                    let (px, py) = (pos.0 + tx, pos.1 + ty);
                    if px >= 0 && py >= 0 && (px as u32) < w && (py as u32) < h {
                        result = inner.draw_pixel(
                            (px, py),
                            plotters_backend::BackendColor {
                                alpha: color.alpha * f64::from(cover.min(1.0)),
                                rgb: color.rgb,
                            },
                        );
                    }
                });
            }
            pen += sf.h_advance(id);
            prev = Some(id);
        }
        result
    }
}

/// At most `max` points: consecutive points averaged in equal buckets (x and y alike).
pub fn downsample(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max == 0 {
        return points.to_vec();
    }
    let per = points.len().div_ceil(max);
    points
        .chunks(per)
        .map(|c| {
            let n = c.len() as f64;
            (
                c.iter().map(|p| p.0).sum::<f64>() / n,
                c.iter().map(|p| p.1).sum::<f64>() / n,
            )
        })
        .collect()
}

/// `1`, `2` or `5` times a power of ten, at least `x`.
fn nice_step(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= x * (1.0 - 1e-9) {
            return m * p;
        }
    }
    10.0 * p
}

/// A drawn axis: range and ticks on the (possibly log10) drawn scale, and the label format.
#[derive(Clone, Debug)]
struct Ticks {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    scale: Scale,
    step: f64,
}

impl Ticks {
    fn new(axis: &Axis, data: &[f64]) -> Self {
        let fixed = axis
            .range
            .and_then(|(a, b)| Some((axis.map(a)?, axis.map(b)?)));
        let (mut lo, mut hi) = fixed.unwrap_or_else(|| {
            let lo = data.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = data.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if lo.is_finite() {
                (lo, hi)
            } else {
                (0.0, 1.0)
            }
        });
        match axis.scale {
            Scale::Linear => {
                if hi - lo <= 0.0 {
                    let pad = if lo == 0.0 { 1.0 } else { 0.1 * lo.abs() };
                    lo -= pad;
                    hi += pad;
                }
                let step = nice_step((hi - lo) / 8.0);
                if fixed.is_none() {
                    lo = (lo / step + 1e-9).floor() * step;
                    hi = (hi / step - 1e-9).ceil() * step;
                }
                let first = (lo / step - 1e-9).ceil() as i64;
                let last = (hi / step + 1e-9).floor() as i64;
                let ticks = (first..=last).map(|k| k as f64 * step).collect();
                Ticks {
                    lo,
                    hi,
                    ticks,
                    scale: Scale::Linear,
                    step,
                }
            }
            Scale::Log => {
                if fixed.is_none() {
                    lo = (lo + 1e-9).floor();
                    hi = (hi - 1e-9).ceil();
                    if hi - lo < 1.0 {
                        hi = lo + 1.0;
                    }
                }
                let span = hi - lo;
                let mut ticks = Vec::new();
                if span <= 2.5 {
                    for k in (lo.floor() as i64)..=(hi.ceil() as i64) {
                        for m in [1.0f64, 2.0, 5.0] {
                            let t = k as f64 + m.log10();
                            if t >= lo - 1e-9 && t <= hi + 1e-9 {
                                ticks.push(t);
                            }
                        }
                    }
                } else {
                    let stride = (span / 8.0).ceil().max(1.0) as i64;
                    let first = (lo - 1e-9).ceil() as i64;
                    let last = (hi + 1e-9).floor() as i64;
                    // Decades that are multiples of the stride, so 1e0 is labelled when present.
                    ticks = (first..=last)
                        .filter(|k| k.rem_euclid(stride) == 0)
                        .map(|k| k as f64)
                        .collect();
                }
                Ticks {
                    lo,
                    hi,
                    ticks,
                    scale: Scale::Log,
                    step: 1.0,
                }
            }
        }
    }

    fn label(&self, v: f64) -> String {
        match self.scale {
            Scale::Log => sci_label(v),
            Scale::Linear => linear_label(v, self.step),
        }
    }

    fn contains(&self, v: f64) -> bool {
        let eps = 1e-9 * (self.hi - self.lo).abs().max(1e-300);
        v >= self.lo - eps && v <= self.hi + eps
    }
}

/// `10^v` in scientific notation with a one-digit mantissa: `1e-3`, `2e0`, `5e2`.
fn sci_label(v: f64) -> String {
    let mut k = (v + 1e-9).floor();
    let mut m = 10f64.powf(v - k).round();
    if m >= 10.0 {
        m = 1.0;
        k += 1.0;
    }
    format!("{m}e{k}")
}

fn linear_label(v: f64, step: f64) -> String {
    let v = if v.abs() < step * 1e-9 { 0.0 } else { v };
    let big = v.abs().max(step);
    if big >= 1e6 || (step < 1e-3 && v != 0.0) {
        let digits = ((v.abs().max(step)).log10().floor() - step.log10().floor()).max(0.0) as usize;
        return format!("{v:.digits$e}");
    }
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    format!("{v:.decimals$}")
}

fn rgb(c: Rgb) -> RGBColor {
    RGBColor(c.0, c.1, c.2)
}

fn title_style() -> TextStyle<'static> {
    (FONT, 21).into_font().style(FontStyle::Bold).into()
}

fn label_style() -> TextStyle<'static> {
    (FONT, 17).into()
}

fn desc_style() -> TextStyle<'static> {
    (FONT, 18).into()
}

fn legend_style() -> TextStyle<'static> {
    TextStyle::from((FONT, 17)).pos(Pos::new(HPos::Left, VPos::Center))
}

/// One legend line.
enum Swatch {
    Line(Rgb, Option<Marker>),
    Marker(Rgb, Marker),
    Dashed(Rgb),
}

fn legend_width<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, Swatch)],
) -> u32 {
    if entries.is_empty() {
        return 0;
    }
    let style = legend_style();
    let text = entries
        .iter()
        .flat_map(|(name, _)| wrap(name))
        .map(|line| {
            area.estimate_text_size(&line, &style)
                .map_or(8 * line.len() as u32, |s| s.0)
        })
        .max()
        .unwrap_or(0);
    (text + 52).min(320)
}

/// A legend name in lines of about 30 characters (split at spaces; 3 lines at most, the rest
/// cut with an ellipsis).
fn wrap(name: &str) -> Vec<String> {
    const WIDTH: usize = 30;
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in name.split(' ') {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > WIDTH {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    lines.push(cur);
    if lines.len() > 3 {
        lines.truncate(3);
        lines[2].push('\u{2026}');
    }
    lines
        .into_iter()
        .map(|l| {
            if l.chars().count() > WIDTH + 10 {
                let s: String = l.chars().take(WIDTH + 9).collect();
                format!("{s}\u{2026}")
            } else {
                l
            }
        })
        .collect()
}

fn draw_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    at: (i32, i32),
    marker: Marker,
    color: Rgb,
) -> PResult {
    let style = ShapeStyle::from(&rgb(color)).filled();
    let (x, y) = at;
    match marker {
        Marker::Circle => area.draw(&Circle::new(at, 4, style)),
        Marker::Triangle => area.draw(&Polygon::new(
            vec![(x, y - 5), (x - 5, y + 4), (x + 5, y + 4)],
            style,
        )),
        Marker::Square => area.draw(&Rectangle::new([(x - 4, y - 4), (x + 4, y + 4)], style)),
        Marker::Diamond => area.draw(&Polygon::new(
            vec![(x, y - 5), (x + 5, y), (x, y + 5), (x - 5, y)],
            style,
        )),
    }
    .map_err(pe)
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, Swatch)],
    top: i32,
) -> PResult {
    let style = legend_style();
    let mut y = top;
    for (name, swatch) in entries {
        let x = 8;
        match swatch {
            Swatch::Line(c, m) => {
                let s = ShapeStyle::from(&rgb(*c)).filled();
                area.draw(&Rectangle::new([(x, y - 1), (x + 30, y + 1)], s))
                    .map_err(pe)?;
                if let Some(m) = m {
                    draw_marker(area, (x + 15, y), *m, *c)?;
                }
            }
            Swatch::Marker(c, m) => draw_marker(area, (x + 15, y), *m, *c)?,
            Swatch::Dashed(c) => {
                let s = ShapeStyle::from(&rgb(*c)).filled();
                for d in 0..3 {
                    let x0 = x + 12 * d;
                    area.draw(&Rectangle::new([(x0, y), (x0 + 6, y + 1)], s))
                        .map_err(pe)?;
                }
            }
        }
        let lines = wrap(name);
        for (k, line) in lines.iter().enumerate() {
            area.draw(&Text::new(
                line.clone(),
                (x + 40, y + 19 * k as i32),
                style.clone(),
            ))
            .map_err(pe)?;
        }
        y += 26 + 19 * (lines.len() as i32 - 1);
    }
    Ok(())
}

/// A linear f64 axis whose grid lines and labels sit exactly at our ticks.
#[derive(Clone, Debug)]
struct TickAxis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl TickAxis {
    fn new(lo: f64, hi: f64, ticks: Vec<f64>) -> Self {
        TickAxis { lo, hi, ticks }
    }
}

impl Ranged for TickAxis {
    // Labels always come from our formatters; the Debug default is never shown.
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let len = limit.1 - limit.0;
        if self.hi == self.lo || len == 0 {
            return limit.0 + len / 2;
        }
        let t = (v - self.lo) / (self.hi - self.lo);
        limit.0 + (len as f64 * t).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.max_num_points() == 0 {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<TickAxis, TickAxis>>;

/// Builds a chart with our tick positions and labels on both axes, grid lines at the ticks.
fn build_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    xt: &Ticks,
    yt: &Ticks,
    x_label: &str,
    y_label: &str,
    margins: (u32, u32),
) -> std::result::Result<Chart<'a, DB>, String> {
    let mut chart = ChartBuilder::on(area)
        .margin_top(10)
        .margin_left(10)
        .margin_right(margins.0)
        .margin_bottom(margins.1)
        .x_label_area_size(54)
        .y_label_area_size(76)
        .build_cartesian_2d(
            TickAxis::new(xt.lo, xt.hi, xt.ticks.clone()),
            TickAxis::new(yt.lo, yt.hi, yt.ticks.clone()),
        )
        .map_err(pe)?;
    let xf = |v: &f64| xt.label(*v);
    let yf = |v: &f64| yt.label(*v);
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&xf)
        .y_label_formatter(&yf)
        .label_style(label_style())
        .axis_desc_style(desc_style())
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(TRANSPARENT)
        .axis_style(BLACK.mix(0.8))
        .draw()
        .map_err(pe)?;
    Ok(chart)
}

/// Consecutive runs of points inside the ranges (a line leaving the range is cut there).
fn clip_runs(points: &[(f64, f64)], xt: &Ticks, yt: &Ticks) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![Vec::new()];
    for &(x, y) in points {
        if xt.contains(x) && yt.contains(y) {
            runs.last_mut().expect("one run").push((x, y));
        } else if !runs.last().expect("one run").is_empty() {
            runs.push(Vec::new());
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

fn dashed<DB: DrawingBackend>(chart: &mut Chart<'_, DB>, pts: Vec<(f64, f64)>, c: Rgb) -> PResult {
    if pts.len() < 2 {
        return Ok(());
    }
    let style = ShapeStyle::from(&rgb(c)).stroke_width(GUIDE_STROKE);
    chart
        .draw_series(DashedLineSeries::new(pts, 7, 5, style))
        .map_err(pe)?;
    Ok(())
}

fn draw_line_chart<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &LineChart) -> PResult {
    // Resolve styles: palette colours in order; once they run out, marker shapes tell apart.
    let mut styled = Vec::new();
    let mut next = 0usize;
    for s in &c.series {
        let color = s.color.unwrap_or_else(|| {
            let col = PALETTE[next % PALETTE.len()];
            next += 1;
            col
        });
        let k = styled.len();
        let marker = s.marker.or_else(|| {
            (c.series.len() > PALETTE.len()).then(|| MARKERS[(k / PALETTE.len()) % MARKERS.len()])
        });
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter_map(|&(x, y)| Some((c.x.map(x)?, c.y.map(y)?)))
            .collect();
        styled.push((s, color, marker, pts));
    }
    let xs: Vec<f64> = styled
        .iter()
        .flat_map(|s| s.3.iter().map(|p| p.0))
        .collect();
    let mut ys: Vec<f64> = styled
        .iter()
        .flat_map(|s| s.3.iter().map(|p| p.1))
        .collect();
    ys.extend(c.hlines.iter().filter_map(|h| c.y.map(h.y)));
    let xt = Ticks::new(&c.x, &xs);
    let yt = Ticks::new(&c.y, &ys);

    let mut entries: Vec<(String, Swatch)> = Vec::new();
    for (s, color, marker, _) in &styled {
        if !s.name.is_empty() {
            let sw = if s.line {
                Swatch::Line(*color, *marker)
            } else {
                Swatch::Marker(*color, marker.unwrap_or(Marker::Circle))
            };
            entries.push((s.name.clone(), sw));
        }
    }
    let guide_pts: Vec<Vec<(f64, f64)>> = c
        .guides
        .iter()
        .map(|g| {
            g.points
                .iter()
                .filter_map(|&(x, y)| Some((c.x.map(x)?, c.y.map(y)?)))
                .collect()
        })
        .collect();
    for (g, pts) in c.guides.iter().zip(&guide_pts) {
        // A guide that leaves the plotted range at once is named, not drawn.
        let visible = clip_runs(pts, &xt, &yt).iter().any(|r| r.len() >= 2);
        let name = if visible {
            g.name.clone()
        } else {
            format!("{} (off scale)", g.name)
        };
        entries.push((name, Swatch::Dashed(g.color)));
    }
    for h in &c.hlines {
        entries.push((h.name.clone(), Swatch::Dashed(GUIDE)));
    }

    let body = root.titled(&c.title, title_style()).map_err(pe)?;
    let (w, _) = body.dim_in_pixel();
    let lw = legend_width(&body, &entries);
    let (plot, legend) = if lw > 0 {
        let (a, b) = body.split_horizontally(w - lw);
        (a, Some(b))
    } else {
        (body.clone(), None)
    };
    let mut chart = build_chart(&plot, &xt, &yt, &c.x.label, &c.y.label, (16, 6))?;

    for h in &c.hlines {
        if let Some(y) = c.y.map(h.y) {
            dashed(&mut chart, vec![(xt.lo, y), (xt.hi, y)], GUIDE)?;
        }
    }
    for (g, pts) in c.guides.iter().zip(&guide_pts) {
        for run in clip_runs(pts, &xt, &yt) {
            dashed(&mut chart, run, g.color)?;
        }
    }
    for (s, color, marker, pts) in &styled {
        let inside: Vec<(f64, f64)> = pts
            .iter()
            .copied()
            .filter(|&(x, y)| xt.contains(x) && yt.contains(y))
            .collect();
        if s.line && inside.len() >= 2 {
            let style = ShapeStyle::from(&rgb(*color)).stroke_width(DATA_STROKE);
            chart
                .draw_series(std::iter::once(PathElement::new(inside.clone(), style)))
                .map_err(pe)?;
        }
        if let Some(m) = marker {
            let area = chart.plotting_area().strip_coord_spec();
            for &p in &inside {
                let px = chart.backend_coord(&p);
                let (dx, dy) = area.get_base_pixel();
                draw_marker(&area, (px.0 - dx, px.1 - dy), *m, *color)?;
            }
        } else if !s.line || inside.len() == 1 {
            // A single point of a line, or markers asked for: show it.
            let area = chart.plotting_area().strip_coord_spec();
            for &p in &inside {
                let px = chart.backend_coord(&p);
                let (dx, dy) = area.get_base_pixel();
                draw_marker(&area, (px.0 - dx, px.1 - dy), Marker::Circle, *color)?;
            }
        }
    }
    if let Some(l) = legend {
        draw_legend(&l, &entries, 24)?;
    }
    Ok(())
}

/// Viridis (matplotlib), sampled at nine points and interpolated linearly; `t` in `[0, 1]`.
pub fn viridis(t: f64) -> Rgb {
    const V: [Rgb; 9] = [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let pos = t * (V.len() - 1) as f64;
    let k = (pos.floor() as usize).min(V.len() - 2);
    let w = pos - k as f64;
    let mix = |a: u8, b: u8| (a as f64 * (1.0 - w) + b as f64 * w).round() as u8;
    let (a, b) = (V[k], V[k + 1]);
    (mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The blocks of a heat map: `(block size, blocks per side, block means (NaN = blank))`.
pub fn heat_blocks(n: usize, values: &[f64]) -> (usize, usize, Vec<f64>) {
    let b = n.div_ceil(HEAT_MAX_CELLS).max(1);
    let nb = n.div_ceil(b);
    let mut out = vec![f64::NAN; nb * nb];
    for bi in 0..nb {
        for bj in 0..nb {
            let (mut sum, mut cnt) = (0.0, 0usize);
            for i in bi * b..((bi + 1) * b).min(n) {
                for j in bj * b..((bj + 1) * b).min(n) {
                    let v = values[i * n + j];
                    if v.is_finite() {
                        sum += v;
                        cnt += 1;
                    }
                }
            }
            if cnt > 0 {
                out[bi * nb + bj] = sum / cnt as f64;
            }
        }
    }
    (b, nb, out)
}

/// The colour scale's range in log10 units: the largest value down to the smallest positive
/// one, at most 24 decades.
fn log_color_range(values: &[f64]) -> (f64, f64) {
    let pos = values.iter().copied().filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = pos.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        return (-1.0, 0.0);
    }
    let hi = hi.log10().ceil();
    let lo = lo.log10().floor().max(hi - 24.0);
    if hi - lo < 1.0 {
        (hi - 1.0, hi)
    } else {
        (lo, hi)
    }
}

fn draw_heat_map<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, h: &HeatMap) -> PResult {
    let body = root.titled(&h.title, title_style()).map_err(pe)?;
    let (w, hgt) = body.dim_in_pixel();
    let bar_w = 130;
    let (map_area, bar_area) = body.split_horizontally(w - bar_w);
    let n = h.n.max(1);
    let (b, nb, blocks) = heat_blocks(n, &h.values);
    let (clo, chi) = log_color_range(&blocks);

    // Square cells: shrink the longer side of the plotting area.
    let inner_w = (w - bar_w) as i64 - 76 - 10 - 8;
    let inner_h = hgt as i64 - 54 - 10 - 6;
    let side = inner_w.min(inner_h).max(50);
    let right = (8 + inner_w - side).max(0) as u32;
    let bottom = (6 + inner_h - side).max(0) as u32;

    let nf = n as f64;
    let axis = Axis::linear("");
    let mut xt = Ticks::new(&axis.clone().range(0.0, nf), &[]);
    // Steps are integers: ticks at whole steps only.
    if xt.step < 1.0 {
        xt.step = 1.0;
        xt.ticks = (0..=n).map(|k| k as f64).collect();
    }
    // Row i is drawn at height n - i (top to bottom).
    let yt = Ticks {
        lo: 0.0,
        hi: nf,
        ticks: xt.ticks.iter().map(|t| nf - t).collect(),
        scale: Scale::Linear,
        step: xt.step,
    };
    let mut chart = ChartBuilder::on(&map_area)
        .margin_top(10)
        .margin_left(10)
        .margin_right(right)
        .margin_bottom(bottom)
        .x_label_area_size(54)
        .y_label_area_size(76)
        .build_cartesian_2d(
            TickAxis::new(0.0, nf, xt.ticks.clone()),
            TickAxis::new(0.0, nf, yt.ticks.clone()),
        )
        .map_err(pe)?;
    let xf = |v: &f64| linear_label(*v, xt.step);
    let yf = |v: &f64| linear_label(nf - *v, xt.step);
    chart
        .configure_mesh()
        .x_desc(h.x_label.as_str())
        .y_desc(h.y_label.as_str())
        .x_label_formatter(&xf)
        .y_label_formatter(&yf)
        .label_style(label_style())
        .axis_desc_style(desc_style())
        .disable_mesh()
        .axis_style(BLACK.mix(0.8))
        .draw()
        .map_err(pe)?;
    let mut cells = Vec::new();
    for bi in 0..nb {
        for bj in 0..nb {
            let v = blocks[bi * nb + bj];
            if !v.is_finite() {
                continue;
            }
            let t = if v > 0.0 {
                (v.log10() - clo) / (chi - clo)
            } else {
                0.0
            };
            let (i0, i1) = ((bi * b) as f64, ((bi + 1) * b).min(n) as f64);
            let (j0, j1) = ((bj * b) as f64, ((bj + 1) * b).min(n) as f64);
            cells.push(Rectangle::new(
                [(j0, nf - i0), (j1, nf - i1)],
                ShapeStyle::from(&rgb(viridis(t))).filled(),
            ));
        }
    }
    chart.draw_series(cells).map_err(pe)?;

    // Colour bar: log10 of the value, labelled in scientific notation.
    let bt = Ticks::new(&Axis::log("").range(10f64.powf(clo), 10f64.powf(chi)), &[]);
    let bt = Ticks {
        ticks: if bt.ticks.len() > 9 {
            let stride = bt.ticks.len().div_ceil(9);
            bt.ticks
                .iter()
                .copied()
                .filter(|t| (t.round() as i64).rem_euclid(stride as i64) == 0)
                .collect()
        } else {
            bt.ticks
        },
        ..bt
    };
    let mut bar = ChartBuilder::on(&bar_area)
        .margin_top(10)
        .margin_right(30)
        .margin_bottom(bottom + 54)
        .y_label_area_size(0)
        .right_y_label_area_size(72)
        .build_cartesian_2d(
            TickAxis::new(0.0, 1.0, vec![]),
            TickAxis::new(bt.lo, bt.hi, bt.ticks.clone()),
        )
        .map_err(pe)?;
    let bf = |v: &f64| sci_label(*v);
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc(h.bar_label.as_str())
        .y_label_formatter(&bf)
        .label_style(label_style())
        .axis_desc_style(desc_style())
        .axis_style(BLACK.mix(0.8))
        .draw()
        .map_err(pe)?;
    let steps = COLORBAR_STEPS;
    bar.draw_series((0..steps).map(|k| {
        let y0 = clo + (chi - clo) * k as f64 / steps as f64;
        let y1 = clo + (chi - clo) * (k + 1) as f64 / steps as f64;
        let t = (k as f64 + 0.5) / steps as f64;
        Rectangle::new(
            [(0.0, y0), (1.0, y1)],
            ShapeStyle::from(&rgb(viridis(t))).filled(),
        )
    }))
    .map_err(pe)?;
    Ok(())
}

fn draw_complex<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &ComplexPlane) -> PResult {
    let mut entries: Vec<(String, Swatch)> = Vec::new();
    for (k, g) in c.groups.iter().enumerate() {
        entries.push((
            g.name.clone(),
            Swatch::Marker(PALETTE[k % PALETTE.len()], MARKERS[k % MARKERS.len()]),
        ));
    }
    for (k, ci) in c.circles.iter().enumerate() {
        let col = if k == 0 { GUIDE } else { PALETTE[1] };
        entries.push((
            ci.name.clone(),
            if ci.dashed {
                Swatch::Dashed(col)
            } else {
                Swatch::Line(col, None)
            },
        ));
    }
    let body = root.titled(&c.title, title_style()).map_err(pe)?;
    let (w, hgt) = body.dim_in_pixel();
    let lw = legend_width(&body, &entries);
    let (plot, legend) = body.split_horizontally(w - lw);

    let r = c
        .groups
        .iter()
        .flat_map(|g| g.points.iter().map(|p| p.0.hypot(p.1)))
        .chain(c.circles.iter().map(|ci| ci.radius))
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::max)
        * 1.08;
    // Equal scales: the longer side of the plotting area gets the wider range.
    let inner_w = (w - lw) as f64 - 76.0 - 10.0 - 16.0;
    let inner_h = hgt as f64 - 54.0 - 10.0 - 6.0;
    let (rx, ry) = if inner_w >= inner_h {
        (r * inner_w / inner_h, r)
    } else {
        (r, r * inner_h / inner_w)
    };
    let xt = Ticks::new(&Axis::linear("").range(-rx, rx), &[]);
    let yt = Ticks::new(&Axis::linear("").range(-ry, ry), &[]);
    let mut chart = build_chart(&plot, &xt, &yt, &c.x_label, &c.y_label, (16, 6))?;
    for (k, ci) in c.circles.iter().enumerate() {
        let col = if k == 0 { GUIDE } else { PALETTE[1] };
        let pts: Vec<(f64, f64)> = (0..=180)
            .map(|s| {
                let a = s as f64 * std::f64::consts::TAU / 180.0;
                (ci.radius * a.cos(), ci.radius * a.sin())
            })
            .collect();
        if ci.dashed {
            dashed(&mut chart, pts, col)?;
        } else {
            let style = ShapeStyle::from(&rgb(col)).stroke_width(GUIDE_STROKE);
            chart
                .draw_series(std::iter::once(PathElement::new(pts, style)))
                .map_err(pe)?;
        }
    }
    let area = chart.plotting_area().strip_coord_spec();
    let (dx, dy) = area.get_base_pixel();
    for (k, g) in c.groups.iter().enumerate() {
        for p in &g.points {
            if !(p.0.is_finite() && p.1.is_finite()) {
                continue;
            }
            let px = chart.backend_coord(p);
            draw_marker(
                &area,
                (px.0 - dx, px.1 - dy),
                MARKERS[k % MARKERS.len()],
                PALETTE[k % PALETTE.len()],
            )?;
        }
    }
    draw_legend(&legend, &entries, 24)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_are_decades_or_1_2_5() {
        let t = Ticks::new(&Axis::log("y"), &[-30.0, 0.0]);
        assert_eq!((t.lo, t.hi), (-30.0, 0.0));
        assert!(t.ticks.len() <= 9 && t.ticks.contains(&0.0));
        let labels: Vec<String> = t.ticks.iter().map(|&v| t.label(v)).collect();
        assert!(labels.contains(&"1e-28".to_string()), "{labels:?}");
        let t = Ticks::new(&Axis::log("y"), &[0.4f64.log10(), 1.7f64.log10()]);
        let labels: Vec<String> = t.ticks.iter().map(|&v| t.label(v)).collect();
        assert_eq!(labels, ["1e-1", "2e-1", "5e-1", "1e0", "2e0", "5e0", "1e1"]);
    }

    #[test]
    fn linear_ticks_are_nice() {
        let t = Ticks::new(&Axis::linear("x"), &[3.0, 2990.0]);
        assert_eq!((t.lo, t.hi), (0.0, 3000.0));
        assert_eq!(t.label(500.0), "500");
        let t = Ticks::new(&Axis::linear("x"), &[0.12, 0.93]);
        assert_eq!(t.label(0.2), "0.2");
        assert_eq!(linear_label(2e6, 5e5), "2.0e6");
    }

    #[test]
    fn downsample_keeps_means() {
        let p: Vec<(f64, f64)> = (0..10).map(|k| (k as f64, 2.0 * k as f64)).collect();
        let d = downsample(&p, 5);
        assert_eq!(
            d,
            vec![(0.5, 1.0), (2.5, 5.0), (4.5, 9.0), (6.5, 13.0), (8.5, 17.0)]
        );
        assert_eq!(downsample(&p, 20), p);
    }

    #[test]
    fn heat_blocks_average_and_leave_blanks() {
        let n = 130;
        let v: Vec<f64> = (0..n * n)
            .map(|k| if k % n <= k / n { 1.0 } else { f64::NAN })
            .collect();
        let (b, nb, blocks) = heat_blocks(n, &v);
        assert_eq!((b, nb), (3, 44));
        assert_eq!(blocks[0], 1.0);
        assert!(blocks[1].is_nan(), "block above the diagonal is blank");
    }

    #[test]
    fn viridis_ends() {
        assert_eq!(viridis(0.0), (68, 1, 84));
        assert_eq!(viridis(1.0), (253, 231, 37));
    }
}
