//! The scenario: every `SCALE_IN_*` knob and what follows from it.

use super::*;

// ---------------------------------------------------------------------------
// Parameters

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Which scenarios one invocation runs (`SCALE_IN_SCALE_20000`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scenarios {
    /// `0` (default): the 5,000-client scenario only.
    First,
    /// `1`: the 5,000-client scenario, then the 20,000-client one.
    Both,
    /// `only`: the 20,000-client scenario, merged into an existing JSON.
    Second,
}

impl Scenarios {
    pub fn from_env() -> Scenarios {
        match std::env::var("SCALE_IN_SCALE_20000").as_deref() {
            Ok("1") => Scenarios::Both,
            Ok("only") => Scenarios::Second,
            _ => Scenarios::First,
        }
    }
}

/// The cloud the groups live in (`SCALE_IN_PROVIDER`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Provider {
    /// `aws` (default): one Auto Scaling group in a moto of its own.
    Aws,
    /// `gce`: zonal managed instance groups of at most 1,000 VMs (the
    /// zonal cap, gce-mig.md §1.1) in one in-process gce-sim, one pool each.
    Gce,
}

impl Provider {
    pub fn from_env() -> Provider {
        match std::env::var("SCALE_IN_PROVIDER").as_deref() {
            Ok("gce") => Provider::Gce,
            Ok("aws") | Err(_) => Provider::Aws,
            Ok(other) => panic!("SCALE_IN_PROVIDER={other:?}: aws or gce"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Params {
    pub provider: Provider,
    pub nodes: usize,
    pub small: usize,
    pub retire: usize,
    pub max_unavailable_pct: u32,
    pub time_scale: f64,
    pub slots: u32,
    pub utilization: f64,
    pub job_min_s: f64,
    pub job_max_s: f64,
    pub warmup_s: f64,
    pub idle_s: f64,
    pub baseline_poll_s: f64,
    pub heartbeat_ttl_s: f64,
    pub heartbeat_grace_s: f64,
    pub seed: u64,
    pub baseline: bool,
    pub operator: bool,
    /// The pool's `batchTerminations` (AWS only).
    pub batch_terminations: bool,
}

impl Params {
    pub fn from_env() -> Params {
        Params {
            provider: Provider::from_env(),
            nodes: env_or("SCALE_IN_NODES", 5000),
            small: env_or("SCALE_IN_SMALL", 500),
            retire: env_or("SCALE_IN_RETIRE", 1000),
            max_unavailable_pct: env_or("SCALE_IN_MAX_UNAVAILABLE_PCT", 10),
            time_scale: env_or("SCALE_IN_TIME_SCALE", 10.0),
            slots: env_or("SCALE_IN_SLOTS", 4),
            utilization: env_or("SCALE_IN_UTILIZATION", 0.5),
            job_min_s: env_or("SCALE_IN_JOB_MIN_S", 60.0),
            job_max_s: env_or("SCALE_IN_JOB_MAX_S", 1200.0),
            warmup_s: env_or("SCALE_IN_WARMUP_S", 1500.0),
            idle_s: env_or("SCALE_IN_IDLE_S", 330.0),
            baseline_poll_s: env_or("SCALE_IN_BASELINE_POLL_S", 10.0),
            heartbeat_ttl_s: env_or("SCALE_IN_HEARTBEAT_TTL_S", 10.0),
            heartbeat_grace_s: env_or("SCALE_IN_HEARTBEAT_GRACE_S", 10.0),
            seed: env_or("SCALE_IN_SEED", 42),
            baseline: env_or("SCALE_IN_BASELINE", 1) != 0,
            operator: env_or("SCALE_IN_OPERATOR", 1) != 0,
            batch_terminations: env_or("SCALE_IN_BATCH_TERMINATIONS", 0) != 0,
        }
    }

    /// The second scenario (issue 15): `SCALE_IN_20000_NODES` (20,000)
    /// clients scaled in by `SCALE_IN_20000_RETIRE` (4,000) at
    /// `SCALE_IN_20000_MAX_UNAVAILABLE_PCT` (25) %, operator only, no idle
    /// window; the workload knobs as in the first.
    pub fn scale_20000(&self) -> Params {
        Params {
            nodes: env_or("SCALE_IN_20000_NODES", 20_000),
            retire: env_or("SCALE_IN_20000_RETIRE", 4_000),
            max_unavailable_pct: env_or("SCALE_IN_20000_MAX_UNAVAILABLE_PCT", 25),
            // Off, the pool's default: once the lane stopped waiting for the
            // reconcile's observations and the simulator for its filters,
            // VMs drained one at a time and batches carried 1.15 VMs each,
            // three calls where one does (BENCHMARKS.md, eighteenth pass).
            batch_terminations: env_or("SCALE_IN_20000_BATCH_TERMINATIONS", 0) != 0,
            idle_s: 0.0,
            baseline: false,
            operator: true,
            ..self.clone()
        }
    }

    /// Batch jobs per simulated minute that keep `utilization` of the slots busy.
    pub fn rate_per_min(&self, nodes: usize) -> f64 {
        let mean_min = (self.job_min_s + self.job_max_s) / 2.0 / 60.0;
        self.utilization * (nodes as f64) * f64::from(self.slots) / mean_min
    }

    pub fn budget(&self) -> usize {
        (self.nodes * self.max_unavailable_pct as usize / 100).max(1)
    }

    pub fn json(&self) -> Value {
        let mut v = self.json_common();
        if self.provider == Provider::Gce {
            let groups = gce::groups(self);
            v["provider"] = json!("gce");
            v["groups"] = json!(groups);
            v["group_size"] = json!(self.nodes / groups);
            v["scale_in_by_per_group"] = json!(self.retire / groups);
            v["budget_at_start_per_pool"] = json!(self.budget() / groups);
        }
        v
    }

    fn json_common(&self) -> Value {
        json!({
            "pool_size": self.nodes,
            "small_pool_size": self.small,
            "scale_in_by": self.retire,
            "replicas_after": self.nodes - self.retire,
            "max_unavailable": format!("{}%", self.max_unavailable_pct),
            "budget_at_start": self.budget(),
            "selection_policy": "LeastBusy",
            "time_scale": self.time_scale,
            "slots_per_node": self.slots,
            "target_utilization": self.utilization,
            "job_duration_s": [self.job_min_s, self.job_max_s],
            "batch_jobs_per_min": self.rate_per_min(self.nodes),
            "warmup_sim_s": self.warmup_s,
            "idle_window_s": self.idle_s,
            "baseline_poll_s_scenario_time": self.baseline_poll_s,
            "baseline_poll_ms_wall_clock": self.baseline_poll_s / self.time_scale * 1e3,
            "heartbeat_ttl_plus_grace_sim_s": self.heartbeat_ttl_s + self.heartbeat_grace_s,
            "seed": self.seed,
            "batch_terminations": self.batch_terminations,
        })
    }
}
