//! Prometheus metrics. Labels are pools, phases, endpoints and operations,
//! never node names or IDs: a label per node would grow without bound as
//! clients come and go.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

mod pool_state;
pub use pool_state::DrainAges;
use pool_state::PoolStateMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub pool: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub pool: String,
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: String,
    pub code: String,
}

/// One AWS request: the SDK's service and operation names, and the HTTP
/// status of the answer (`none` when no answer came: a timeout, a refused
/// connection).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsRequestLabels {
    pub service: String,
    pub operation: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// `created`, `repeated` (a series count bumped), `failed` (the API
    /// server refused or could not be reached), `dropped` (queue full).
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaneLabels {
    pub lane: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
}

/// One status of one condition of a pool, as kube-state-metrics labels
/// conditions: the series of the status the condition has reads 1, the
/// other two 0, so `== 1` selects the current one.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub pool: String,
    pub condition: String,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DrainLabels {
    pub pool: String,
    /// `true` for drains with a deadline (Nomad forces them at it), `false`
    /// for the others, which may wait forever.
    pub deadline: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StartLabels {
    pub pool: String,
    /// The retirement's reason, as `spec.reason` spells it.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub pool: String,
    /// What failed: `nomad` (cordon, drain, release, purge), `terminate`,
    /// `terminate_withheld`, `set_desired_capacity`,
    /// `complete_lifecycle_action`, `heartbeat`.
    pub action: &'static str,
}

/// Kubernetes' spelling of a condition's status.
pub const CONDITION_STATUSES: [&str; 3] = ["True", "False", "Unknown"];

/// A gauge holding seconds (a timestamp, an age).
type Seconds = Gauge<f64, AtomicU64>;

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: Family<PoolLabels, Histogram>,
    pub nodes: Family<PhaseLabels, Gauge>,
    pub retire_duration: Family<PoolLabels, Histogram>,
    pub drain_wait: Family<PoolLabels, Histogram>,
    /// Terminations the express lane started (`reconcile::express`).
    pub express_terminates: Family<PoolLabels, Counter>,
    pub nomad_requests: Family<RequestLabels, Counter>,
    pub nomad_latency: Family<EndpointLabels, Histogram>,
    pub connection_wait: Family<LaneLabels, Histogram>,
    pub cloud_requests: Family<RequestLabels, Counter>,
    pub cloud_latency: Family<EndpointLabels, Histogram>,
    pub aws_requests: Family<AwsRequestLabels, Counter>,
    pub leader: Gauge,
    pub events: Family<EventLabels, Counter>,
    pub conditions: Family<ConditionLabels, Gauge>,
    pub last_reconcile: Family<PoolLabels, Seconds>,
    pub drain_oldest_age: Family<DrainLabels, Seconds>,
    pub drains_past_deadline: Family<PoolLabels, Gauge>,
    pub retirements_started: Family<StartLabels, Counter>,
    pub action_failures: Family<ActionLabels, Counter>,
    /// The condition types each pool's gauges carry, so a type that leaves
    /// the status (or a deleted pool) leaves the gauges too.
    condition_types: Mutex<HashMap<String, BTreeSet<String>>>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("nomadpool");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by pool and result (ok, conflict: the pool changed under the reconcile, error)",
            reconciles.clone(),
        );
        let reconcile_duration = Family::<_, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile of a pool takes, terminate calls excluded (they run on their own)",
            reconcile_duration.clone(),
        );
        let nodes = Family::<PhaseLabels, Gauge>::default();
        registry.register(
            "nodes",
            "Clients of each pool by phase: ready, or the retire phase (Selected … Terminating, Cancelling)",
            nodes.clone(),
        );
        // Retirements take minutes to hours (they wait for CI jobs).
        let retire_duration = Family::<_, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(5.0, 2.0, 14))
        });
        registry.register(
            "retire_duration_seconds",
            "Time from a client's selection to its VM terminated and node purged",
            retire_duration.clone(),
        );
        let drain_wait = Family::<_, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1.0, 2.0, 16))
        });
        registry.register(
            "drain_wait_seconds",
            "Time from a drain's start until the client has no pending or running allocation",
            drain_wait.clone(),
        );
        let express_terminates = Family::<PoolLabels, Counter>::default();
        registry.register(
            "express_terminates",
            "Drained clients whose termination the express lane started, without a whole-pool reconcile",
            express_terminates.clone(),
        );
        let nomad_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "nomad_requests",
            "Nomad API requests by endpoint and HTTP status",
            nomad_requests.clone(),
        );
        let nomad_latency = Family::<_, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "nomad_request_duration_seconds",
            "Nomad API request latency (blocking queries included)",
            nomad_latency.clone(),
        );
        let connection_wait = Family::<_, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "nomad_connection_wait_seconds",
            "Time a Nomad request waited for a connection of its lane (short, parked, view, status) under --nomad-max-connections",
            connection_wait.clone(),
        );
        let cloud_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "cloud_requests",
            "Cloud provider API calls by operation and result",
            cloud_requests.clone(),
        );
        let cloud_latency = Family::<_, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register(
            "cloud_request_duration_seconds",
            "Cloud provider API call latency",
            cloud_latency.clone(),
        );
        let aws_requests = Family::<AwsRequestLabels, Counter>::default();
        registry.register(
            "aws_requests",
            "Requests sent to AWS, each attempt counted (retries, and the calls of batches and sweeps inside a provider operation), by service, operation and HTTP status",
            aws_requests.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "events",
            "Kubernetes Events on pools by outcome: created, repeated, failed, dropped (queue full)",
            events.clone(),
        );
        let pool_state = PoolStateMetrics::register(&mut registry);
        Metrics {
            registry,
            reconciles,
            reconcile_duration,
            nodes,
            retire_duration,
            drain_wait,
            express_terminates,
            nomad_requests,
            nomad_latency,
            connection_wait,
            cloud_requests,
            cloud_latency,
            aws_requests,
            leader,
            events,
            conditions: pool_state.conditions,
            last_reconcile: pool_state.last_reconcile,
            drain_oldest_age: pool_state.drain_oldest_age,
            drains_past_deadline: pool_state.drains_past_deadline,
            retirements_started: pool_state.retirements_started,
            action_failures: pool_state.action_failures,
            condition_types: Mutex::default(),
        }
    }

    pub fn event(&self, outcome: &'static str) {
        self.events.get_or_create(&EventLabels { outcome }).inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    pub fn nomad_request(&self, endpoint: &str, code: Option<u16>, elapsed: Duration) {
        let endpoint = endpoint_label(endpoint);
        let code = code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "error".into());
        self.nomad_requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.clone(),
                code,
            })
            .inc();
        self.nomad_latency
            .get_or_create(&EndpointLabels { endpoint })
            .observe(elapsed.as_secs_f64());
    }

    pub fn connection_wait(&self, lane: &'static str, waited: Duration) {
        self.connection_wait
            .get_or_create(&LaneLabels { lane })
            .observe(waited.as_secs_f64());
    }

    pub fn aws_request(&self, service: &str, operation: &str, status: Option<u16>) {
        let code = status.map_or_else(|| "none".to_string(), |c| c.to_string());
        self.aws_requests
            .get_or_create(&AwsRequestLabels {
                service: service.into(),
                operation: operation.into(),
                code,
            })
            .inc();
    }

    pub fn cloud_request(&self, operation: &str, ok: bool, elapsed: Duration) {
        let code = if ok { "ok" } else { "error" }.to_string();
        self.cloud_requests
            .get_or_create(&RequestLabels {
                endpoint: operation.into(),
                code,
            })
            .inc();
        self.cloud_latency
            .get_or_create(&EndpointLabels {
                endpoint: operation.into(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

/// The process-wide metrics. A global because the Nomad client, the
/// providers and the reconciler all record into it, and threading one handle
/// through every layer buys nothing.
pub fn metrics() -> &'static Arc<Metrics> {
    static METRICS: OnceLock<Arc<Metrics>> = OnceLock::new();
    METRICS.get_or_init(|| Arc::new(Metrics::new()))
}

/// `GET /v1/node/4d2b…/allocations` → `GET /v1/node/:id/allocations`.
pub fn endpoint_label(endpoint: &str) -> String {
    endpoint
        .split('/')
        .map(|seg| {
            let id_like = seg.len() >= 8 && seg.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
            if id_like { ":id" } else { seg }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_labels_never_carry_node_ids() {
        assert_eq!(
            endpoint_label("GET /v1/node/4d2ba53b-6c0d-4f6b-8c3e-0e0a0a8f2b11/allocations"),
            "GET /v1/node/:id/allocations"
        );
        assert_eq!(endpoint_label("GET /v1/nodes"), "GET /v1/nodes");
        assert_eq!(
            endpoint_label("POST /v1/node/4d2ba53b-6c0d-4f6b-8c3e-0e0a0a8f2b11/drain"),
            "POST /v1/node/:id/drain"
        );
    }

    #[test]
    fn encoded_metrics_have_the_documented_names() {
        let m = Metrics::new();
        m.nomad_request("GET /v1/nodes", Some(200), Duration::from_millis(3));
        m.cloud_request(
            "TerminateInstanceInAutoScalingGroup",
            true,
            Duration::from_millis(40),
        );
        m.reconciles
            .get_or_create(&ReconcileLabels {
                pool: "ns/p".into(),
                result: "ok".into(),
            })
            .inc();
        m.reconcile_duration
            .get_or_create(&PoolLabels {
                pool: "ns/p".into(),
            })
            .observe(0.02);
        m.event("dropped");
        m.aws_request("Auto Scaling", "DetachInstances", Some(200));
        m.aws_request("EC2", "TerminateInstances", None);
        m.connection_wait("parked", Duration::from_millis(2));
        let text = m.encode();
        for name in [
            "nomadpool_reconciles_total{pool=\"ns/p\",result=\"ok\"} 1",
            "nomadpool_nomad_requests_total{endpoint=\"GET /v1/nodes\",code=\"200\"} 1",
            "nomadpool_cloud_requests_total{endpoint=\"TerminateInstanceInAutoScalingGroup\",code=\"ok\"} 1",
            "nomadpool_nomad_request_duration_seconds_bucket",
            "nomadpool_reconcile_duration_seconds_count{pool=\"ns/p\"} 1",
            "nomadpool_leader 0",
            "nomadpool_events_total{outcome=\"dropped\"} 1",
            "nomadpool_aws_requests_total{service=\"Auto Scaling\",operation=\"DetachInstances\",code=\"200\"} 1",
            "nomadpool_aws_requests_total{service=\"EC2\",operation=\"TerminateInstances\",code=\"none\"} 1",
            "nomadpool_nomad_connection_wait_seconds_count{lane=\"parked\"} 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
