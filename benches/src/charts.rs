//! SVG charts in the spirit of the PASTE paper's figures: per workload (and server
//! core count), throughput, p99 latency and server CPU per request against the
//! number of connections; and per workload and connection count, the scaling
//! charts: throughput and server CPU per request against the number of server
//! cores. One line per subject (median over rounds, with a min–max bar).
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

/// The chart's file name for a workload case at `server_cores` server cores (the
/// single-core charts keep their plain names).
pub fn file_name(case: &str, server_cores: usize, metric: Metric) -> String {
    if server_cores == 1 {
        format!("{case}-{}.svg", metric.file_suffix())
    } else {
        format!("{case}-{server_cores}cores-{}.svg", metric.file_suffix())
    }
}

/// The scaling chart's file name for a workload case at `conns` connections.
pub fn scaling_file_name(case: &str, conns: usize, metric: Metric) -> String {
    format!("{case}-c{conns}-scaling-{}.svg", metric.file_suffix())
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

/// One line of a chart: its label and its points (x index, figure).
type Series = (String, Vec<(usize, Spread)>);

/// The lines of `metric` over `rows`: one per subject (first-seen order), x the
/// index of `key(row)` in `xs`.
fn series(rows: &[&Summary], xs: &[usize], key: impl Fn(&Summary) -> usize, metric: Metric) -> Vec<Series> {
    let mut subjects: Vec<(String, String)> = vec![];
    for s in rows {
        if !subjects.iter().any(|(n, _)| n == &s.subject) {
            subjects.push((s.subject.clone(), s.label.clone()));
        }
    }
    subjects
        .into_iter()
        .map(|(subject, label)| {
            let points = xs
                .iter()
                .enumerate()
                .filter_map(|(i, x)| {
                    rows.iter()
                        .find(|s| s.subject == subject && key(s) == *x)
                        .and_then(|s| metric.of(s))
                        .map(|v| (i, v))
                })
                .collect();
            (label, points)
        })
        .collect()
}

/// How the x axis places its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum XAxis {
    /// Evenly spaced, in order (connections: 1, 10, 100).
    Categories,
    /// At their value, from 0 (server cores: linear scaling is a straight line).
    Linear,
}

/// Draws a line chart into `path`.
fn line_chart(
    path: &Path,
    caption: &str,
    (x_desc, axis): (&str, XAxis),
    xs: &[usize],
    lines: &[Series],
    metric: Metric,
) -> Result<(), String> {
    let y_max = lines.iter().flat_map(|(_, p)| p.iter().map(|(_, v)| v.max)).fold(0.0f64, f64::max).max(1e-9) * 1.1;
    let err = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let n = xs.len().max(1);
    let last = xs.iter().copied().max().unwrap_or(1);
    let (x_range, ticks) = match axis {
        XAxis::Categories => (-0.5f64..(n as f64 - 0.5), n),
        XAxis::Linear => (0.0f64..(last as f64 * 1.08 + 0.5), last + 1),
    };
    // Where point `i` sits, and which label a tick at `x` gets.
    let position = |i: usize| match axis {
        XAxis::Categories => i as f64,
        XAxis::Linear => xs[i] as f64,
    };
    let labels = xs.to_vec();
    let label = |x: &f64| {
        let r = x.round();
        if (x - r).abs() > 1e-6 || r < 0.0 {
            return String::new();
        }
        match axis {
            XAxis::Categories => labels.get(r as usize).map_or(String::new(), |v| v.to_string()),
            XAxis::Linear if labels.contains(&(r as usize)) => (r as usize).to_string(),
            XAxis::Linear => String::new(),
        }
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range, 0.0f64..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(metric.axis())
        .x_labels(ticks)
        .x_label_formatter(&label)
        .draw()
        .map_err(|e| err(&e))?;
    for (si, (label, points)) in lines.iter().enumerate() {
        let color = PALETTE[si % PALETTE.len()];
        let offset = (si as f64 - lines.len() as f64 / 2.0) * 0.02;
        let at = |i: usize| position(i) + offset;
        chart
            .draw_series(LineSeries::new(points.iter().map(|(i, v)| (at(*i), v.median)), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|(i, v)| Circle::new((at(*i), v.median), 3, color.filled())))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(points.iter().map(|(i, v)| PathElement::new(vec![(at(*i), v.min), (at(*i), v.max)], color)))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// Draws `metric` of `case` at `server_cores` server cores against the
/// connections into `dir`; returns its file name.
pub fn draw(
    dir: &Path,
    case: &str,
    server_cores: usize,
    metric: Metric,
    summary: &[Summary],
) -> Result<String, String> {
    let rows: Vec<&Summary> = summary.iter().filter(|s| s.workload == case && s.server_cores == server_cores).collect();
    let mut conns: Vec<usize> = rows.iter().map(|s| s.conns).collect();
    conns.sort_unstable();
    conns.dedup();
    let name = file_name(case, server_cores, metric);
    let lines = series(&rows, &conns, |s| s.conns, metric);
    let caption = if server_cores == 1 {
        format!("{case}: {}", metric.axis())
    } else {
        format!("{case}, {server_cores} server cores: {}", metric.axis())
    };
    line_chart(&dir.join(&name), &caption, ("connections", XAxis::Categories), &conns, &lines, metric)?;
    Ok(name)
}

/// The scaling charts' metrics: throughput and server CPU per request.
pub const SCALING: [Metric; 2] = [Metric::Throughput, Metric::ServerCpu];

/// Draws `metric` of `case` at `conns` connections against the server cores into
/// `dir`; returns its file name, or `None` when fewer than two core counts have
/// figures (nothing to scale).
pub fn draw_scaling(
    dir: &Path,
    case: &str,
    conns: usize,
    metric: Metric,
    summary: &[Summary],
) -> Result<Option<String>, String> {
    let rows: Vec<&Summary> = summary.iter().filter(|s| s.workload == case && s.conns == conns).collect();
    let mut cores: Vec<usize> = rows.iter().filter(|s| metric.of(s).is_some()).map(|s| s.server_cores).collect();
    cores.sort_unstable();
    cores.dedup();
    if cores.len() < 2 {
        return Ok(None);
    }
    let name = scaling_file_name(case, conns, metric);
    let lines = series(&rows, &cores, |s| s.server_cores, metric);
    let caption = format!("{case}, {conns} connections: {} by server cores", metric.axis());
    line_chart(&dir.join(&name), &caption, ("server cores", XAxis::Linear), &cores, &lines, metric)?;
    Ok(Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Summary;

    fn summary(subject: &str, cores: usize, rps: f64, cpu: f64) -> Summary {
        let spread = |v: f64| Some(Spread { median: v, min: v * 0.9, max: v * 1.1, n: 3 });
        Summary {
            subject: subject.into(),
            label: subject.into(),
            emulated: false,
            workload: "rpc".into(),
            conns: 100,
            server_cores: cores,
            rps: spread(rps),
            p50_us: None,
            p99_us: None,
            p999_us: None,
            server_cpu_us_per_req: spread(cpu),
            client_cpu_us_per_req: None,
            syscalls_per_req: None,
            runtime_syscalls_per_req: None,
            mean_rx_batch: None,
            allocs_per_req: None,
            rss_kb: None,
            mem_per_conn_kb: None,
            errors: 0,
            rps_vs_baseline: None,
            cpu_vs_baseline: None,
        }
    }

    #[test]
    fn scaling_charts_have_one_line_per_subject_over_the_core_counts() {
        let dir = std::env::temp_dir().join(format!("paste-bench-charts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rows = [
            summary("paste-rt-uring", 1, 160_000.0, 6.0),
            summary("tokio-mt", 1, 170_000.0, 5.8),
            summary("paste-rt-uring", 4, 600_000.0, 6.4),
            summary("tokio-mt", 4, 640_000.0, 6.1),
        ];
        let name = draw_scaling(&dir, "rpc", 100, Metric::Throughput, &rows).unwrap().expect("two core counts");
        assert_eq!(name, "rpc-c100-scaling-throughput.svg");
        let svg = std::fs::read_to_string(dir.join(&name)).unwrap();
        assert!(svg.contains("paste-rt-uring") && svg.contains("tokio-mt") && svg.contains("server cores"));
        let cpu = draw_scaling(&dir, "rpc", 100, Metric::ServerCpu, &rows).unwrap().unwrap();
        assert_eq!(cpu, "rpc-c100-scaling-server-cpu.svg");
        assert_eq!(draw_scaling(&dir, "rpc", 100, Metric::Throughput, &rows[..2]).unwrap(), None, "one core count");
        assert_eq!(draw(&dir, "rpc", 4, Metric::P99, &rows).unwrap(), "rpc-4cores-p99.svg");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
