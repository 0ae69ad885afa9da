//! The report: the comparison table.

use super::*;

// ---------------------------------------------------------------------------
// Report

pub fn ratio(b: &Value, o: &Value) -> Value {
    match (b.as_f64(), o.as_f64()) {
        (Some(b), Some(o)) if o > 0.0 => json!(round(b / o, 2)),
        _ => Value::Null,
    }
}

pub fn table(p: &Params, op: &Value, bl: &Value) -> String {
    let num = |v: &Value| match v.as_f64() {
        Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) => format!("{x}"),
        None => "–".into(),
    };
    let lat = |v: &Value| {
        format!(
            "{} / {} / {}",
            num(&v["p50"]),
            num(&v["p99"]),
            num(&v["max"])
        )
    };
    let small = p.small.to_string();
    let big = p.nodes.to_string();
    let mut rows = vec![
        (
            "retire latency p50 / p99 / max, ms (wall clock)".to_string(),
            lat(&op["retire_latency_ms"]),
            lat(&bl["retire_latency_ms"]),
            ratio(
                &bl["retire_latency_ms"]["p99"],
                &op["retire_latency_ms"]["p99"],
            ),
        ),
        (
            "... at scenario speed (the script's 10 s poll unscaled), ms".to_string(),
            lat(&op["retire_latency_ms"]),
            lat(&bl["retire_latency_ms_at_scenario_speed"]),
            ratio(
                &bl["retire_latency_ms_at_scenario_speed"]["p99"],
                &op["retire_latency_ms"]["p99"],
            ),
        ),
        (
            "scale-in time / ideal, s (wall clock)".into(),
            format!(
                "{} / {}",
                num(&op["scale_in_seconds"]),
                num(&op["ideal_seconds"])
            ),
            format!(
                "{} / {}",
                num(&bl["scale_in_seconds"]),
                num(&bl["ideal_seconds"])
            ),
            ratio(&bl["scale_in_seconds"], &op["scale_in_seconds"]),
        ),
        (
            "Nomad requests per retired node".into(),
            num(&op["nomad_requests_per_retired_node"]),
            num(&bl["nomad_requests_per_retired_node"]),
            ratio(
                &bl["nomad_requests_per_retired_node"],
                &op["nomad_requests_per_retired_node"],
            ),
        ),
        (
            "Nomad API traffic per retired node, KiB".into(),
            num(&op["nomad_kib_per_retired_node"]),
            num(&bl["nomad_kib_per_retired_node"]),
            ratio(
                &bl["nomad_kib_per_retired_node"],
                &op["nomad_kib_per_retired_node"],
            ),
        ),
        (
            format!("idle Nomad requests per minute, {small} / {big} nodes"),
            format!(
                "{} / {}",
                num(&op["idle_nomad_requests_per_min"][&small]),
                num(&op["idle_nomad_requests_per_min"][&big])
            ),
            format!(
                "{} / {}",
                num(&bl["idle_nomad_requests_per_min"][&small]),
                num(&bl["idle_nomad_requests_per_min"][&big])
            ),
            Value::Null,
        ),
        (
            "CPU seconds (during the scale-in)".into(),
            num(&op["cpu_seconds"]),
            num(&bl["cpu_seconds"]),
            ratio(&bl["cpu_seconds"], &op["cpu_seconds"]),
        ),
        (
            "peak RSS, MiB".into(),
            num(&op["peak_rss_mib"]),
            num(&bl["peak_rss_mib"]),
            ratio(&bl["peak_rss_mib"], &op["peak_rss_mib"]),
        ),
        (
            "safety violations".into(),
            num(&op["safety_violations"]),
            num(&bl["safety_violations"]),
            Value::Null,
        ),
    ];
    let mut s =
        String::from("| | operator | baseline | baseline ÷ operator |\n|---|---|---|---|\n");
    for (k, a, b, r) in rows.drain(..) {
        s.push_str(&format!(
            "| {k} | {a} | {b} | {} |\n",
            r.as_f64()
                .map(|x| format!("{x}"))
                .unwrap_or_else(|| "–".into())
        ));
    }
    s
}
