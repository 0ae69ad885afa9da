//! Clients out of service as Nomad shows them, sampled while a fault test
//! runs: the count `maxUnavailable` and the disruption budgets bound
//! (every live client that is ineligible or draining, whoever took it
//! out; a down client is gone rather than out of service, as the planner
//! counts it), and whether clients that must never be touched (an
//! opted-out one) ever were.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;

/// What the samples showed.
#[derive(Clone, Debug, Default)]
pub struct ServiceHistory {
    /// Most clients out of service in one sample, and which.
    pub max_out: usize,
    pub at_max: Vec<String>,
    /// Clients of `untouchable` seen ineligible or draining.
    pub touched: BTreeSet<String>,
    pub samples: u64,
}

/// The live clients of `nodes` (the simulator's `/sim/nodes`) that are
/// ineligible or draining.
pub fn out_of_service(nodes: &[Value]) -> Vec<String> {
    (nodes.iter())
        .filter(|n| n["status"] != "down")
        .filter(|n| n["eligibility"] != "eligible" || n["draining"] == true)
        .filter_map(|n| n["id"].as_str().map(str::to_owned))
        .collect()
}

pub struct ServiceWatch {
    state: Arc<Mutex<ServiceHistory>>,
    task: JoinHandle<()>,
}

impl Drop for ServiceWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ServiceWatch {
    /// Sample the simulator at `sim_url` every 100 ms (it has no watch of
    /// its control surface); `untouchable` are node IDs that must stay in
    /// service throughout.
    pub fn start(sim_url: String, untouchable: BTreeSet<String>) -> ServiceWatch {
        let state = Arc::new(Mutex::new(ServiceHistory::default()));
        let s = state.clone();
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let Ok(resp) = http.get(format!("{sim_url}/sim/nodes")).send().await else {
                    continue;
                };
                let Ok(v) = resp.json::<Value>().await else {
                    continue;
                };
                let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
                let out = out_of_service(&nodes);
                let mut h = s.lock().unwrap();
                h.samples += 1;
                let touched: Vec<String> = (out.iter())
                    .filter(|id| untouchable.contains(*id))
                    .cloned()
                    .collect();
                h.touched.extend(touched);
                if out.len() > h.max_out {
                    h.max_out = out.len();
                    h.at_max = out;
                }
            }
        });
        ServiceWatch { state, task }
    }

    pub fn history(&self) -> ServiceHistory {
        self.state.lock().unwrap().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ineligible_or_draining_live_clients_are_out_of_service() {
        let nodes = [
            json!({"id": "a", "status": "ready", "eligibility": "eligible", "draining": false}),
            json!({"id": "b", "status": "ready", "eligibility": "ineligible", "draining": false}),
            json!({"id": "c", "status": "ready", "eligibility": "ineligible", "draining": true}),
            json!({"id": "d", "status": "down", "eligibility": "ineligible", "draining": false}),
            json!({"id": "e", "status": "initializing", "eligibility": "eligible", "draining": true}),
        ];
        assert_eq!(out_of_service(&nodes), ["b", "c", "e"]);
    }
}
