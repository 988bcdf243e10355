//! `sluice-bench plot a.json b.json -o out.svg`: latency by percentile, one line per phase of
//! each JSON report, as HdrHistogram plots draw it: the x axis is 1/(1-percentile) on a log
//! scale (90 %, 99 %, 99.9 % … equally spaced), the y axis latency in ms on a log scale.
//! Hand-written SVG, no dependencies.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args, Debug, Clone)]
pub struct PlotArgs {
    /// JSON files written by --json of produce, consume, e2e or compare.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(short = 'o', long, default_value = "latency.svg")]
    pub out: PathBuf,
}

/// One line: a label and `(percentile, µs)` points.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, u64)>,
}

/// Every phase with a percentile curve in a report.
pub fn series_of(report: &serde_json::Value, prefix: &str) -> Vec<Series> {
    let mut out = Vec::new();
    for p in report["phases"].as_array().into_iter().flatten() {
        let points: Vec<(f64, u64)> = p["percentiles"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|pt| Some((pt[0].as_f64()?, pt[1].as_u64()?)))
            .collect();
        if !points.is_empty() {
            out.push(Series {
                label: format!("{prefix} {}", p["phase"].as_str().unwrap_or("?")),
                points,
            });
        }
    }
    out
}

pub fn run(a: &PlotArgs) -> anyhow::Result<()> {
    let mut series = Vec::new();
    for f in &a.files {
        let text = std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
        let j: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parse {}", f.display()))?;
        let name = j["broker"].as_str().map(str::to_owned).unwrap_or_else(|| {
            f.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        series.extend(series_of(&j, &name));
    }
    anyhow::ensure!(
        !series.is_empty(),
        "no percentile curves in the given files"
    );
    std::fs::write(&a.out, svg(&series)).with_context(|| format!("write {}", a.out.display()))?;
    println!("wrote {} ({} lines)", a.out.display(), series.len());
    Ok(())
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// x: log10(1/(1-p)), capped at 6 (99.9999 %).
fn x_of(percentile: f64) -> f64 {
    let q = (percentile / 100.0).min(0.999_999);
    (1.0 / (1.0 - q)).log10()
}

pub fn svg(series: &[Series]) -> String {
    let (w, h) = (900.0, 560.0);
    let (left, right, top, bottom) = (70.0, 250.0, 30.0, 60.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let xmax = 6.0f64;
    let mut ymin_ms = f64::MAX;
    let mut ymax_ms = 0.0f64;
    for s in series {
        for &(_, us) in &s.points {
            let ms = (us.max(1) as f64) / 1000.0;
            ymin_ms = ymin_ms.min(ms);
            ymax_ms = ymax_ms.max(ms);
        }
    }
    if ymax_ms <= 0.0 {
        ymin_ms = 0.001;
        ymax_ms = 1.0;
    }
    let lo = ymin_ms.log10().floor();
    let hi = ymax_ms.log10().ceil().max(lo + 1.0);
    let px = |x: f64| left + pw * x.min(xmax) / xmax;
    let py = |ms: f64| top + ph * (1.0 - (ms.max(1e-3).log10() - lo) / (hi - lo));
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="18" text-anchor="middle" font-size="14">Latency by percentile</text>"#,
        left + pw / 2.0
    );
    // Axes and grid.
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        .iter()
        .enumerate()
    {
        let x = px(i as f64);
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            top + ph
        );
        let _ = writeln!(
            o,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            top + ph + 18.0
        );
    }
    let mut e = lo;
    while e <= hi + 1e-9 {
        let ms = 10f64.powf(e);
        let y = py(ms);
        let _ = writeln!(
            o,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/>"##,
            left + pw
        );
        let label = if ms >= 1.0 {
            format!("{ms:.0} ms")
        } else {
            format!("{ms} ms")
        };
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
            left - 6.0,
            y + 4.0
        );
        e += 1.0;
    }
    let _ = writeln!(
        o,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        left + pw / 2.0,
        h - 20.0
    );
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|&(p, us)| format!("{:.1},{:.1}", px(x_of(p)), py(us as f64 / 1000.0)))
            .collect();
        let _ = writeln!(
            o,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        let ly = top + 10.0 + 20.0 * i as f64;
        let lx = left + pw + 15.0;
        let _ = writeln!(
            o,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/>"#,
            lx + 20.0
        );
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{}">{}</text>"#,
            lx + 26.0,
            ly + 4.0,
            escape(&s.label)
        );
    }
    o.push_str("</svg>\n");
    o
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Curves from two reports become two labelled polylines in one well-formed SVG.
    #[test]
    fn plots_every_phase() {
        let a = serde_json::json!({"phases": [{"phase": "produce", "percentiles": [[0.0, 100], [50.0, 200], [99.9, 5000]]}]});
        let b = serde_json::json!({"phases": [{"phase": "consume", "percentiles": [[0.0, 10], [99.0, 80]]}]});
        let mut s = series_of(&a, "sluice");
        s.extend(series_of(&b, "kafka<4.4>"));
        let svg = svg(&s);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("sluice produce") && svg.contains("kafka&lt;4.4&gt; consume"));
        assert!(!svg.contains("NaN"));
    }
}
