//! Line charts as SVG, written by hand: axes, ticks, a legend and one polyline per series.
//! Enough for latency against offered rate; no plotting crate, so the workspace builds nothing
//! extra for it.

use std::fmt::Write;

/// One line on a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub dashed: bool,
    /// (x, y) points; drawn in the order given.
    pub points: Vec<(f64, f64)>,
}

/// A chart: linear x axis, logarithmic y axis (latencies span 1 ms to seconds, and a linear
/// axis would flatten the interesting part under the overload spikes).
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// A horizontal reference line (e.g. the p99 bound) and its label.
    pub y_mark: Option<(f64, String)>,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;

/// Colours that stay apart for the usual three systems.
pub const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

impl Chart {
    /// The chart as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let points = self.series.iter().flat_map(|s| s.points.iter());
        let (mut x_max, mut y_min, mut y_max) = (0.0f64, f64::INFINITY, 0.0f64);
        for &(x, y) in points {
            x_max = x_max.max(x);
            if y > 0.0 {
                y_min = y_min.min(y);
                y_max = y_max.max(y);
            }
        }
        if let Some((y, _)) = &self.y_mark {
            y_min = y_min.min(*y);
            y_max = y_max.max(*y);
        }
        if !y_min.is_finite() {
            (y_min, y_max) = (1.0, 10.0);
        }
        let x_ticks = linear_ticks(x_max.max(1.0));
        let x_hi = *x_ticks.last().expect("at least one tick");
        // Whole decades, so the ticks are 1, 10, 100 … ms.
        let lo_exp = y_min.log10().floor() as i32;
        let hi_exp = (y_max.log10().ceil() as i32).max(lo_exp + 1);
        let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let px = |x: f64| LEFT + x / x_hi * plot_w;
        let py = |y: f64| {
            let t = (y.max(10f64.powi(lo_exp)).log10() - lo_exp as f64) / (hi_exp - lo_exp) as f64;
            TOP + plot_h * (1.0 - t)
        };

        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            svg,
            r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
            LEFT + plot_w / 2.0,
            esc(&self.title)
        );
        // Grid and ticks.
        for &x in &x_ticks {
            let _ = writeln!(
                svg,
                r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{1:.1}" stroke="#e5e5e5"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{3}</text>"##,
                px(x),
                TOP + plot_h,
                TOP + plot_h + 16.0,
                thousands(x)
            );
        }
        for e in lo_exp..=hi_exp {
            let y = 10f64.powi(e);
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#e5e5e5"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{4}</text>"##,
                py(y),
                LEFT + plot_w,
                LEFT - 6.0,
                py(y) + 4.0,
                decade_label(e)
            );
        }
        // Axes and their labels.
        let _ = writeln!(
            svg,
            r#"<path d="M{LEFT},{TOP} V{0} H{1}" fill="none" stroke="black"/>"#,
            TOP + plot_h,
            LEFT + plot_w
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + plot_w / 2.0,
            HEIGHT - 14.0,
            esc(&self.x_label)
        );
        let _ = writeln!(
            svg,
            r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + plot_h / 2.0,
            esc(&self.y_label)
        );
        if let Some((y, label)) = &self.y_mark {
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#777" stroke-dasharray="2,3"/><text x="{2:.1}" y="{3:.1}" fill="#555" text-anchor="end">{4}</text>"##,
                py(*y),
                LEFT + plot_w,
                LEFT + plot_w - 4.0,
                py(*y) - 4.0,
                esc(label)
            );
        }
        // The series, then the legend.
        for s in &self.series {
            if s.points.is_empty() {
                continue;
            }
            let path: Vec<String> = s
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let dash = if s.dashed {
                r#" stroke-dasharray="6,4""#
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
                path.join(" "),
                s.color
            );
            for p in &path {
                let (cx, cy) = p.split_once(',').expect("formatted as x,y");
                let _ = writeln!(
                    svg,
                    r#"<circle cx="{cx}" cy="{cy}" r="2.5" fill="{}"/>"#,
                    s.color
                );
            }
        }
        let legend_x = LEFT + plot_w + 14.0;
        for (i, s) in self.series.iter().enumerate() {
            let y = TOP + 10.0 + 20.0 * i as f64;
            let dash = if s.dashed {
                r#" stroke-dasharray="6,4""#
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                r#"<line x1="{legend_x}" y1="{y}" x2="{:.1}" y2="{y}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
                legend_x + 26.0,
                s.color,
                legend_x + 32.0,
                y + 4.0,
                esc(&s.name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

/// Round tick values from 0 to at least `max`: steps of 1, 2 or 5 times a power of ten,
/// about five of them.
fn linear_ticks(max: f64) -> Vec<f64> {
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let n = (max / step).ceil() as usize;
    // Rounded to the step's precision, so 3 × 0.2 reads 0.6, not 0.6000000000000001.
    let decimals = (-step.log10().floor()).max(0.0) as i32;
    let unit = 10f64.powi(decimals);
    (0..=n.max(1))
        .map(|i| (i as f64 * step * unit).round() / unit)
        .collect()
}

fn decade_label(e: i32) -> String {
    if e >= 0 {
        thousands(10f64.powi(e))
    } else {
        format!("{}", 10f64.powi(e))
    }
}

/// 12,500 for 12500.0; decimals only when the value has them.
pub fn thousands(x: f64) -> String {
    if x.fract().abs() > 1e-9 {
        return format!("{x}");
    }
    let digits = format!("{}", x.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            linear_ticks(9000.0),
            vec![0.0, 2000.0, 4000.0, 6000.0, 8000.0, 10000.0]
        );
        assert_eq!(linear_ticks(2600.0), vec![0.0, 1000.0, 2000.0, 3000.0]);
        assert_eq!(thousands(12500.0), "12,500");
        assert_eq!(thousands(100.0), "100");
    }

    #[test]
    fn svg_has_a_line_per_series_and_a_legend() {
        let chart = Chart {
            title: "ack <p99>".into(),
            x_label: "offered msgs/s".into(),
            y_label: "ms".into(),
            series: vec![
                Series {
                    name: "confab-pg p99".into(),
                    color: COLORS[0],
                    dashed: false,
                    points: vec![(1000.0, 4.0), (2000.0, 40.0)],
                },
                Series {
                    name: "peer p99".into(),
                    color: COLORS[1],
                    dashed: true,
                    points: vec![(1000.0, 30.0), (2000.0, 3000.0)],
                },
            ],
            y_mark: Some((50.0, "p99 bound".into())),
        };
        let svg = chart.to_svg();
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("confab-pg p99") && svg.contains("peer p99"));
        assert!(svg.contains("ack &lt;p99&gt;"), "titles are escaped");
        // Decades from 1 to 10,000 ms cover 4 ms … 3 s.
        assert!(svg.contains(">1<") && svg.contains(">10,000<"), "{svg}");
    }
}
