//! A grouped horizontal bar chart as SVG, log scale, no dependencies.

use std::fmt::Write as _;
use std::time::Duration;

const COLORS: [&str; 4] = ["#1f77b4", "#aec7e8", "#ff7f0e", "#2ca02c"];

pub fn bars(title: &str, series: &[&str], rows: &[(String, Vec<Option<Duration>>)]) -> String {
    let bar_h = 14.0;
    let group_h = bar_h * series.len() as f64 + 16.0;
    let (left, width) = (230.0, 520.0);
    let height = 60.0 + group_h * rows.len() as f64 + 20.0 * series.len() as f64;
    let all: Vec<f64> = rows
        .iter()
        .flat_map(|r| r.1.iter().flatten().map(Duration::as_secs_f64))
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).max(1e-4) / 2.0;
    let hi = all.iter().copied().fold(0.0, f64::max).max(lo * 10.0);
    let x = |s: f64| left + width * ((s.max(lo)).log10() - lo.log10()) / (hi.log10() - lo.log10());
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="12">"#,
        left + width + 90.0
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="14">{title}</text>"#
    );
    for (i, (name, values)) in rows.iter().enumerate() {
        let y0 = 40.0 + group_h * i as f64;
        let _ = writeln!(
            svg,
            r#"<text x="10" y="{}">{name}</text>"#,
            y0 + group_h / 2.0
        );
        for (j, v) in values.iter().enumerate() {
            let y = y0 + bar_h * j as f64;
            match v {
                Some(d) => {
                    let s = d.as_secs_f64();
                    let _ = writeln!(
                        svg,
                        r#"<rect x="{left}" y="{y}" width="{:.1}" height="{}" fill="{}"/><text x="{:.1}" y="{}">{}</text>"#,
                        x(s) - left,
                        bar_h - 2.0,
                        COLORS[j % 4],
                        x(s) + 4.0,
                        y + bar_h - 4.0,
                        crate::summary::show(*d)
                    );
                }
                None => {
                    let _ = writeln!(
                        svg,
                        r#"<text x="{left}" y="{}">failed</text>"#,
                        y + bar_h - 4.0
                    );
                }
            }
        }
    }
    let ly = 40.0 + group_h * rows.len() as f64;
    for (j, s) in series.iter().enumerate() {
        let y = ly + 20.0 * j as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{left}" y="{y}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            COLORS[j % 4],
            left + 18.0,
            y + 10.0,
            s.replace('`', "")
        );
    }
    let _ = writeln!(svg, "</svg>");
    svg
}
