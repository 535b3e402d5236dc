//! The scaling plot as a hand-written SVG: requests/s against server cores on the left,
//! scaling efficiency against server cores on the right (with the ideal 1.0 dashed), one
//! line per workload, a shared legend underneath. No plotting library: a few dozen
//! elements, readable in any browser.
//!
//! Pure: figures in, text out. Must not depend on the measurement code.

use std::fmt::Write as _;

use super::table::Workload;

/// One measured point of a series.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub cores: usize,
    pub rps: f64,
    pub efficiency: Option<f64>,
}

/// One workload's points, in ascending cores.
#[derive(Clone, Debug)]
pub struct Series {
    pub workload: Workload,
    pub points: Vec<Point>,
}

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 450.0;
/// Plot area of each panel, top and bottom edges (shared).
const TOP: f64 = 76.0;
const BOTTOM: f64 = 340.0;
/// Left and right edges of the two panels.
const PANELS: [(f64, f64); 2] = [(90.0, 450.0), (580.0, 940.0)];

fn colour(w: Workload) -> (&'static str, &'static str) {
    // (stroke, dash pattern)
    match w {
        Workload::AtlasHit => ("#1f77b4", ""),
        Workload::AtlasHealth => ("#2ca02c", ""),
        Workload::Floor => ("#555555", "6 4"),
    }
}

/// A tick step of 1, 2, 2.5 or 5 times a power of ten giving about `n` steps up to `max`,
/// and the axis top (a whole number of steps at or above `max`).
pub fn nice_axis(max: f64, n: u32) -> (f64, f64) {
    if !(max.is_finite() && max > 0.0) {
        return (0.2, 1.0);
    }
    let raw = max / f64::from(n.max(1));
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag);
    let top = (max / step - 1e-9).ceil().max(1.0) * step;
    (step, top)
}

/// `950`, `12k`, `1.5M`, `0.8`: short axis labels.
pub fn short(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if v.abs() >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if v.abs() >= 1e3 {
        format!("{}k", trim(format!("{:.1}", v / 1e3)))
    } else {
        trim(format!("{v:.2}"))
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One panel's axes: x over cores `0..=max_cores`, y over `0..=top`.
struct Axes {
    left: f64,
    right: f64,
    max_cores: f64,
    top: f64,
}

impl Axes {
    fn x(&self, cores: f64) -> f64 {
        self.left + (self.right - self.left) * cores / self.max_cores
    }

    fn y(&self, v: f64) -> f64 {
        BOTTOM - (BOTTOM - TOP) * (v / self.top).clamp(0.0, 1.05)
    }

    /// Frame, grid, ticks and titles.
    fn draw(&self, out: &mut String, step: f64, sizes: &[usize], title: &str, y_title: &str) {
        let (l, r) = (self.left, self.right);
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"#,
            (l + r) / 2.0,
            TOP - 14.0,
            esc(title)
        );
        let steps = (self.top / step).round() as u32;
        for i in 0..=steps {
            let v = f64::from(i) * step;
            let y = self.y(v);
            let _ = writeln!(
                out,
                r##"<line x1="{l:.1}" y1="{y:.1}" x2="{r:.1}" y2="{y:.1}" stroke="#e0e0e0"/>"##
            );
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                l - 6.0,
                y + 4.0,
                short(v)
            );
        }
        for &c in sizes {
            let x = self.x(c as f64);
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" y1="{BOTTOM:.1}" x2="{x:.1}" y2="{:.1}" stroke="#333333"/>"##,
                BOTTOM + 5.0
            );
            let _ = writeln!(
                out,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{c}</text>"#,
                BOTTOM + 19.0
            );
        }
        let _ = writeln!(
            out,
            r##"<polyline points="{l:.1},{TOP:.1} {l:.1},{BOTTOM:.1} {r:.1},{BOTTOM:.1}" fill="none" stroke="#333333"/>"##
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">server cores</text>"#,
            (l + r) / 2.0,
            BOTTOM + 38.0
        );
        let (tx, ty) = (l - 58.0, (TOP + BOTTOM) / 2.0);
        let _ = writeln!(
            out,
            r#"<text x="{tx:.1}" y="{ty:.1}" text-anchor="middle" transform="rotate(-90 {tx:.1} {ty:.1})">{}</text>"#,
            esc(y_title)
        );
    }

    /// One series as a line with a dot per point; the dot's tooltip gives the value.
    fn series(&self, out: &mut String, w: Workload, points: &[(usize, f64)], unit: &str) {
        if points.is_empty() {
            return;
        }
        let (stroke, dash) = colour(w);
        let coords: Vec<String> = points
            .iter()
            .map(|&(c, v)| format!("{:.1},{:.1}", self.x(c as f64), self.y(v)))
            .collect();
        let dash = if dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{dash}""#)
        };
        let _ = writeln!(
            out,
            r#"<polyline class="{}" points="{}" fill="none" stroke="{stroke}" stroke-width="2"{dash}/>"#,
            w.name(),
            coords.join(" ")
        );
        for &(c, v) in points {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{stroke}"><title>{}: {c} cores, {} {}</title></circle>"#,
                self.x(c as f64),
                self.y(v),
                esc(w.describe()),
                short(v),
                esc(unit)
            );
        }
    }
}

/// Renders the two-panel plot. `subtitle` says where and how it was measured.
pub fn render(series: &[Series], subtitle: &str) -> String {
    let mut sizes: Vec<usize> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.cores))
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let max_cores = sizes.last().copied().unwrap_or(1).max(1) as f64;
    let max_rps = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.rps))
        .fold(0.0, f64::max);
    let max_eff = series
        .iter()
        .flat_map(|s| s.points.iter().filter_map(|p| p.efficiency))
        .fold(1.2, f64::max);
    let (rps_step, rps_top) = nice_axis(max_rps, 5);
    let (eff_step, eff_top) = nice_axis(max_eff, 6);
    let rps_axes = Axes {
        left: PANELS[0].0,
        right: PANELS[0].1,
        max_cores,
        top: rps_top,
    };
    let eff_axes = Axes {
        left: PANELS[1].0,
        right: PANELS[1].1,
        max_cores,
        top: eff_top,
    };

    let mut out = String::with_capacity(8 * 1024);
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="20" text-anchor="middle" font-size="14" font-weight="bold">atlas-bench scale</text>"#,
        WIDTH / 2.0
    );
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="38" text-anchor="middle" fill="#555555">{}</text>"##,
        WIDTH / 2.0,
        esc(subtitle)
    );
    rps_axes.draw(
        &mut out,
        rps_step,
        &sizes,
        "Throughput",
        "requests per second",
    );
    eff_axes.draw(
        &mut out,
        eff_step,
        &sizes,
        "Scaling efficiency",
        "req/s per core ÷ req/s per core at the smallest size",
    );
    let ideal = eff_axes.y(1.0);
    let _ = writeln!(
        out,
        r##"<line x1="{:.1}" y1="{ideal:.1}" x2="{:.1}" y2="{ideal:.1}" stroke="#999999" stroke-dasharray="2 3"/>"##,
        eff_axes.left, eff_axes.right
    );
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#777777">ideal</text>"##,
        eff_axes.right - 4.0,
        ideal - 5.0
    );
    for s in series {
        let rps: Vec<(usize, f64)> = s.points.iter().map(|p| (p.cores, p.rps)).collect();
        let eff: Vec<(usize, f64)> = s
            .points
            .iter()
            .filter_map(|p| p.efficiency.map(|e| (p.cores, e)))
            .collect();
        rps_axes.series(&mut out, s.workload, &rps, "req/s");
        eff_axes.series(&mut out, s.workload, &eff, "efficiency");
    }
    // Legend: one entry per series, in a row under both panels.
    let mut x = PANELS[0].0;
    let y = HEIGHT - 30.0;
    for s in series {
        let (stroke, dash) = colour(s.workload);
        let dash = if dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{dash}""#)
        };
        let _ = writeln!(
            out,
            r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{stroke}" stroke-width="2"{dash}/>"#,
            x + 28.0
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}">{} ({})</text>"#,
            x + 34.0,
            y + 4.0,
            esc(s.workload.describe()),
            s.workload.name()
        );
        x += 280.0;
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small XML well-formedness check: tags nest and close, attributes are quoted, `&`
    /// starts an entity, and there is one root element.
    fn assert_well_formed(xml: &str) {
        let mut stack: Vec<String> = Vec::new();
        let mut roots = 0;
        let mut rest = xml.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('<') {
                let end = after.find('>').expect("unclosed tag");
                let tag = &after[..end];
                rest = &after[end + 1..];
                if let Some(name) = tag.strip_prefix('/') {
                    assert_eq!(
                        stack.pop().as_deref(),
                        Some(name.trim()),
                        "mismatched </{name}>"
                    );
                    continue;
                }
                let self_closing = tag.ends_with('/');
                let body = tag.trim_end_matches('/');
                let name = body.split_whitespace().next().expect("empty tag");
                assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
                let attrs = &body[name.len()..];
                // Every attribute is name="value" with no stray quote.
                assert_eq!(attrs.matches('"').count() % 2, 0, "quotes in <{tag}>");
                assert_eq!(
                    attrs.matches('=').count() * 2,
                    attrs.matches('"').count(),
                    "<{tag}>"
                );
                assert!(!attrs.contains('<'), "<{tag}>");
                if stack.is_empty() {
                    roots += 1;
                }
                if !self_closing {
                    stack.push(name.to_string());
                }
            } else {
                let end = rest.find('<').unwrap_or(rest.len());
                let text = &rest[..end];
                assert!(
                    !stack.is_empty() || text.trim().is_empty(),
                    "text outside the root"
                );
                for (i, _) in text.match_indices('&') {
                    let entity = &text[i..];
                    assert!(
                        ["&amp;", "&lt;", "&gt;", "&quot;"]
                            .iter()
                            .any(|e| entity.starts_with(e)),
                        "bare & in {text}"
                    );
                }
                rest = &rest[end..];
            }
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
        assert_eq!(roots, 1);
    }

    fn series() -> Vec<Series> {
        let pts = |rps: &[f64]| -> Vec<Point> {
            let base = rps[0];
            [1usize, 2, 4, 8]
                .iter()
                .zip(rps)
                .map(|(&c, &r)| Point {
                    cores: c,
                    rps: r,
                    efficiency: Some(r / (c as f64 * base)),
                })
                .collect()
        };
        vec![
            Series {
                workload: Workload::AtlasHit,
                points: pts(&[50e3, 90e3, 160e3, 280e3]),
            },
            Series {
                workload: Workload::AtlasHealth,
                points: pts(&[70e3, 135e3, 260e3, 500e3]),
            },
            Series {
                workload: Workload::Floor,
                points: pts(&[80e3, 158e3, 310e3, 600e3]),
            },
        ]
    }

    #[test]
    fn the_plot_is_well_formed_and_has_every_series_in_both_panels() {
        let svg = render(&series(), "16-core host, server 0-7 & client 8-15 <test>");
        assert_well_formed(&svg);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        for w in Workload::ALL {
            let lines = svg.matches(&format!("class=\"{}\"", w.name())).count();
            assert_eq!(lines, 2, "{} in both panels", w.name());
            assert!(svg.contains(w.describe()), "legend names {}", w.name());
        }
        // Four points per series per panel, each with its value.
        assert_eq!(svg.matches("<circle").count(), 3 * 4 * 2);
        assert!(svg.contains("Atlas POST /ai (cache hit): 8 cores, 280k req/s"));
        assert!(svg.contains("ideal"));
        assert!(svg.contains("&amp; client 8-15 &lt;test&gt;"));
        // The x axis is labelled with the sizes measured.
        for c in ["1", "2", "4", "8"] {
            assert!(
                svg.contains(&format!("text-anchor=\"middle\">{c}</text>")),
                "tick {c}"
            );
        }
    }

    #[test]
    fn points_land_inside_their_panel() {
        let svg = render(&series(), "");
        for circle in svg.split("<circle").skip(1) {
            let num = |attr: &str| -> f64 {
                let v = circle.split(&format!("{attr}=\"")).nth(1).unwrap();
                v[..v.find('"').unwrap()].parse().unwrap()
            };
            let (x, y) = (num("cx"), num("cy"));
            assert!((TOP..=BOTTOM).contains(&y), "y {y}");
            assert!(PANELS.iter().any(|&(l, r)| (l..=r).contains(&x)), "x {x}");
        }
    }

    #[test]
    fn a_single_size_or_empty_series_still_renders() {
        let one = vec![Series {
            workload: Workload::AtlasHit,
            points: vec![Point {
                cores: 1,
                rps: 1234.0,
                efficiency: Some(1.0),
            }],
        }];
        assert_well_formed(&render(&one, "one core"));
        assert_well_formed(&render(&[], "nothing"));
    }

    #[test]
    fn axes_get_round_steps_above_the_maximum() {
        for (max, n, want) in [
            (600e3, 5, (200e3, 600e3)),
            (610e3, 5, (200e3, 800e3)),
            (1.2, 6, (0.2, 1.2)),
            (1.45, 6, (0.25, 1.5)),
            (47.0, 5, (10.0, 50.0)),
            (0.0, 5, (0.2, 1.0)),
        ] {
            let (step, top) = nice_axis(max, n);
            assert!(
                (step - want.0).abs() < 1e-9 * want.0 && (top - want.1).abs() < 1e-9 * want.1,
                "{max}: {step}, {top}"
            );
        }
        assert_eq!(short(280e3), "280k");
        assert_eq!(short(1.5e6), "1.5M");
        assert_eq!(short(12_500.0), "12.5k");
        assert_eq!(short(0.8), "0.8");
        assert_eq!(short(0.0), "0");
    }
}
