//! Jobs: registration (service, batch and system), system jobs placed on
//! every fitting node, and workload generators that submit a steady stream
//! of batch jobs for the benchmarks and the demo.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use crate::clock::NANOS_PER_SEC;
use crate::wire::Job;

use super::*;

/// A job to register (or look up, when one with that ID exists in the
/// namespace).
#[derive(Debug, Clone)]
pub struct JobSpec<'a> {
    /// `None`: a generated `<type>-<n>` ID.
    pub id: Option<String>,
    pub namespace: &'a str,
    pub job_type: &'a str,
    pub pool: &'a str,
    pub count: u32,
    pub max_parallel: u32,
    pub group: GroupSpec,
}

/// Task-group settings of a job the simulator models.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupSpec {
    /// The task's `kill_timeout`.
    pub kill_timeout_ns: i64,
    /// `disconnect { lost_after }` / `max_client_disconnect`.
    pub lost_after_ns: Option<i64>,
}

impl Default for GroupSpec {
    fn default() -> Self {
        GroupSpec {
            kill_timeout_ns: DEFAULT_KILL_TIMEOUT_NS,
            lost_after_ns: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Workload {
    pub id: String,
    pub namespace: String,
    pub node_pool: String,
    pub rate_per_min: f64,
    pub min_ns: i64,
    pub max_ns: i64,
    pub submitted: u64,
}

impl Cluster {
    pub fn new_job(&mut self, spec: JobSpec<'_>) -> Arc<Job> {
        let JobSpec {
            id,
            namespace,
            job_type,
            pool,
            count,
            max_parallel,
            group,
        } = spec;
        self.job_seq += 1;
        let id = id.unwrap_or_else(|| format!("{job_type}-{}", self.job_seq));
        let key = Job::key_of(namespace, &id);
        if let Some(j) = self.jobs.get(&key) {
            return j.clone();
        }
        let job = Arc::new(Job {
            id: id.clone(),
            job_type: job_type.into(),
            namespace: namespace.into(),
            region: self.cfg.region.clone(),
            datacenters: vec!["*".into()],
            node_pool: pool.into(),
            priority: 50,
            count,
            max_parallel: max_parallel.max(1),
            min_healthy_time_ns: 10 * NANOS_PER_SEC,
            kill_timeout_ns: group.kill_timeout_ns,
            lost_after_ns: group.lost_after_ns,
            create_index: self.index,
            submit_time: self.now,
            json: Arc::new(OnceLock::new()),
        });
        self.jobs.insert(key, job.clone());
        if is_system(job_type) {
            self.system_jobs.push(job.clone());
        }
        job
    }

    /// Places the system jobs that fit this node (system scheduler).
    pub(super) fn place_system_jobs(&mut self, node_id: &str) {
        let Some(rec) = self.nodes.get(node_id) else {
            return;
        };
        if rec.node.status != "ready"
            || rec.node.scheduling_eligibility != "eligible"
            || rec.node.drain_strategy.is_some()
        {
            return;
        }
        let pool = rec.node.node_pool.clone();
        let have: HashSet<String> = self
            .node_allocs(node_id)
            .filter(|a| !a.alloc.terminal())
            .map(|a| a.alloc.job.key())
            .collect();
        let jobs: Vec<Arc<Job>> = self
            .system_jobs
            .iter()
            .filter(|j| (j.node_pool == pool || j.node_pool == "all") && !have.contains(&j.key()))
            .cloned()
            .collect();
        for job in jobs {
            let p = Placement {
                job,
                index_in_job: 0,
                previous: None,
                duration_ns: None,
                node: Some(node_id.into()),
            };
            self.create_alloc(node_id, &p);
        }
    }

    /// Submits a system job: one allocation on every fitting node.
    pub fn submit_system_job(&mut self, job: Arc<Job>) -> Vec<String> {
        let ids: Vec<String> = self
            .nodes
            .values()
            .filter(|r| r.node.node_pool == job.node_pool || job.node_pool == "all")
            .map(|r| r.node.id.clone())
            .collect();
        let before = self.allocs.len();
        for id in ids {
            self.place_system_jobs(&id);
        }
        let _ = before;
        self.job_allocs.get(&job.key()).cloned().unwrap_or_default()
    }

    /// Starts a steady stream of batch jobs: one every `60 / rate` simulated
    /// seconds, each running for a uniform random duration in [min, max].
    pub fn add_workload(
        &mut self,
        namespace: &str,
        pool: &str,
        rate_per_min: f64,
        min_ns: i64,
        max_ns: i64,
    ) -> String {
        self.workload_seq += 1;
        let id = format!("workload-{}", self.workload_seq);
        self.workloads.push(Workload {
            id: id.clone(),
            namespace: namespace.into(),
            node_pool: pool.into(),
            rate_per_min,
            min_ns,
            max_ns: max_ns.max(min_ns),
            submitted: 0,
        });
        if rate_per_min > 0.0 {
            let at = self.now + (60.0 * NANOS_PER_SEC as f64 / rate_per_min) as i64;
            self.timer(at, Timer::Workload(id.clone()));
        }
        id
    }

    pub(super) fn on_workload(&mut self, id: &str) {
        let Some(w) = self.workloads.iter_mut().find(|w| w.id == id) else {
            return; // stopped
        };
        w.submitted += 1;
        let (pool, min, max, rate) = (w.node_pool.clone(), w.min_ns, w.max_ns, w.rate_per_min);
        let ns = w.namespace.clone();
        let d = if max > min {
            self.rng.random_range(min..=max)
        } else {
            min
        };
        let job = self.new_job(JobSpec {
            id: None,
            namespace: &ns,
            job_type: "batch",
            pool: &pool,
            count: 1,
            max_parallel: 1,
            group: GroupSpec::default(),
        });
        self.enqueue(Placement {
            job,
            index_in_job: 0,
            previous: None,
            duration_ns: Some(d),
            node: None,
        });
        let at = self.now + (60.0 * NANOS_PER_SEC as f64 / rate) as i64;
        self.timer(at, Timer::Workload(id.to_string()));
    }
}
