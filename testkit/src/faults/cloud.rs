//! The Auto Scaling group over a scale-in, as moto reports it, and the
//! cloud-side invariants checked against it and the fault proxy's record.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

impl GroupMonitor {
    pub async fn start(w: &World) -> GroupMonitor {
        let g = w.group().await;
        let ids: BTreeSet<String> = g.instances.iter().map(|i| i.id.clone()).collect();
        let state = Arc::new(Mutex::new(GroupHistory {
            desired: vec![g.desired],
            initial: ids.clone(),
            seen: ids.clone(),
            current: ids,
            samples: 1,
        }));
        let (asg, group, s) = (w.asg.clone(), w.group.clone(), state.clone());
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(150)).await;
                let Ok(out) = asg
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(&group)
                    .send()
                    .await
                else {
                    continue;
                };
                let Some(g) = out.auto_scaling_groups().first() else {
                    continue;
                };
                let desired = g.desired_capacity().unwrap_or_default();
                let ids: BTreeSet<String> = g
                    .instances()
                    .iter()
                    .filter_map(|i| i.instance_id().map(str::to_owned))
                    .collect();
                let mut h = s.lock().unwrap();
                h.samples += 1;
                if h.desired.last() != Some(&desired) {
                    h.desired.push(desired);
                }
                h.seen.extend(ids.iter().cloned());
                h.current = ids;
            }
        });
        GroupMonitor { state, task }
    }

    pub fn history(&self) -> GroupHistory {
        self.state.lock().unwrap().clone()
    }
}

/// The cloud-side invariants after a scale-in from `from` to `to`: desired
/// went down one step at a time by exactly `from - to` and never up, exactly
/// that many distinct instances left, none was replaced, and moto carried
/// out exactly one terminate (with decrement) for each of them.
pub fn assert_cloud_invariants(h: &GroupHistory, proxy: &FaultProxy, from: i32, to: i32) {
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
