//! The cloud group over a scale-in, as moto or gce-sim reports it, and
//! the cloud-side invariants checked against it and the record of the
//! calls (the AWS fault proxy's; gce-sim's request log in `calls`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_autoscaling::Client as AsgClient;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::proxy::aws_faults::FaultProxy;
use crate::world::World;

#[derive(Clone, Debug, Default)]
pub struct GroupHistory {
    /// Desired capacity, consecutive duplicates removed.
    pub desired: Vec<i32>,
    pub initial: BTreeSet<String>,
    pub seen: BTreeSet<String>,
    pub current: BTreeSet<String>,
    /// Instance name by ID for every instance seen (GCE: a VM's name, which
    /// deleteInstances names; AWS: the ID itself).
    pub names: BTreeMap<String, String>,
    pub samples: u64,
}

impl GroupHistory {
    pub fn decrements(&self) -> i32 {
        self.desired.windows(2).map(|w| (w[0] - w[1]).max(0)).sum()
    }
    pub fn increments(&self) -> i32 {
        self.desired.windows(2).map(|w| (w[1] - w[0]).max(0)).sum()
    }
    pub fn gone(&self) -> BTreeSet<String> {
        self.initial.difference(&self.current).cloned().collect()
    }
    pub fn added(&self) -> BTreeSet<String> {
        self.seen.difference(&self.initial).cloned().collect()
    }
}

pub struct GroupMonitor {
    state: Arc<Mutex<GroupHistory>>,
    task: JoinHandle<()>,
}

impl Drop for GroupMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where the monitor reads the group: moto, or the world's gce-sim
/// (through its control surface, which lists every instance).
enum Source {
    Aws(AsgClient, String),
    Gce(reqwest::Client, String, String),
}

impl Source {
    fn of(w: &World) -> Source {
        match &w.gce {
            None => Source::Aws(w.asg.clone(), w.group.clone()),
            Some(gce) => Source::Gce(reqwest::Client::new(), gce.url.clone(), w.group.clone()),
        }
    }

    /// Desired size and instance names by ID; `None` when the read failed.
    async fn sample(&self) -> Option<(i32, BTreeMap<String, String>)> {
        match self {
            Source::Aws(asg, group) => {
                let out = asg
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(group)
                    .send()
                    .await
                    .ok()?;
                let g = out.auto_scaling_groups().first()?;
                let ids = g
                    .instances()
                    .iter()
                    .filter_map(|i| i.instance_id())
                    .map(|id| (id.to_owned(), id.to_owned()))
                    .collect();
                Some((g.desired_capacity().unwrap_or_default(), ids))
            }
            Source::Gce(http, url, group) => {
                let resp = http.get(format!("{url}/sim/groups")).send().await.ok()?;
                let all: Value = resp.json().await.ok()?;
                let g = all["groups"]
                    .as_array()?
                    .iter()
                    .find(|g| g["group"]["name"] == group.as_str())?;
                // A VM without an id does not exist yet (§1.2).
                let ids = g["managed_instances"]
                    .as_array()?
                    .iter()
                    .filter_map(|i| Some((i["id"].as_str()?, i["name"].as_str()?)))
                    .filter(|(id, _)| !id.is_empty())
                    .map(|(id, name)| (id.to_owned(), name.to_owned()))
                    .collect();
                Some((g["group"]["targetSize"].as_i64()? as i32, ids))
            }
        }
    }
}

impl GroupMonitor {
    pub async fn start(w: &World) -> GroupMonitor {
        let source = Source::of(w);
        let (desired, names) = source.sample().await.expect("reading the group");
        let ids: BTreeSet<String> = names.keys().cloned().collect();
        let state = Arc::new(Mutex::new(GroupHistory {
            desired: vec![desired],
            initial: ids.clone(),
            seen: ids.clone(),
            current: ids,
            names,
            samples: 1,
        }));
        let s = state.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(150)).await;
                let Some((desired, names)) = source.sample().await else {
                    continue;
                };
                let mut h = s.lock().unwrap();
                h.samples += 1;
                if h.desired.last() != Some(&desired) {
                    h.desired.push(desired);
                }
                h.seen.extend(names.keys().cloned());
                h.current = names.keys().cloned().collect();
                h.names.extend(names);
            }
        });
        GroupMonitor { state, task }
    }

    pub fn history(&self) -> GroupHistory {
        self.state.lock().unwrap().clone()
    }
}

/// The group's side of a scale-in from `from` to `to`: desired went down
/// one step at a time by exactly `from - to` and never up, exactly that
/// many distinct instances left, and none was replaced.
pub fn assert_group_invariants(h: &GroupHistory, from: i32, to: i32) {
    assert_eq!(h.desired.first(), Some(&from), "history {:?}", h.desired);
    assert_eq!(h.desired.last(), Some(&to), "history {:?}", h.desired);
    assert_eq!(h.increments(), 0, "desired never goes up: {:?}", h.desired);
    assert_eq!(h.decrements(), from - to, "desired: {:?}", h.desired);
    assert!(
        h.desired.iter().all(|d| *d >= to),
        "desired went below the spec: {:?}",
        h.desired
    );
    let gone = h.gone();
    assert_eq!(gone.len() as i32, from - to, "instances gone: {gone:?}");
    assert!(
        h.added().is_empty(),
        "replacement instances: {:?}",
        h.added()
    );
}

/// The cloud-side invariants of a scale-in on AWS: those of
/// [`assert_group_invariants`], and moto carried out exactly one terminate
/// (with decrement) for each instance gone.
pub fn assert_cloud_invariants(h: &GroupHistory, proxy: &FaultProxy, from: i32, to: i32) {
    assert_group_invariants(h, from, to);
    let gone = h.gone();
    let executed = proxy.executed_terminates();
    assert_eq!(
        executed.keys().cloned().collect::<BTreeSet<_>>(),
        gone,
        "terminates carried out by moto vs instances gone; calls: {:#?}",
        proxy.terminate_calls()
    );
    assert!(
        executed.values().all(|n| *n == 1),
        "an instance was terminated twice: {executed:?}; calls: {:#?}",
        proxy.terminate_calls()
    );
    assert!(
        proxy
            .terminate_calls()
            .iter()
            .all(|c| c.decrement == Some(true)),
        "every scale-in terminate decrements: {:#?}",
        proxy.terminate_calls()
    );
}

/// Proxy counts, one `Action requests(throttled/5xx/500-after-forward)` per Action.
pub fn aws_counts(proxy: &FaultProxy) -> String {
    proxy
        .stats()
        .iter()
        .map(|(a, s)| {
            format!(
                "{a} {}({}/{}/{})",
                s.requests, s.throttled, s.server_errors, s.failed_after_forward
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn terminate_log(proxy: &FaultProxy) -> String {
    proxy
        .terminate_calls()
        .iter()
        .map(|c| {
            format!(
                "{}:{}->{}",
                c.instance_id,
                c.upstream_status.map_or("-".into(), |s| s.to_string()),
                c.answered
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}
