//! The baseline's half: a fresh world scaled in by the script admins write,
//! run as a child process of the bench (its CPU and memory are its own).

use super::*;
use support::procstat;

pub async fn baseline_run(p: &Params) -> Value {
    eprintln!("[baseline] building a world of {} clients", p.nodes);
    let w = World::new(p, "baseline", p.nodes).await;
    let poll = Duration::from_secs_f64(p.baseline_poll_s / p.time_scale);
    let before = w.nomad_requests();
    let bytes_before = w.relay.bytes.get();
    let calls_before = w.proxy.calls();
    let jiffies0 = procstat::machine_jiffies();
    let t0 = Instant::now();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "baseline-script",
            &w.relay.url,
            &w.proxy.url,
            &p.retire.to_string(),
            &p.budget().to_string(),
            &poll.as_millis().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("starting the baseline script");
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let reader = tokio::spawn(async move {
        let mut last = Value::Null;
        while let Ok(Some(l)) = lines.next_line().await {
            if let Ok(v) = serde_json::from_str::<Value>(&l) {
                last = v;
            }
        }
        last
    });
    let mut last_print = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if last_print.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "[baseline] {:>4.0} s: terminated {}",
                t0.elapsed().as_secs_f64(),
                w.proxy.ok_terminates()
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let end = Instant::now();
    let jiffies1 = procstat::machine_jiffies();
    let status = child.wait().await.unwrap();
    assert!(status.success(), "baseline script failed: {status}");
    let report = reader.await.unwrap();
    let requests = delta(&w.nomad_requests(), &before);
    let bytes = w.relay.bytes.get();
    let bytes = (bytes.0 - bytes_before.0, bytes.1 - bytes_before.1);
    let run = ScaleIn {
        t0,
        end,
        requests,
        bytes,
        calls_before,
        machine_busy_pct: busy_pct(jiffies0, jiffies1),
    };
    let mut f = figures(p, &w, &run, p.budget());
    // Kills happen before the proxy answers, so every one is recorded by now.
    let violations = w.violations().await;
    let group_after = w.group_after().await;
    let o = f.as_object_mut().unwrap();
    o.insert("group_after".into(), group_after);
    o.insert("cpu_seconds".into(), report["cpu_seconds"].clone());
    o.insert("peak_rss_mib".into(), report["peak_rss_mib"].clone());
    o.insert("safety_violations".into(), violations["count"].clone());
    o.insert("violations".into(), violations["violations"].clone());
    o.insert("script".into(), report);
    o.insert(
        "poll_interval_ms_wall_clock".into(),
        json!(poll.as_secs_f64() * 1e3),
    );
    // The script's wait is its poll period, which is scenario time: at real
    // speed each figure is `time_scale` times longer.
    let at_real = |k: &str| round(f_get(o, "retire_latency_ms", k) * p.time_scale, 0);
    let scaled = json!({"p50": at_real("p50"), "p99": at_real("p99"), "max": at_real("max")});
    o.insert("retire_latency_ms_at_scenario_speed".into(), scaled);
    let idle: serde_json::Map<String, Value> = [p.small, p.nodes]
        .iter()
        .map(|n| (n.to_string(), json!(0.0)))
        .collect();
    o.insert("idle_nomad_requests_per_min".into(), idle.into());
    o.insert(
        "idle_note".into(),
        json!("a script runs only when invoked: it sends nothing while the pool is idle"),
    );
    eprintln!("[baseline] done: {}", serde_json::to_string(&f).unwrap());
    w.shutdown().await;
    f
}

pub fn f_get(o: &serde_json::Map<String, Value>, a: &str, b: &str) -> f64 {
    o.get(a).and_then(|v| v[b].as_f64()).unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------
// The baseline script (a child process of the bench, so its CPU and memory
// are its own): what admins write.
//
//   for node in $(pick N least busy); do            # N at a time
//     nomad node eligibility -disable $node
//     nomad node drain -enable -no-deadline -detach -yes $node
//     while sleep 10; do
//       [ "$(nomad node status -json $node | jq .DrainStrategy)" = null ] && break
//     done
//     aws autoscaling terminate-instance-in-auto-scaling-group \
//         --instance-id $(... unique.platform.aws.instance-id) --should-decrement-desired-capacity
//   done

pub fn baseline_main(args: &[String]) {
    let nomad = args[0].clone();
    let aws = args[1].clone();
    let retire: usize = args[2].parse().unwrap();
    let concurrency: usize = args[3].parse().unwrap();
    let poll = Duration::from_millis(args[4].parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(baseline_script(nomad, aws, retire, concurrency, poll));
    let pid = std::process::id();
    let mut report = report;
    report["cpu_seconds"] = json!(round(procstat::cpu_seconds(pid), 2));
    report["peak_rss_mib"] = json!(round(procstat::status_mib(pid, "VmHWM:"), 1));
    println!("{report}");
}

pub async fn baseline_script(
    nomad: String,
    aws: String,
    retire: usize,
    concurrency: usize,
    poll: Duration,
) -> Value {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let asg = support::asg_client_at(&aws);
    let t = Instant::now();
    // Least busy first, like the operator's LeastBusy: the same choice makes
    // the comparison about the retire procedure, not the selection.
    let nodes: Value = http
        .get(format!("{nomad}/v1/nodes"))
        .query(&[("filter", r#"NodePool == "ci""#)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let allocs: Value = http
        .get(format!("{nomad}/v1/allocations"))
        .query(&[
            (
                "filter",
                r#"ClientStatus == "pending" or ClientStatus == "running""#,
            ),
            ("task_states", "false"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut busy: HashMap<&str, u32> = HashMap::new();
    for a in allocs.as_array().unwrap() {
        *busy.entry(a["NodeID"].as_str().unwrap()).or_default() += 1;
    }
    let mut candidates: Vec<(u32, u64, String)> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["Status"] == "ready" && n["SchedulingEligibility"] == "eligible")
        .map(|n| {
            let id = n["ID"].as_str().unwrap();
            (
                busy.get(id).copied().unwrap_or(0),
                n["CreateIndex"].as_u64().unwrap_or(0),
                id.to_owned(),
            )
        })
        .collect();
    candidates.sort();
    candidates.truncate(retire);
    let selection_ms = t.elapsed().as_secs_f64() * 1e3;
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    futures::stream::iter(candidates)
        .for_each_concurrent(concurrency, |(_, _, id)| {
            let http = http.clone();
            let asg = asg.clone();
            let nomad = nomad.clone();
            let errors = errors.clone();
            async move {
                if let Err(e) = retire_one(&http, &asg, &nomad, &id, poll).await {
                    errors.lock().unwrap().push(format!("{id}: {e}"));
                }
            }
        })
        .await;
    let errors = errors.lock().unwrap().clone();
    json!({"selection_ms": round(selection_ms, 1), "errors": errors.len(),
           "first_errors": errors.iter().take(5).collect::<Vec<_>>()})
}

pub async fn retire_one(
    http: &reqwest::Client,
    asg: &AsgClient,
    nomad: &str,
    id: &str,
    poll: Duration,
) -> Result<(), String> {
    let ok = |r: reqwest::Response| {
        if r.status().is_success() {
            Ok(r)
        } else {
            Err(format!("{}", r.status()))
        }
    };
    ok(http
        .post(format!("{nomad}/v1/node/{id}/eligibility"))
        .json(&json!({"NodeID": id, "Eligibility": "ineligible"}))
        .send()
        .await
        .map_err(|e| e.to_string())?)?;
    ok(http
        .post(format!("{nomad}/v1/node/{id}/drain"))
        .json(
            &json!({"NodeID": id, "DrainSpec": {"Deadline": 0, "IgnoreSystemJobs": false},
                      "MarkEligible": false}),
        )
        .send()
        .await
        .map_err(|e| e.to_string())?)?;
    let instance = loop {
        tokio::time::sleep(poll).await;
        let n: Value = ok(http
            .get(format!("{nomad}/v1/node/{id}"))
            .send()
            .await
            .map_err(|e| e.to_string())?)?
        .json()
        .await
        .map_err(|e| e.to_string())?;
        if n["DrainStrategy"].is_null() {
            break n["Attributes"]["unique.platform.aws.instance-id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
        }
    };
    asg.terminate_instance_in_auto_scaling_group()
        .instance_id(instance)
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .map_err(|e| format!("{}", aws_sdk_autoscaling::error::DisplayErrorContext(e)))?;
    Ok(())
}
