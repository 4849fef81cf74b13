//! The replay's self-contained HTML report (`attune replay --report DIR`): a table of the
//! strategies' figures and SVG charts drawn with plotters (metrics over time per
//! strategy, the latency histogram, the blend weights over time), all inline in one
//! `index.html` that reads offline, beside `report.json` with every figure.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::ReplayReport;
use crate::engine::strategy::SOURCES;
use crate::error::{Error, Result};

const W: u32 = 720;
const H: u32 = 300;

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::config("report", format!("drawing a chart failed: {e}"))
}

/// How an axis labels its ticks.
type Ticks = fn(&f64) -> String;

/// An x axis: its label, its ticks, and whether it starts at 0 (else at the data).
type XAxis<'a> = (&'a str, Ticks, bool);

/// Event counts: whole numbers with thousands separators.
fn count_ticks(v: &f64) -> String {
    let n = v.round().max(0.0) as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Plain figures.
fn value_ticks(v: &f64) -> String {
    format!("{v:.3}")
}

/// A log10 of microseconds, shown as milliseconds.
fn log_ms_ticks(v: &f64) -> String {
    let ms = 10f64.powf(*v) / 1000.0;
    if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else if ms >= 0.1 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.3} ms")
    }
}

/// A line chart of `series` (name, points) with axis labels.
fn lines(
    title: &str,
    (x_label, x_ticks, from_zero): XAxis<'_>,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let xs = series.iter().flat_map(|s| s.1.iter().map(|p| p.0));
        let ys = series.iter().flat_map(|s| s.1.iter().map(|p| p.1));
        let (x_min, x_max) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        });
        let (x_min, x_max) = match (x_min.is_finite() && x_max > x_min, from_zero) {
            (true, true) => (0.0, x_max),
            (true, false) => (x_min, x_max),
            (false, _) => (0.0, 1.0),
        };
        let y_max = ys.fold(0.0f64, f64::max).max(1e-6) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(x_min..x_max, 0.0..y_max)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&x_ticks)
            .y_label_formatter(&value_ticks)
            .draw()
            .map_err(plot_err)?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(plot_err)?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// The latency histogram of each strategy, as lines over log-spaced buckets.
fn latency(report: &ReplayReport) -> Result<String> {
    let series: Vec<(String, Vec<(f64, f64)>)> = report
        .strategies
        .iter()
        .map(|s| {
            let total: u64 = s.latency_buckets.iter().map(|b| b.1).sum();
            let pts = s
                .latency_buckets
                .iter()
                .map(|(le, c)| (le.log10(), *c as f64 / total.max(1) as f64))
                .collect();
            (s.name.clone(), pts)
        })
        .collect();
    lines(
        "Recommendation latency inside the engine",
        ("latency (log scale)", log_ms_ticks, false),
        "share of requests",
        &series,
    )
}

/// What the report says it replayed, without the directories of the machine that made
/// it (a file's or a store's name only).
pub fn source_name(source: &str) -> String {
    let (path, rest) = match source.find(" (") {
        Some(i) => source.split_at(i),
        None => (source, ""),
    };
    let name = Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned());
    format!("{name}{rest}")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes `index.html` and `report.json` into `dir` (created); both through temporary
/// files and renames, so a stopped run never leaves a half-written report. Neither names
/// the directories of the machine that made it.
pub fn write(report: &ReplayReport, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut shown = report.clone();
    shown.source = source_name(&report.source);
    let html = html(&shown)?;
    let json = serde_json::to_vec_pretty(&shown)?;
    for (name, bytes) in [("index.html", html.as_bytes()), ("report.json", &json[..])] {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// The report as one self-contained HTML page.
pub fn html(report: &ReplayReport) -> Result<String> {
    let metric = |f: fn(&super::Window) -> f64| -> Vec<(String, Vec<(f64, f64)>)> {
        report
            .strategies
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.windows
                        .iter()
                        .map(|w| (w.events_to as f64, f(w)))
                        .collect(),
                )
            })
            .collect()
    };
    let mut charts = vec![
        lines(
            &format!("HR@{} per window", report.k),
            ("events replayed", count_ticks, true),
            "HR",
            &metric(|w| w.figures.hr),
        )?,
        lines(
            &format!("NDCG@{} per window", report.k),
            ("events replayed", count_ticks, true),
            "NDCG",
            &metric(|w| w.figures.ndcg),
        )?,
        lines(
            "MRR per window",
            ("events replayed", count_ticks, true),
            "MRR",
            &metric(|w| w.figures.mrr),
        )?,
        latency(report)?,
    ];
    for s in &report.strategies {
        let series: Vec<(String, Vec<(f64, f64)>)> = SOURCES
            .iter()
            .enumerate()
            .map(|(j, name)| {
                (
                    name.to_string(),
                    s.weights
                        .iter()
                        .map(|w| (w.events as f64, f64::from(w.weights.to_array()[j])))
                        .collect(),
                )
            })
            .collect();
        charts.push(lines(
            &format!("Blend weights over time: {}", s.name),
            ("events replayed", count_ticks, true),
            "weight",
            &series,
        )?);
    }
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Attune replay</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th:first-child,td:first-child{{text-align:left}}</style>\
         </head><body><h1>Replay of {}</h1><p class=\"verdict\"><strong>Verdict:</strong> {}</p><p>{} events per strategy, k = {}, {:.1} s{}.</p>\
         <table><tr><th>strategy</th><th>HR@{k}</th><th>NDCG@{k}</th><th>MRR</th><th>coverage</th><th>rankings</th><th>reward</th><th>p50 µs</th><th>p99 µs</th><th>served agreement</th></tr>",
        esc(&source_name(&report.source)),
        esc(&report.verdict),
        report.events,
        report.k,
        report.seconds,
        if report.partial { " (stopped early: partial)" } else { "" },
        k = report.k
    );
    for s in &report.strategies {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.3}</td><td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td><td>{}</td></tr>",
            esc(&s.name),
            s.hr,
            s.ndcg,
            s.mrr,
            s.coverage,
            s.rankings,
            s.reward,
            s.latency_p50_us,
            s.latency_p99_us,
            s.served_agreement
                .map_or("–".to_string(), |a| format!("{:.3} of {}", a, s.served_impressions))
        );
    }
    html.push_str("</table>");
    if !report.comparisons.is_empty() {
        let _ = write!(
            html,
            "<h2>Differences against {} (95% confidence intervals, paired bootstrap over users)</h2>\
             <table><tr><th>strategy</th><th>figure</th><th>baseline</th><th>value</th><th>difference</th><th>95% CI</th><th>beyond noise</th></tr>",
            esc(&report.comparisons[0].baseline)
        );
        for c in &report.comparisons {
            for d in &c.differences {
                let _ = write!(
                    html,
                    "<tr><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:+.4}</td><td>[{:+.4}, {:+.4}]</td><td>{}</td></tr>",
                    esc(&c.strategy),
                    d.metric,
                    d.baseline,
                    d.value,
                    d.diff,
                    d.ci_low,
                    d.ci_high,
                    if d.significant { "yes" } else { "no" }
                );
            }
        }
        html.push_str(
            "</table><p>Coverage and latency are not sums over users: they carry no interval.</p>",
        );
    }
    for svg in charts {
        html.push_str("<div>");
        html.push_str(&svg);
        html.push_str("</div>");
    }
    html.push_str("<p>Generated by <code>attune replay</code>; every figure is in report.json.</p></body></html>\n");
    Ok(html)
}
