//! Plain-text output of `nimbus sim`.

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use crate::sim::engine::{Policy, SimConfig};
use crate::sim::generate::{GeneratedTrace, ShapeSummary};
use crate::sim::metrics::PolicyReport;
use crate::sim::trace::Trace;

const LABEL_WIDTH: usize = 30;
const VALUE_WIDTH: usize = 18;

pub fn policy_label(policy: Policy, config: &SimConfig) -> String {
    match policy {
        Policy::HybridHistogram => "hybrid-histogram".to_string(),
        Policy::FixedTtl => format!("fixed-ttl-{}", format_ttl(config.predictor.fixed_ttl)),
    }
}

fn format_ttl(ttl: Duration) -> String {
    let seconds = ttl.as_secs();
    if seconds % 60 == 0 {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// Writes the trace and cluster summary, then one column per policy.
pub fn write_comparison(
    out: &mut dyn Write,
    trace_path: &Path,
    trace: &Trace,
    read_time: Duration,
    config: &SimConfig,
    reports: &[PolicyReport],
) -> io::Result<()> {
    writeln!(
        out,
        "trace:   {}: {} invocations of {} functions over {:.1} min (read in {:.2} s)",
        trace_path.display(),
        group_digits(trace.invocations.len() as u64),
        group_digits(trace.functions.len() as u64),
        trace.span().as_secs_f64() / 60.0,
        read_time.as_secs_f64()
    )?;
    writeln!(
        out,
        "cluster: {} hosts in {} zones, {} MB and {} slots each; cold start {} ms; \
         warm-pool round every {:.1} s; burst limit {} per {:.0} s",
        config.hosts,
        config.zones,
        config.host_memory_mb,
        config.host_slots,
        config.cold_start.as_millis(),
        config.warm_pool_interval.as_secs_f64(),
        config.burst_limit,
        config.burst_interval.as_secs_f64()
    )?;
    writeln!(out)?;

    let labels: Vec<String> = reports.iter().map(|r| policy_label(r.policy, config)).collect();
    write_row(out, "", &labels)?;
    let rows: Vec<(&str, fn(&PolicyReport) -> String)> = vec![
        ("cold-start ratio", |r| format!("{:.2} %", r.cold_start_ratio() * 100.0)),
        ("cold starts", |r| group_digits(r.cold_starts)),
        ("  per-function ratio p50", |r| {
            format!("{:.2} %", r.function_cold_start_percentile(50.0) * 100.0)
        }),
        ("  per-function ratio p75", |r| {
            format!("{:.2} %", r.function_cold_start_percentile(75.0) * 100.0)
        }),
        ("added latency p50 (ms)", |r| {
            r.added_latency_percentile(50.0).to_string()
        }),
        ("added latency p99 (ms)", |r| {
            r.added_latency_percentile(99.0).to_string()
        }),
        ("added latency p99.9 (ms)", |r| {
            r.added_latency_percentile(99.9).to_string()
        }),
        ("added latency mean (ms)", |r| {
            format!("{:.2}", r.mean_added_latency_ms())
        }),
        ("idle memory-time (MB·s)", |r| {
            group_digits(r.idle_memory_mb_seconds().round() as u64)
        }),
        ("throttles", |r| group_digits(r.throttles())),
        ("  by burst limit", |r| group_digits(r.throttled_by_burst_limit)),
        ("  by capacity", |r| group_digits(r.throttled_by_capacity)),
        ("infrequent functions (≤ 1/min)", |r| {
            group_digits(r.infrequent_functions)
        }),
        ("  cold-start ratio", |r| {
            format!("{:.2} %", ratio(r.infrequent.cold_starts, r.infrequent.served) * 100.0)
        }),
        ("  idle memory-time (MB·s)", |r| {
            group_digits((r.infrequent.idle_memory_mb_ms / 1000) as u64)
        }),
        ("peak memory (MB)", |r| group_digits(r.peak_memory_mb)),
        ("invocations served", |r| group_digits(r.served)),
        ("slots started", |r| group_digits(r.slots_started)),
        ("  pre-warmed", |r| group_digits(r.prewarmed)),
        ("slots expired", |r| group_digits(r.expired)),
        ("slots evicted", |r| group_digits(r.evicted)),
        ("histogram decisions", |r| {
            if r.pool_decisions == 0 {
                "-".to_string()
            } else {
                format!(
                    "{:.1} %",
                    100.0 * r.histogram_decisions as f64 / r.pool_decisions as f64
                )
            }
        }),
        ("replay time (s)", |r| format!("{:.2}", r.replay_time.as_secs_f64())),
    ];
    for (label, value) in rows {
        let values: Vec<String> = reports.iter().map(value).collect();
        write_row(out, label, &values)?;
    }

    if let [candidate, baseline] = reports {
        writeln!(out)?;
        writeln!(
            out,
            "{} vs {}: cold starts {}, idle memory-time {}.",
            labels[0],
            labels[1],
            relative_change(candidate.cold_starts as f64, baseline.cold_starts as f64),
            relative_change(candidate.idle_memory_mb_ms as f64, baseline.idle_memory_mb_ms as f64)
        )?;
    }
    Ok(())
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    part as f64 / whole as f64
}

fn write_row(out: &mut dyn Write, label: &str, values: &[String]) -> io::Result<()> {
    write!(out, "{label:<LABEL_WIDTH$}")?;
    for value in values {
        write!(out, "{value:>VALUE_WIDTH$}")?;
    }
    writeln!(out)
}

/// Describes `value` relative to `baseline`, such as "-35.2 %".
fn relative_change(value: f64, baseline: f64) -> String {
    if baseline == 0.0 {
        return if value == 0.0 {
            "equal (both 0)".to_string()
        } else {
            "up from 0".to_string()
        };
    }
    format!("{:+.1} %", (value - baseline) / baseline * 100.0)
}

pub fn write_generated(out: &mut dyn Write, path: &Path, hours: f64, generated: &GeneratedTrace) -> io::Result<()> {
    let shape = ShapeSummary::of(&generated.specs);
    writeln!(
        out,
        "wrote {} invocations of {} functions over {hours} h to {} ({} functions had no invocation)",
        group_digits(generated.trace.invocations.len() as u64),
        shape.functions,
        path.display(),
        shape.functions - generated.trace.functions.len()
    )?;
    writeln!(
        out,
        "mean rates {:.5} to {:.0} per hour ({:.1} orders of magnitude); {:.0} % of functions at most once per hour",
        shape.min_rate_per_hour,
        shape.max_rate_per_hour,
        shape.rate_decades(),
        shape.at_most_hourly * 100.0
    )?;
    writeln!(
        out,
        "{:.0} % of functions with a mean duration under 1 s; {} timer, {} bursty and {} Poisson functions",
        shape.sub_second * 100.0,
        shape.timers,
        shape.bursty,
        shape.poisson
    )
}

/// Formats an integer with commas between groups of three digits.
pub fn group_digits(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_digits_inserts_commas() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1_000), "1,000");
        assert_eq!(group_digits(1_234_567), "1,234,567");
    }

    #[test]
    fn relative_change_signs() {
        assert_eq!(relative_change(50.0, 100.0), "-50.0 %");
        assert_eq!(relative_change(150.0, 100.0), "+50.0 %");
        assert_eq!(relative_change(0.0, 0.0), "equal (both 0)");
        assert_eq!(relative_change(5.0, 0.0), "up from 0");
    }

    #[test]
    fn ttl_label() {
        assert_eq!(format_ttl(Duration::from_secs(600)), "10m");
        assert_eq!(format_ttl(Duration::from_secs(90)), "90s");
    }
}
