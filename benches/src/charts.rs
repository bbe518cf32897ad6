//! SVG charts in the spirit of the PASTE paper's figures: per workload, throughput,
//! p99 latency and server CPU per request against the number of connections, one
//! line per subject (median over rounds, with a min–max bar).
//!
//! Drawn with plotters' SVG backend and its built-in text estimate (no font files,
//! no system libraries). Owns drawing only; figures come from the summaries.

use std::path::Path;

use plotters::prelude::*;

use crate::record::Summary;
use crate::statistics::Spread;

/// Which figure a chart shows.
#[derive(Debug, Clone, Copy)]
pub enum Metric {
    /// Requests per second.
    Throughput,
    /// p99 latency, µs.
    P99,
    /// Server CPU µs per request.
    ServerCpu,
}

impl Metric {
    /// All charts drawn per workload.
    pub const ALL: [Metric; 3] = [Metric::Throughput, Metric::P99, Metric::ServerCpu];

    fn file_suffix(self) -> &'static str {
        match self {
            Metric::Throughput => "throughput",
            Metric::P99 => "p99",
            Metric::ServerCpu => "server-cpu",
        }
    }

    fn axis(self) -> &'static str {
        match self {
            Metric::Throughput => "requests/s",
            Metric::P99 => "p99 latency (µs)",
            Metric::ServerCpu => "server CPU µs/request",
        }
    }

    fn of(self, s: &Summary) -> Option<Spread> {
        match self {
            Metric::Throughput => s.rps,
            Metric::P99 => s.p99_us,
            Metric::ServerCpu => s.server_cpu_us_per_req,
        }
    }
}

/// The chart's file name for a workload case.
pub fn file_name(case: &str, metric: Metric) -> String {
    format!("{case}-{}.svg", metric.file_suffix())
}

const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Draws one chart of `case` into `dir`; returns its file name.
pub fn draw(dir: &Path, case: &str, metric: Metric, summary: &[Summary]) -> Result<String, String> {
    let rows: Vec<&Summary> = summary.iter().filter(|s| s.workload == case).collect();
    let mut conns: Vec<usize> = rows.iter().map(|s| s.conns).collect();
    conns.sort_unstable();
    conns.dedup();
    let mut subjects: Vec<(String, String)> = vec![];
    for s in &rows {
        if !subjects.iter().any(|(n, _)| n == &s.subject) {
            subjects.push((s.subject.clone(), s.label.clone()));
        }
    }
    let y_max = rows.iter().filter_map(|s| metric.of(s)).map(|s| s.max).fold(0.0f64, f64::max).max(1e-9) * 1.1;
    let name = file_name(case, metric);
    let path = dir.join(&name);
    let err = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    let root = SVGBackend::new(&path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let n = conns.len().max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{case}: {}", metric.axis()), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0.0f64..y_max)
        .map_err(|e| err(&e))?;
    let labels = conns.clone();
    chart
        .configure_mesh()
        .x_desc("connections")
        .y_desc(metric.axis())
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                labels[i as usize].to_string()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(|e| err(&e))?;
    for (si, (subject, label)) in subjects.iter().enumerate() {
        let color = PALETTE[si % PALETTE.len()];
        let points: Vec<(f64, Spread)> = conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                rows.iter()
                    .find(|s| &s.subject == subject && s.conns == *c)
                    .and_then(|s| metric.of(s))
                    .map(|v| (i as f64, v))
            })
            .collect();
        let offset = (si as f64 - subjects.len() as f64 / 2.0) * 0.02;
        chart
            .draw_series(LineSeries::new(points.iter().map(|(x, v)| (x + offset, v.median)), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|(x, v)| Circle::new((x + offset, v.median), 3, color.filled())))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(
                points.iter().map(|(x, v)| PathElement::new(vec![(x + offset, v.min), (x + offset, v.max)], color)),
            )
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(name)
}
