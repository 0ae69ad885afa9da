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

/// A number as the table prints it ("–" when missing).
fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) => format!("{x}"),
        None => "–".into(),
    }
}

fn lat(v: &Value) -> String {
    format!(
        "{} / {} / {}",
        num(&v["p50"]),
        num(&v["p99"]),
        num(&v["max"])
    )
}

/// One row: what, operator, baseline, baseline ÷ operator.
type Row = (String, String, String, Value);

/// A row of one plain figure, the same key on both sides.
fn plain(label: &str, key: &str, op: &Value, bl: &Value) -> Row {
    (
        label.into(),
        num(&op[key]),
        num(&bl[key]),
        ratio(&bl[key], &op[key]),
    )
}

fn latency_rows(op: &Value, bl: &Value) -> Vec<Row> {
    let (ol, bll) = (&op["retire_latency_ms"], &bl["retire_latency_ms"]);
    let bl_real = &bl["retire_latency_ms_at_scenario_speed"];
    vec![
        (
            "retire latency p50 / p99 / max, ms (wall clock)".into(),
            lat(ol),
            lat(bll),
            ratio(&bll["p99"], &ol["p99"]),
        ),
        (
            "... at scenario speed (the script's 10 s poll unscaled), ms".into(),
            lat(ol),
            lat(bl_real),
            ratio(&bl_real["p99"], &ol["p99"]),
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
    ]
}

fn nomad_rows(p: &Params, op: &Value, bl: &Value) -> Vec<Row> {
    let small = p.small.to_string();
    let big = p.nodes.to_string();
    let idle = |v: &Value| {
        let i = &v["idle_nomad_requests_per_min"];
        format!("{} / {}", num(&i[&small]), num(&i[&big]))
    };
    vec![
        plain(
            "Nomad requests per retired node",
            "nomad_requests_per_retired_node",
            op,
            bl,
        ),
        plain(
            "Nomad API traffic per retired node, KiB",
            "nomad_kib_per_retired_node",
            op,
            bl,
        ),
        (
            format!("idle Nomad requests per minute, {small} / {big} nodes"),
            idle(op),
            idle(bl),
            Value::Null,
        ),
    ]
}

/// The API server's figures (issue 15): the baseline's run has none.
fn apiserver_rows(op: &Value, bl: &Value) -> Vec<Row> {
    let both = |a: &str, b: &str| {
        (
            format!("{} / {}", num(&op[a]), num(&op[b])),
            format!("{} / {}", num(&bl[a]), num(&bl[b])),
        )
    };
    let (w_op, w_bl) = both(
        "apiserver_writes_per_retired_node",
        "apiserver_writes_per_retired_node_nomadpool",
    );
    let (b_op, b_bl) = both(
        "apiserver_bytes_per_retired_node",
        "apiserver_bytes_per_retired_node_nomadpool",
    );
    let by = &op["apiserver_cpu_seconds_by_process"];
    vec![
        (
            "API server writes per retired node, all / nomadpool.dev".into(),
            w_op,
            w_bl,
            Value::Null,
        ),
        (
            "API server request bytes per retired node, all / nomadpool.dev".into(),
            b_op,
            b_bl,
            Value::Null,
        ),
        (
            "kube-apiserver + etcd CPU seconds (apiserver / etcd)".into(),
            format!(
                "{} ({} / {})",
                num(&op["apiserver_cpu_seconds"]),
                num(&by["kube-apiserver"]),
                num(&by["etcd"])
            ),
            num(&bl["apiserver_cpu_seconds"]),
            Value::Null,
        ),
        plain(
            "... per retired node",
            "apiserver_cpu_seconds_per_retired_node",
            op,
            bl,
        ),
        plain(
            "largest object written, bytes",
            "largest_object_bytes",
            op,
            bl,
        ),
    ]
}

/// Why a GCE run has no baseline half.
pub const BASELINE_NOT_ON_GCE: &str =
    "not run on GCE: the admin script it stands for speaks only the Auto Scaling API";

pub fn table(p: &Params, op: &Value, bl: &Value) -> String {
    if let Some(why) = bl["not_run"].as_str() {
        return operator_only_table(p, op, why);
    }
    let mut rows = latency_rows(op, bl);
    rows.extend(nomad_rows(p, op, bl));
    rows.extend(apiserver_rows(op, bl));
    rows.extend([
        plain("CPU seconds (during the scale-in)", "cpu_seconds", op, bl),
        plain("peak RSS, MiB", "peak_rss_mib", op, bl),
        (
            "safety violations".into(),
            num(&op["safety_violations"]),
            num(&bl["safety_violations"]),
            Value::Null,
        ),
    ]);
    let mut s =
        String::from("| | operator | baseline | baseline ÷ operator |\n|---|---|---|---|\n");
    for (k, a, b, r) in rows {
        s.push_str(&format!(
            "| {k} | {a} | {b} | {} |\n",
            r.as_f64()
                .map(|x| format!("{x}"))
                .unwrap_or_else(|| "–".into())
        ));
    }
    s
}

/// The operator's column alone, and why there is no baseline beside it
/// (rather than a column of dashes that reads as zeros).
fn operator_only_table(p: &Params, op: &Value, why: &str) -> String {
    let mut rows = latency_rows(op, &Value::Null);
    rows.truncate(1);
    rows.push(latency_rows(op, &Value::Null).swap_remove(2));
    rows.extend(nomad_rows(p, op, &Value::Null));
    rows.extend(apiserver_rows(op, &Value::Null));
    rows.extend([
        plain(
            "CPU seconds (during the scale-in)",
            "cpu_seconds",
            op,
            &Value::Null,
        ),
        plain("peak RSS, MiB", "peak_rss_mib", op, &Value::Null),
        (
            "safety violations".into(),
            num(&op["safety_violations"]),
            String::new(),
            Value::Null,
        ),
    ]);
    let mut s = String::from("| | operator |\n|---|---|\n");
    for (k, a, _, _) in rows {
        s.push_str(&format!("| {k} | {a} |\n"));
    }
    s.push_str(&format!("\nbaseline: {why}\n"));
    s
}
