//! The Prometheus text exposition (format 0.0.4) of the members' figures,
//! every name prefixed `dure_lb_`, labelled by cluster and member.

use crate::histogram::BOUNDS_MICROS;
use crate::stats::MemberSnapshot;
use std::fmt::Write;

/// Returns the exposition of `members`.
pub fn render(members: &[MemberSnapshot]) -> String {
    let mut out = String::new();
    let labels = |m: &MemberSnapshot| {
        format!(
            "cluster=\"{}\",member=\"{}\"",
            escape(&m.cluster),
            escape(&m.member)
        )
    };
    let mut family = |name: &str, kind: &str, help: &str, rows: &mut dyn FnMut(&mut String)| {
        let _ = writeln!(
            out,
            "# HELP dure_lb_{name} {help}\n# TYPE dure_lb_{name} {kind}"
        );
        rows(&mut out);
    };
    let counter = |value: fn(&MemberSnapshot) -> u64, name: &'static str| {
        move |out: &mut String| {
            for m in members {
                let _ = writeln!(out, "dure_lb_{name}{{{}}} {}", labels(m), value(m));
            }
        }
    };
    family(
        "requests_total",
        "counter",
        "Attempts sent to the member.",
        &mut counter(|m| m.requests, "requests_total"),
    );
    family(
        "responses_total",
        "counter",
        "Responses from the member by status class.",
        &mut |out| {
            for m in members {
                for (class, n) in m.responses.labelled() {
                    let _ = writeln!(
                        out,
                        "dure_lb_responses_total{{{},class=\"{class}\"}} {n}",
                        labels(m)
                    );
                }
            }
        },
    );
    family(
        "errors_total",
        "counter",
        "Attempts that failed: connect errors, resets, timeouts.",
        &mut counter(|m| m.errors, "errors_total"),
    );
    family(
        "retries_total",
        "counter",
        "Failed attempts retried on another member.",
        &mut counter(|m| m.retries, "retries_total"),
    );
    family(
        "in_flight",
        "gauge",
        "Requests in flight to the member.",
        &mut counter(|m| m.in_flight, "in_flight"),
    );
    family(
        "member_up",
        "gauge",
        "1 when the member takes new requests.",
        &mut counter(|m| u64::from(m.health.state == "up"), "member_up"),
    );
    family(
        "response_seconds",
        "histogram",
        "Time to the member's response headers.",
        &mut |out| {
            for m in members {
                let mut cumulative = 0;
                for (i, n) in m.histogram.buckets.iter().enumerate() {
                    cumulative += n;
                    let le = match BOUNDS_MICROS.get(i) {
                        Some(micros) => format!("{}", *micros as f64 / 1e6),
                        None => "+Inf".to_string(),
                    };
                    let _ = writeln!(
                        out,
                        "dure_lb_response_seconds_bucket{{{},le=\"{le}\"}} {cumulative}",
                        labels(m)
                    );
                }
                let _ = writeln!(
                    out,
                    "dure_lb_response_seconds_sum{{{}}} {}",
                    labels(m),
                    m.histogram.sum_micros as f64 / 1e6
                );
                let _ = writeln!(
                    out,
                    "dure_lb_response_seconds_count{{{}}} {cumulative}",
                    labels(m)
                );
            }
        },
    );
    out
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
