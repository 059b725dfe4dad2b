//! The report as one self-contained HTML page: inline CSS and inline SVG, no scripts, no
//! external resources (nothing is fetched, so it opens offline and from a mail attachment).

use super::{Block, Report, Section};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Escapes text for HTML and XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root { color-scheme: light; }
body { margin: 0; background: #f3f4f6; color: #1b1b1b; line-height: 1.5;
  font-family: "DejaVu Sans", "Segoe UI", "Helvetica Neue", Arial, sans-serif; font-size: 16px; }
main { max-width: 1080px; margin: 0 auto; padding: 28px 36px 72px; background: #fff; }
h1 { font-size: 1.75rem; margin: 0 0 4px; }
h2 { font-size: 1.35rem; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 2px solid #0072B2; }
h3 { font-size: 1.1rem; margin: 24px 0 6px; }
.sub { color: #505050; margin: 0 0 16px; font-size: .95rem; word-break: break-all; }
nav { font-size: .95rem; margin: 8px 0 20px; }
nav a { color: #0060a0; margin-right: 14px; white-space: nowrap; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 10px; margin: 12px 0; }
.card { border: 1px solid #d8dbe0; border-radius: 6px; padding: 8px 12px; background: #fbfbfc; }
.card .k { color: #505050; font-size: .85rem; }
.card .v { font-size: 1.15rem; font-weight: 600; word-break: break-word; }
.reading { background: #eef5fb; border-left: 5px solid #0072B2; padding: 10px 18px; margin: 12px 0; }
.reading li { margin: 4px 0; }
figure { margin: 18px 0 26px; }
figure svg { display: block; max-width: 100%; height: auto; border: 1px solid #e2e4e8; background: #fff; }
figcaption { color: #3a3a3a; font-size: .93rem; margin-top: 6px; max-width: 760px; }
table { border-collapse: collapse; margin: 10px 0; font-size: .93rem; }
th, td { border-bottom: 1px solid #dcdfe3; padding: 4px 12px; text-align: right; }
th { background: #f2f4f7; }
th:first-child, td:first-child { text-align: left; }
pre { background: #f6f7f9; border: 1px solid #e2e4e8; padding: 10px 14px; overflow-x: auto; font-size: .88rem; }
details { border: 1px solid #d8dbe0; border-radius: 6px; padding: 6px 14px; margin: 12px 0; }
details > summary { cursor: pointer; font-weight: 600; font-size: 1.05rem; }
details[open] > summary { margin-bottom: 6px; }
p.note { color: #505050; font-size: .93rem; }
footer { margin-top: 40px; color: #606060; font-size: .85rem; }
"#;

fn facts(out: &mut String, kv: &[(String, String)]) {
    out.push_str("<div class=\"cards\">\n");
    for (k, v) in kv {
        let _ = writeln!(
            out,
            "<div class=\"card\"><div class=\"k\">{}</div><div class=\"v\">{}</div></div>",
            escape(k),
            escape(v)
        );
    }
    out.push_str("</div>\n");
}

fn section(out: &mut String, s: &Section, svgs: &HashMap<String, String>, depth: usize) {
    let h = (depth + 2).min(4);
    if s.collapsed {
        let _ = writeln!(
            out,
            "<details id=\"{}\"><summary>{}</summary>",
            escape(&s.id),
            escape(&s.title)
        );
    } else {
        let _ = writeln!(
            out,
            "<section id=\"{}\"><h{h}>{}</h{h}>",
            escape(&s.id),
            escape(&s.title)
        );
    }
    for b in &s.blocks {
        match b {
            Block::Text(t) => {
                let _ = writeln!(out, "<p>{}</p>", escape(t));
            }
            Block::Note(t) => {
                let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(t));
            }
            Block::Reading(items) => {
                out.push_str("<div class=\"reading\"><ul>\n");
                for i in items {
                    let _ = writeln!(out, "<li>{}</li>", escape(i));
                }
                out.push_str("</ul></div>\n");
            }
            Block::Facts(kv) => facts(out, kv),
            Block::Pre(t) => {
                let _ = writeln!(out, "<pre>{}</pre>", escape(t));
            }
            Block::Table(t) => {
                out.push_str("<table>\n<thead><tr>");
                for c in &t.header {
                    let _ = write!(out, "<th>{}</th>", escape(c));
                }
                out.push_str("</tr></thead>\n<tbody>\n");
                for r in &t.rows {
                    out.push_str("<tr>");
                    for c in r {
                        let _ = write!(out, "<td>{}</td>", escape(c));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</tbody></table>\n");
            }
            Block::Figure(f) => {
                let _ = writeln!(
                    out,
                    "<figure id=\"fig-{}\">",
                    escape(&f.name.replace(['/', '.'], "-"))
                );
                match svgs.get(&f.name) {
                    Some(svg) => {
                        out.push_str(svg);
                        out.push('\n');
                    }
                    None => {
                        let _ = writeln!(out, "<p class=\"note\">(plot not drawn)</p>");
                    }
                }
                let _ = writeln!(
                    out,
                    "<figcaption>{}</figcaption></figure>",
                    escape(&f.caption)
                );
            }
            Block::TextInfluence(t) => text_influence(out, t),
            Block::Sub(sub) => section(out, sub, svgs, depth + 1),
        }
    }
    if s.collapsed {
        out.push_str("</details>\n");
    } else {
        out.push_str("</section>\n");
    }
}

/// The page. `svgs` maps figure names to their SVG documents (inlined as they are).
pub fn render(r: &Report, svgs: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"rnnscope {}\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        env!("CARGO_PKG_VERSION"),
        escape(&r.title)
    );
    let _ = writeln!(out, "<h1>{}</h1>", escape(&r.title));
    let _ = writeln!(out, "<p class=\"sub\">{}</p>", escape(&r.subtitle));
    let top: Vec<&Section> = r.sections.iter().filter(|s| !s.collapsed).collect();
    if top.len() > 1 {
        out.push_str("<nav>");
        for s in &top {
            let _ = write!(
                out,
                "<a href=\"#{}\">{}</a>",
                escape(&s.id),
                escape(&s.title)
            );
        }
        out.push_str("</nav>\n");
    }
    if !r.headline.is_empty() {
        facts(&mut out, &r.headline);
    }
    if !r.reading.is_empty() {
        out.push_str(
            "<section id=\"reading\"><h2>What the plots show</h2>\n<div class=\"reading\"><ul>\n",
        );
        for i in &r.reading {
            let _ = writeln!(out, "<li>{}</li>", escape(i));
        }
        out.push_str("</ul></div></section>\n");
    }
    for s in &r.sections {
        section(&mut out, s, svgs, 0);
    }
    let _ = writeln!(
        out,
        "<footer>Written by rnnscope {} from the files in {}. Every plot is inline SVG; nothing is loaded from elsewhere.</footer>",
        env!("CARGO_PKG_VERSION"),
        escape(&r.dir)
    );
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// Decades of `|dJ^(i)/dh^(j)|` below a target's largest value that the colour scale spans.
const INFLUENCE_DECADES: f64 = 6.0;

/// The influence view: per target, the window's tokens up to it, each on a background whose
/// strength is `1 + log10(v / max) / 6` (the largest influence full colour, 1e-6 of it none);
/// the hover title holds the value.
fn text_influence(out: &mut String, t: &crate::analysis::text_view::TextInfluence) {
    let visible = |s: &str| s.replace('\n', "\u{21b5}\n");
    for target in &t.targets {
        let mut rows = vec![("h", "hidden state", &target.hidden)];
        if let Some(c) = &target.cell {
            rows.push(("c", "cell state", c));
        }
        for (sym, what, values) in rows {
            let max = values.iter().copied().fold(0.0f64, f64::max);
            let _ = write!(
                out,
                "<div class=\"influence\"><p class=\"note\">Loss at position {} (predicting <b>{}</b>), through the {what}: |dJ/d{sym}^(j)| relative to its largest value {:.3e}; stronger colour, more influence (log scale over {INFLUENCE_DECADES} decades).</p><p style=\"font-family:monospace;white-space:pre-wrap;line-height:1.6\">",
                target.position,
                escape(&visible(&target.next)),
                max
            );
            for (j, tok) in t.tokens.iter().enumerate().take(target.position + 1) {
                let v = values[j];
                let a = if max > 0.0 && v > 0.0 {
                    (1.0 + (v / max).log10() / INFLUENCE_DECADES).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let border = if j == target.position {
                    "outline:2px solid #333;"
                } else {
                    ""
                };
                let _ = write!(
                    out,
                    "<span title=\"j = {j}: {v:.3e}\" style=\"background:rgba(214,39,40,{a:.3});{border}\">{}</span>",
                    escape(&visible(tok))
                );
            }
            out.push_str("</p></div>\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("R(l) < 1e-3 & \"x\""),
            "R(l) &lt; 1e-3 &amp; &quot;x&quot;"
        );
    }
}
