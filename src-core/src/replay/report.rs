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

/// A line chart of `series` (name, points) with axis labels.
fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let xs = series.iter().flat_map(|s| s.1.iter().map(|p| p.0));
        let ys = series.iter().flat_map(|s| s.1.iter().map(|p| p.1));
        let x_max = xs.fold(1.0f64, f64::max);
        let y_max = ys.fold(0.0f64, f64::max).max(1e-6) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
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
        "log10(µs)",
        "share of requests",
        &series,
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes `index.html` and `report.json` into `dir` (created); both through temporary
/// files and renames, so a stopped run never leaves a half-written report.
pub fn write(report: &ReplayReport, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
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
            "events replayed",
            "HR",
            &metric(|w| w.figures.hr),
        )?,
        lines(
            &format!("NDCG@{} per window", report.k),
            "events replayed",
            "NDCG",
            &metric(|w| w.figures.ndcg),
        )?,
        lines(
            "MRR per window",
            "events replayed",
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
            "events replayed",
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
         </head><body><h1>Replay of {}</h1><p>{} events per strategy, k = {}, {:.1} s{}.</p>\
         <table><tr><th>strategy</th><th>HR@{k}</th><th>NDCG@{k}</th><th>MRR</th><th>coverage</th><th>rankings</th><th>reward</th><th>p50 µs</th><th>p99 µs</th><th>served agreement</th></tr>",
        esc(&report.source),
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
    for svg in charts {
        html.push_str("<div>");
        html.push_str(&svg);
        html.push_str("</div>");
    }
    html.push_str("<p>Generated by <code>attune replay</code>; every figure is in report.json.</p></body></html>\n");
    let json = serde_json::to_vec_pretty(report)?;
    for (name, bytes) in [("index.html", html.as_bytes()), ("report.json", &json[..])] {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}
