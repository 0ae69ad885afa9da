//! The metrics the alerting rules (`deploy/monitoring/`) read that the
//! request and reconcile figures do not give: each pool's conditions, when
//! it was last reconciled, how old its drains are, the retirements it
//! started and the actions that failed. Labels are pools, condition types,
//! reasons and action kinds: never a node.

use std::collections::BTreeSet;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{
    ActionLabels, CONDITION_STATUSES, ConditionLabels, DrainLabels, Metrics, PoolLabels, Seconds,
    StartLabels,
};

pub(super) struct PoolStateMetrics {
    pub conditions: Family<ConditionLabels, Gauge>,
    pub last_reconcile: Family<PoolLabels, Seconds>,
    pub drain_oldest_age: Family<DrainLabels, Seconds>,
    pub drains_past_deadline: Family<PoolLabels, Gauge>,
    pub retirements_started: Family<StartLabels, Counter>,
    pub action_failures: Family<ActionLabels, Counter>,
}

impl PoolStateMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = PoolStateMetrics {
            conditions: Family::default(),
            last_reconcile: Family::default(),
            drain_oldest_age: Family::default(),
            drains_past_deadline: Family::default(),
            retirements_started: Family::default(),
            action_failures: Family::default(),
        };
        registry.register(
            "pool_condition",
            "Conditions of each pool (Ready, Degraded, ...): 1 on the series of the status the condition has (True, False, Unknown), 0 on the other two",
            m.conditions.clone(),
        );
        registry.register(
            "last_reconcile_timestamp_seconds",
            "When a reconcile of the pool last ran to its end without error (a Degraded pool's too: it was looked at and its status written)",
            m.last_reconcile.clone(),
        );
        registry.register(
            "drain_oldest_age_seconds",
            "Age of the pool's oldest drain in flight, among drains with a deadline (deadline=\"true\") and without one (deadline=\"false\"); 0 when there is none",
            m.drain_oldest_age.clone(),
        );
        registry.register(
            "drains_past_deadline",
            "Drains of the pool still in flight after their deadline passed",
            m.drains_past_deadline.clone(),
        );
        registry.register(
            "retirements_started",
            "Retirements the pool started (their first record written, phase Selected), by reason",
            m.retirements_started.clone(),
        );
        registry.register(
            "action_failures",
            "Retirement actions that failed (the pool's ActionFailed condition), by kind: nomad (cordon, drain, release, purge), terminate, terminate_withheld, set_desired_capacity, complete_lifecycle_action, heartbeat",
            m.action_failures.clone(),
        );
        m
    }
}

/// How a pool's drains in flight stand at one moment (see `drains` in the
/// reconcile's report).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DrainAges {
    /// Seconds since the oldest drain with a deadline started; 0 for none.
    pub oldest_with_deadline: f64,
    /// The same among drains without a deadline.
    pub oldest_without_deadline: f64,
    pub past_deadline: i64,
}

impl Metrics {
    /// The pool's conditions now, as `(type, status)`. Types the previous
    /// call had and this one does not are removed, so a condition that
    /// left the status never reads as its last value.
    pub fn set_conditions<'a>(
        &self,
        pool: &str,
        conditions: impl Iterator<Item = (&'a str, &'a str)>,
    ) {
        let mut now = BTreeSet::new();
        for (condition, status) in conditions {
            for s in CONDITION_STATUSES {
                self.conditions
                    .get_or_create(&ConditionLabels {
                        pool: pool.into(),
                        condition: condition.into(),
                        status: s,
                    })
                    .set(i64::from(s == status));
            }
            now.insert(condition.to_string());
        }
        let mut types = self.condition_types.lock().expect("condition types lock");
        let before = types.insert(pool.to_string(), now.clone());
        for gone in before.unwrap_or_default().difference(&now) {
            self.remove_condition(pool, gone);
        }
    }

    fn remove_condition(&self, pool: &str, condition: &str) {
        for status in CONDITION_STATUSES {
            self.conditions.remove(&ConditionLabels {
                pool: pool.into(),
                condition: condition.into(),
                status,
            });
        }
    }

    /// A reconcile of `pool` ran to its end without error at `unix_seconds`.
    pub fn reconciled(&self, pool: &str, unix_seconds: f64) {
        self.last_reconcile
            .get_or_create(&PoolLabels { pool: pool.into() })
            .set(unix_seconds);
    }

    pub fn set_drains(&self, pool: &str, ages: DrainAges) {
        for (deadline, age) in [
            ("true", ages.oldest_with_deadline),
            ("false", ages.oldest_without_deadline),
        ] {
            self.drain_oldest_age
                .get_or_create(&DrainLabels {
                    pool: pool.into(),
                    deadline,
                })
                .set(age);
        }
        self.drains_past_deadline
            .get_or_create(&PoolLabels { pool: pool.into() })
            .set(ages.past_deadline);
    }

    pub fn retirement_started(&self, pool: &str, reason: &'static str) {
        self.retirements_started
            .get_or_create(&StartLabels {
                pool: pool.into(),
                reason,
            })
            .inc();
    }

    pub fn action_failed(&self, pool: &str, action: &'static str) {
        self.action_failures
            .get_or_create(&ActionLabels {
                pool: pool.into(),
                action,
            })
            .inc();
    }

    /// A deleted pool's gauges go (its counters stay: a rate over them
    /// must not see a reset). Without this its last conditions, its last
    /// reconcile and its drains would be reported, and alerted on, forever.
    pub fn forget_pool_state(&self, pool: &str) {
        let types = self
            .condition_types
            .lock()
            .expect("condition types lock")
            .remove(pool);
        for condition in types.unwrap_or_default() {
            self.remove_condition(pool, &condition);
        }
        let labels = PoolLabels { pool: pool.into() };
        self.last_reconcile.remove(&labels);
        self.drains_past_deadline.remove(&labels);
        for deadline in ["true", "false"] {
            self.drain_oldest_age.remove(&DrainLabels {
                pool: pool.into(),
                deadline,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Metrics;
    use super::DrainAges;

    fn lines_of(text: &str, family: &str) -> Vec<String> {
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with(family))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    }

    #[test]
    fn a_condition_reads_one_on_its_status_only_and_leaves_with_the_status() {
        let m = Metrics::new();
        m.set_conditions(
            "ns/p",
            [("Ready", "False"), ("Degraded", "True")].into_iter(),
        );
        let text = m.encode();
        assert_eq!(
            lines_of(
                &text,
                "nomadpool_pool_condition{pool=\"ns/p\",condition=\"Degraded\""
            ),
            [
                "nomadpool_pool_condition{pool=\"ns/p\",condition=\"Degraded\",status=\"False\"} 0",
                "nomadpool_pool_condition{pool=\"ns/p\",condition=\"Degraded\",status=\"True\"} 1",
                "nomadpool_pool_condition{pool=\"ns/p\",condition=\"Degraded\",status=\"Unknown\"} 0",
            ]
        );
        // Degraded leaves the status: its series must not keep saying True.
        m.set_conditions("ns/p", [("Ready", "True")].into_iter());
        let text = m.encode();
        assert!(
            !text.contains("condition=\"Degraded\""),
            "a condition no longer in the status is still reported:\n{text}"
        );
        assert!(text.contains(
            "nomadpool_pool_condition{pool=\"ns/p\",condition=\"Ready\",status=\"True\"} 1"
        ));
    }

    #[test]
    fn a_deleted_pools_gauges_go_and_its_counters_stay() {
        let m = Metrics::new();
        m.set_conditions("ns/gone", [("Ready", "True")].into_iter());
        m.reconciled("ns/gone", 1_700_000_000.0);
        m.set_drains(
            "ns/gone",
            DrainAges {
                oldest_with_deadline: 30.0,
                oldest_without_deadline: 0.0,
                past_deadline: 1,
            },
        );
        m.retirement_started("ns/gone", "ScaleIn");
        m.action_failed("ns/gone", "terminate");
        m.set_conditions("ns/kept", [("Ready", "True")].into_iter());
        m.forget_pool_state("ns/gone");
        let text = m.encode();
        for gauge in [
            "nomadpool_pool_condition{pool=\"ns/gone\"",
            "nomadpool_last_reconcile_timestamp_seconds{pool=\"ns/gone\"",
            "nomadpool_drain_oldest_age_seconds{pool=\"ns/gone\"",
            "nomadpool_drains_past_deadline{pool=\"ns/gone\"",
        ] {
            assert!(!text.contains(gauge), "{gauge} left behind:\n{text}");
        }
        for kept in [
            "nomadpool_retirements_started_total{pool=\"ns/gone\",reason=\"ScaleIn\"} 1",
            "nomadpool_action_failures_total{pool=\"ns/gone\",action=\"terminate\"} 1",
            "nomadpool_pool_condition{pool=\"ns/kept\",condition=\"Ready\",status=\"True\"} 1",
        ] {
            assert!(text.contains(kept), "missing {kept}:\n{text}");
        }
    }

    #[test]
    fn drain_ages_and_the_reconcile_time_read_in_seconds() {
        let m = Metrics::new();
        m.reconciled("ns/p", 1_700_000_123.5);
        m.set_drains(
            "ns/p",
            DrainAges {
                oldest_with_deadline: 0.0,
                oldest_without_deadline: 7200.0,
                past_deadline: 0,
            },
        );
        let text = m.encode();
        for line in [
            "nomadpool_last_reconcile_timestamp_seconds{pool=\"ns/p\"} 1700000123.5",
            "nomadpool_drain_oldest_age_seconds{pool=\"ns/p\",deadline=\"false\"} 7200.0",
            "nomadpool_drain_oldest_age_seconds{pool=\"ns/p\",deadline=\"true\"} 0.0",
            "nomadpool_drains_past_deadline{pool=\"ns/p\"} 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
