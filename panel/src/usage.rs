//! Usage over time: the samples the reconciler pulls from hosts turned into rates for the VPS
//! page's charts (CPU, memory against guarantee and burst, disk, network over the last day)
//! and into transferred bytes per billing period for bandwidth metering.
//!
//! Hosts report monotonic counters (CPU time, bytes); a counter that goes backwards means the
//! instance restarted and counts from zero again, so that step counts its new value.

use crate::db::usage::{self as sql, SampleRow};
use crate::ids::{AccountId, InstanceId};
use chrono::{DateTime, Duration, Utc};
use plotters::prelude::*;
use sqlx::PgPool;

/// One point of the charts.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub at: DateTime<Utc>,
    /// CPU in cores (1.0 = one core busy).
    pub cpu_cores: f64,
    pub memory_mib: f64,
    /// Memory above the guarantee: borrowed from idle neighbours.
    pub burst_mib: f64,
    pub disk_gib: f64,
    pub rx_mbit: f64,
    pub tx_mbit: f64,
}

fn delta(prev: i64, now: i64) -> i64 {
    if now >= prev {
        now - prev
    } else {
        now
    }
}

/// Rates between consecutive samples.
pub fn points(samples: &[SampleRow]) -> Vec<Point> {
    samples
        .windows(2)
        .filter_map(|w| {
            let (a, b) = (&w[0], &w[1]);
            let secs = (b.at - a.at).num_milliseconds() as f64 / 1000.0;
            (secs > 0.0).then(|| Point {
                at: b.at,
                cpu_cores: delta(a.cpu_time_ns, b.cpu_time_ns) as f64 / 1e9 / secs,
                memory_mib: b.memory_bytes as f64 / 1048576.0,
                burst_mib: b.memory_burst_bytes as f64 / 1048576.0,
                disk_gib: b.disk_used_bytes as f64 / 1073741824.0,
                rx_mbit: delta(a.net_rx_bytes, b.net_rx_bytes) as f64 * 8.0 / 1e6 / secs,
                tx_mbit: delta(a.net_tx_bytes, b.net_tx_bytes) as f64 * 8.0 / 1e6 / secs,
            })
        })
        .collect()
}

/// Bytes transferred (in + out) between consecutive samples, summed.
pub fn transferred_bytes(samples: &[SampleRow]) -> i64 {
    samples.windows(2).map(|w| delta(w[0].net_rx_bytes, w[1].net_rx_bytes) + delta(w[0].net_tx_bytes, w[1].net_tx_bytes)).sum()
}

/// The last day of one of a customer's VPS (another customer's: empty).
pub async fn last_day(pool: &PgPool, customer: AccountId, instance: InstanceId, now: DateTime<Utc>) -> Result<Vec<Point>, sqlx::Error> {
    Ok(points(&sql::samples(pool, instance, Some(customer), now - Duration::days(1), now).await?))
}

/// Bytes an instance transferred in `[start, end)`, for metering a billing period.
pub async fn metered_bytes(pool: &PgPool, instance: InstanceId, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<i64, sqlx::Error> {
    Ok(transferred_bytes(&sql::samples(pool, instance, None, start, end).await?))
}

/// Which series a chart shows.
#[derive(Clone, Copy, Debug)]
pub enum Chart {
    Cpu {
        vcpus: u32,
    },
    /// Memory with the plan's guarantee and burst ceiling drawn as lines.
    Memory {
        guarantee_mib: u64,
        burst_mib: u64,
    },
    Disk {
        size_gib: u64,
    },
    Network,
}

/// A small SVG chart for the VPS page (server-rendered: no JavaScript needed).
pub fn svg(chart: Chart, points: &[Point]) -> String {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (560, 180)).into_drawing_area();
        let _ = draw(&root, chart, points);
        let _ = root.present();
    }
    out
}

fn draw(root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>, chart: Chart, points: &[Point]) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    let (start, end) = match (points.first(), points.last()) {
        (Some(a), Some(b)) if b.at > a.at => (a.at, b.at),
        _ => {
            let now = Utc::now();
            (now - Duration::days(1), now)
        }
    };
    let (title, series, lines, top): (&str, Vec<Series>, Vec<(&str, f64)>, f64) = match chart {
        Chart::Cpu { vcpus } => (
            "CPU (cores)",
            vec![("cpu", points.iter().map(|p| (p.at, p.cpu_cores)).collect())],
            vec![("ceiling", vcpus as f64)],
            vcpus as f64 * 1.1,
        ),
        Chart::Memory { guarantee_mib, burst_mib } => (
            "Memory (MiB)",
            vec![("used", points.iter().map(|p| (p.at, p.memory_mib)).collect())],
            vec![("guarantee", guarantee_mib as f64), ("burst", burst_mib as f64)],
            burst_mib as f64 * 1.1,
        ),
        Chart::Disk { size_gib } => (
            "Disk (GiB)",
            vec![("used", points.iter().map(|p| (p.at, p.disk_gib)).collect())],
            vec![("size", size_gib as f64)],
            size_gib as f64 * 1.1,
        ),
        Chart::Network => {
            let top = points.iter().map(|p| p.rx_mbit.max(p.tx_mbit)).fold(1.0, f64::max) * 1.1;
            (
                "Network (Mbit/s)",
                vec![
                    ("in", points.iter().map(|p| (p.at, p.rx_mbit)).collect()),
                    ("out", points.iter().map(|p| (p.at, p.tx_mbit)).collect()),
                ],
                vec![],
                top,
            )
        }
    };
    let mut c = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 14))
        .margin(6)
        .x_label_area_size(22)
        .y_label_area_size(44)
        .build_cartesian_2d(start..end, 0f64..top.max(0.001))
        .map_err(err)?;
    c.configure_mesh().x_labels(6).y_labels(4).x_label_formatter(&|t| t.format("%H:%M").to_string()).draw().map_err(err)?;
    let colours = [RGBColor(37, 99, 235), RGBColor(22, 163, 74)];
    for (i, (name, data)) in series.into_iter().enumerate() {
        let colour = colours[i % colours.len()];
        c.draw_series(LineSeries::new(data, colour.stroke_width(2)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], colour));
    }
    for (name, y) in lines {
        let colour = if name == "guarantee" { RGBColor(22, 163, 74) } else { RGBColor(220, 38, 38) };
        c.draw_series(LineSeries::new(vec![(start, y), (end, y)], colour.stroke_width(1)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], colour));
    }
    c.configure_series_labels().border_style(BLACK.mix(0.3)).background_style(WHITE.mix(0.8)).draw().map_err(err)?;
    Ok(())
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Forgets samples older than 35 days (a day of graphs, a month of metering, and margin).
pub async fn prune(pool: &PgPool, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    sql::prune(pool, now - Duration::days(35)).await
}

/// One named line of a chart: its points over time.
type Series<'a> = (&'a str, Vec<(DateTime<Utc>, f64)>);

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: i64, cpu_ns: i64, rx: i64) -> SampleRow {
        SampleRow {
            at: DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap(),
            cpu_time_ns: cpu_ns,
            memory_bytes: 512 << 20,
            memory_burst_bytes: 0,
            disk_used_bytes: 1 << 30,
            net_rx_bytes: rx,
            net_tx_bytes: 0,
        }
    }

    #[test]
    fn rates_and_counter_resets() {
        // 10 s apart: 5 s of CPU = half a core; 10 MB in 10 s = 8 Mbit/s.
        let p = points(&[s(0, 0, 0), s(10, 5_000_000_000, 10_000_000)]);
        assert_eq!(p.len(), 1);
        assert!((p[0].cpu_cores - 0.5).abs() < 1e-9);
        assert!((p[0].rx_mbit - 8.0).abs() < 1e-9);
        // A restart resets counters: the new value counts, nothing goes negative.
        assert_eq!(transferred_bytes(&[s(0, 0, 1000), s(10, 0, 1500), s(20, 0, 200)]), 700);
    }

    #[test]
    fn memory_chart_shows_guarantee_and_burst() {
        let p = points(&[s(0, 0, 0), s(60, 1, 1), s(120, 2, 2)]);
        let svg = svg(Chart::Memory { guarantee_mib: 512, burst_mib: 1024 }, &p);
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.contains("guarantee") && svg.contains("burst") && svg.contains("Memory"));
    }
}
