//! What the CI jobs went through while the pool changed, counted from the
//! simulator's allocations after the fact (not asserted: what it saw), and
//! the summary's lines about them.

use std::collections::BTreeMap;

use serde_json::Value;

use super::support::World;
use super::ui::Ui;

/// Every allocation the simulator knows (stubs, through its Nomad API).
async fn allocations(w: &World) -> Vec<Value> {
    reqwest::get(format!("{}/v1/allocations", w.sim.url))
        .await
        .expect("listing allocations from nomad-sim")
        .json()
        .await
        .expect("allocation list")
}

/// The jobs that ran while the pool changed, counted from the simulator's
/// allocations (not asserted: what it saw).
pub struct Jobs {
    during: usize,
    finished_during: usize,
    on_retired: usize,
    on_retired_by: BTreeMap<String, usize>,
}

impl Jobs {
    /// Allocations live at some point between `sim_start` and `sim_end`,
    /// and those on the retired clients.
    pub async fn count(
        w: &World,
        sim_start: i64,
        sim_end: i64,
        retired_nodes: &BTreeMap<String, (String, String)>,
    ) -> Jobs {
        let allocs = allocations(w).await;
        let terminal = |a: &Value| {
            !matches!(
                a["ClientStatus"].as_str().unwrap_or(""),
                "pending" | "running"
            )
        };
        let during: Vec<&Value> = (allocs.iter())
            .filter(|a| {
                a["CreateTime"].as_i64().unwrap_or(0) <= sim_end
                    && (!terminal(a) || a["ModifyTime"].as_i64().unwrap_or(0) >= sim_start)
            })
            .collect();
        let on_retired: Vec<&Value> = (allocs.iter())
            .filter(|a| {
                retired_nodes.contains_key(a["NodeID"].as_str().unwrap_or(""))
                    && a["ModifyTime"].as_i64().unwrap_or(0) >= sim_start
            })
            .collect();
        let mut on_retired_by: BTreeMap<String, usize> = BTreeMap::new();
        for a in &on_retired {
            *on_retired_by
                .entry(a["ClientStatus"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
        Jobs {
            during: during.len(),
            finished_during: during.iter().filter(|a| terminal(a)).count(),
            on_retired: on_retired.len(),
            on_retired_by,
        }
    }

    /// The summary's CI jobs and Safety lines; the simulator's violations.
    pub async fn report(&self, ui: &mut Ui, w: &World, during_what: &str, queued: u64) -> u64 {
        ui.line(&format!(
            "  CI jobs:  {} ran during {during_what}: {} finished, {} still running, {} waiting for a slot",
            self.during,
            self.finished_during,
            self.during - self.finished_during,
            queued
        ));
        let lost = self.on_retired_by.get("lost").copied().unwrap_or(0);
        let by: Vec<String> = (self.on_retired_by.iter())
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        let jobs_line = format!(
            "            {} of them ran on the retired clients: {}",
            self.on_retired,
            if lost == 0 {
                "every one finished before its VM went (none lost)".to_string()
            } else {
                by.join(", ")
            }
        );
        ui.line(&if lost == 0 {
            jobs_line
        } else {
            ui.red(&jobs_line)
        });
        let violations = w.sim.violations().await;
        let nviol = violations["count"].as_u64().unwrap_or(u64::MAX);
        let viol_line = format!(
            "  Safety:   {nviol} violations (a VM terminated or a node purged while a job ran on it)"
        );
        if nviol == 0 {
            ui.line(&format!("{viol_line}  {}", ui.green("OK")));
        } else {
            ui.line(&ui.red(&viol_line));
            ui.line(&format!("{violations:#}"));
        }
        nviol
    }
}
