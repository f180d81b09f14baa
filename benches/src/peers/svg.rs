//! Plots as SVG text, with no plotting dependency: a chart with a log x axis
//! (latency in ms, or runtimes), a linear or log y axis, polylines and a legend.
//! Two charts use it: latency distributions (CDFs) and throughput against
//! concurrency.

use std::fmt::Write;
use std::time::Duration;

const W: f64 = 760.0;
const H: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 200.0; // room for the legend
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// Colours per IPAM (railyard, host-local, whereabouts, anything else).
pub fn color(ipam: &str) -> &'static str {
    match ipam {
        "railyard" => "#1f77b4",
        "host-local" => "#2ca02c",
        "whereabouts" => "#d62728",
        _ => "#7f7f7f",
    }
}

/// Dash pattern per concurrency, so one chart can hold 1, 8 and 64 runtimes.
pub fn dash(concurrency: usize) -> &'static str {
    match concurrency {
        1 => "",
        2..=8 => "6,3",
        _ => "2,2",
    }
}

#[derive(Debug)]
pub struct Series {
    pub label: String,
    pub color: &'static str,
    pub dash: &'static str,
    pub points: Vec<(f64, f64)>,
}

/// A chart of `series`; x is log-scaled, y is log-scaled if `log_y`.
pub fn chart(title: &str, x_label: &str, y_label: &str, log_y: bool, series: &[Series]) -> String {
    let pts = series.iter().flat_map(|s| &s.points);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (1.0, 10.0, 0.0, 1.0);
    }
    // Whole decades on log axes; 0 to the maximum on a linear one.
    let (lx0, lx1) = decades(x0, x1);
    let (ly0, ly1) = if log_y {
        decades(y0, y1)
    } else {
        (0.0, y1.max(1e-9))
    };
    let fy = |y: f64| if log_y { y.max(1e-12).log10() } else { y };
    let px = |x: f64| LEFT + (x.max(1e-12).log10() - lx0) / (lx1 - lx0) * (W - LEFT - RIGHT);
    let py = |y: f64| H - BOTTOM - (fy(y) - ly0) / (ly1 - ly0) * (H - TOP - BOTTOM);

    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>
"#,
        (W - RIGHT + LEFT) / 2.0,
        esc(title)
    );
    // Grid and ticks: each decade on x (and on log y), five steps on linear y.
    for d in (lx0 as i32)..=(lx1 as i32) {
        let x = px(10f64.powi(d));
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            H - BOTTOM,
            H - BOTTOM + 16.0,
            num(10f64.powi(d))
        );
    }
    let y_ticks: Vec<f64> = if log_y {
        ((ly0 as i32)..=(ly1 as i32))
            .map(|d| 10f64.powi(d))
            .collect()
    } else {
        (0..=5).map(|i| ly1 * i as f64 / 5.0).collect()
    };
    for v in y_ticks {
        let y = py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            num(v)
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#333"/>
<text x="{}" y="{}" text-anchor="middle">{}</text>
<text transform="translate(18 {}) rotate(-90)" text-anchor="middle">{}</text>"##,
        W - LEFT - RIGHT,
        H - TOP - BOTTOM,
        (W - RIGHT + LEFT) / 2.0,
        H - 10.0,
        esc(x_label),
        (H - BOTTOM + TOP) / 2.0,
        esc(y_label)
    );
    for (i, ser) in series.iter().enumerate() {
        let path: Vec<String> = ser
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" stroke-dasharray="{}" points="{}"/>"#,
            ser.color,
            ser.dash,
            path.join(" ")
        );
        if ser.points.len() <= 8 {
            for p in &path {
                let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(
                    s,
                    r#"<circle cx="{x}" cy="{y}" r="3" fill="{}"/>"#,
                    ser.color
                );
            }
        }
        let ly = TOP + 10.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2" stroke-dasharray="{}"/><text x="{}" y="{}">{}</text>"#,
            W - RIGHT + 12.0,
            W - RIGHT + 40.0,
            ser.color,
            ser.dash,
            W - RIGHT + 46.0,
            ly + 4.0,
            esc(&ser.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A latency distribution as CDF points: (ms, fraction of calls at most that).
pub fn cdf(samples: &[Duration]) -> Vec<(f64, f64)> {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let n = ms.len() as f64;
    ms.iter()
        .enumerate()
        .map(|(i, &v)| (v, (i + 1) as f64 / n))
        .collect()
}

fn decades(lo: f64, hi: f64) -> (f64, f64) {
    let a = lo.max(1e-9).log10().floor();
    let b = hi.max(1e-9).log10().ceil();
    (a, if b > a { b } else { a + 1.0 })
}

fn num(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 1.0 || v == 0.0 {
        format!("{}", (v * 100.0).round() / 100.0)
    } else {
        format!("{v}")
    }
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
