//! The recording proxy in front of each world's moto: it times every call,
//! snapshots what the simulator knew when a terminate arrived, and makes a
//! terminated VM's Nomad client stop (and a new one register). The GCE
//! world's proxy (`gce.rs`) records into the same log.

use super::*;
use support::proxy::LocalServer;

// ---------------------------------------------------------------------------
// The recording proxy in front of moto

/// What the simulator knew about a node when its VM's terminate call arrived.
#[derive(Clone, Debug, Default)]
pub struct NodeSnap {
    pub node_id: String,
    pub live_allocs: usize,
    /// When the node stopped taking work: first of cordon and drain (sim ns).
    pub emptying_since_ns: Option<i64>,
    pub last_alloc_end_ns: Option<i64>,
    pub drain_complete_ns: Option<i64>,
}

impl NodeSnap {
    /// Drained and empty: the later of the last allocation end and the
    /// drain's completion (sim ns).
    pub fn ready_ns(&self) -> Option<i64> {
        match (self.last_alloc_end_ns, self.drain_complete_ns) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Clone, Debug)]
pub struct TerminateRec {
    pub at: Instant,
    pub ok: bool,
    pub instance: String,
    pub snap: Option<NodeSnap>,
}

#[derive(Default)]
pub struct ProxyLog {
    /// Action -> (count, total seconds, max seconds).
    pub calls: BTreeMap<String, (u64, f64, f64)>,
    pub terminates: Vec<TerminateRec>,
    /// (arrival, answered) of each DescribeAutoScalingGroups.
    pub describes: Vec<(Instant, Instant)>,
    /// (arrival, action, seconds to answer) of every call, to follow a
    /// stall of the cloud into the operator's log.
    pub timeline: Vec<(Instant, String, f64)>,
}

pub struct ProxyState {
    /// Where calls are forwarded: the world's moto, or its gce-sim.
    pub upstream: String,
    pub http: reqwest::Client,
    pub app: Arc<nomad_sim::App>,
    pub log: Mutex<ProxyLog>,
    /// Mutating calls other than terminates are forwarded one at a time: a
    /// SetDesiredCapacity and the registration of the VMs it launches go
    /// together. Terminates go side by side, as they reach AWS: the moto
    /// wrapper applies each one atomically (`asg_atomic_capacity`), and
    /// serializing them here (with the VM kill after each) held a 4,000-VM
    /// scale-in to ~20 terminates a second.
    pub mutate: tokio::sync::Mutex<()>,
    /// Instances known to have a Nomad client; a scale-up's new instances
    /// register one, as a booting VM does.
    pub group: String,
    pub known: Mutex<std::collections::HashSet<String>>,
}

pub struct Proxy {
    pub url: String,
    pub state: Arc<ProxyState>,
    _server: LocalServer,
}

/// The instances a terminate names: `InstanceId` of the Auto Scaling
/// call, or each `InstanceId.N` of EC2 `TerminateInstances` (a batch,
/// `batchTerminations`, whose VMs end when it lands).
pub fn terminated_instances(action: &str, body: &str) -> Vec<String> {
    let pairs = body.split('&').filter_map(|kv| kv.split_once('='));
    match action {
        "TerminateInstanceInAutoScalingGroup" => pairs
            .filter(|(k, _)| *k == "InstanceId")
            .map(|(_, v)| v.to_owned())
            .collect(),
        "TerminateInstances" => pairs
            .filter(|(k, _)| k.starts_with("InstanceId."))
            .map(|(_, v)| v.to_owned())
            .collect(),
        _ => Vec::new(),
    }
}

pub fn form_value<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

pub fn snapshot(app: &nomad_sim::App, instance: &str) -> Option<NodeSnap> {
    let c = app.cluster.read().unwrap();
    // The VM's newest client: the one the pool retires (one per VM here).
    let id = c.nodes_on_vm(instance).pop()?;
    let rec = c.nodes.get(&id)?;
    let event_ns = |msg: &str| {
        rec.node
            .events
            .iter()
            .filter(|e| e.message == msg)
            .filter_map(|e| parse_ts_ns(&e.timestamp))
            .min()
    };
    let cordon = event_ns("Node marked as ineligible for scheduling");
    let drain_set = event_ns("Node drain strategy set");
    let emptying_since_ns = match (cordon, drain_set) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let drain_complete_ns = rec
        .node
        .events
        .iter()
        .filter(|e| e.message == "Node drain complete")
        .filter_map(|e| parse_ts_ns(&e.timestamp))
        .max();
    let mut live = 0;
    let mut last_end = None;
    for a in c.node_allocs(&id) {
        if a.alloc.pending_or_running() {
            live += 1;
        } else if a.alloc.client_terminal() {
            last_end = last_end.max(Some(a.alloc.modify_time));
        }
    }
    Some(NodeSnap {
        node_id: id,
        live_allocs: live,
        emptying_since_ns,
        last_alloc_end_ns: last_end,
        drain_complete_ns,
    })
}

pub async fn proxy_handler(
    axum::extract::State(st): axum::extract::State<Arc<ProxyState>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let at = Instant::now();
    let method = req.method().clone();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let mut headers = req.headers().clone();
    headers.remove(axum::http::header::HOST);
    headers.remove(axum::http::header::CONTENT_LENGTH);
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).into_owned();
    let action = form_value(&text, "Action").unwrap_or("?").to_owned();
    let instances = terminated_instances(&action, &text);
    let terminate = !instances.is_empty();
    let action_is_describe_groups = action == "DescribeAutoScalingGroups";
    let snaps: Vec<Option<NodeSnap>> = (instances.iter()).map(|i| snapshot(&st.app, i)).collect();
    // A batch's tag and detach launch nothing (the scale-in decrements):
    // side by side, as terminates go.
    let batch_step = matches!(
        action.as_str(),
        "CreateTags" | "DeleteTags" | "DetachInstances"
    );
    let mutating = !action.starts_with("Describe") && !terminate && !batch_step;
    let _serial = if mutating {
        Some(st.mutate.lock().await)
    } else {
        None
    };
    let (status, rheaders, rbody) = forward(
        &st.http,
        method,
        format!("{}{pq}", st.upstream),
        headers,
        body,
    )
    .await;
    let ok = status.is_success();
    if terminate && ok {
        // The VM is gone: its Nomad client stops heartbeating (the simulator
        // records a violation if anything still ran there).
        // Not awaited: AWS answers before the VM is gone, and the answer
        // waiting on the simulator's write lock (contended by the
        // operator's reads of a 20,000-node cluster) made every terminate
        // slower (20,000 run: 112 -> 74 ms mean at this proxy).
        let app = st.app.clone();
        let ids = instances.clone();
        drop(tokio::task::spawn_blocking(move || {
            let mut c = app.write();
            for iid in ids {
                let _ = c.vm_action(&iid, "kill");
            }
        }));
    }
    if ok && action == "SetDesiredCapacity" {
        register_new_instances(&st).await;
    }
    drop(_serial);
    let took = at.elapsed().as_secs_f64();
    {
        let mut log = st.log.lock().unwrap();
        log.timeline.push((at, action.clone(), took));
        let e = log.calls.entry(action).or_insert((0, 0.0, 0.0));
        e.0 += 1;
        e.1 += took;
        e.2 = e.2.max(took);
        if action_is_describe_groups {
            log.describes.push((at, Instant::now()));
        }
        for (instance, snap) in instances.into_iter().zip(snaps) {
            log.terminates.push(TerminateRec {
                at,
                ok,
                instance,
                snap,
            });
        }
    }
    let mut out = axum::response::Response::new(axum::body::Body::from(rbody));
    *out.status_mut() = status;
    for (k, v) in rheaders.iter() {
        if k != axum::http::header::CONTENT_LENGTH && k != axum::http::header::TRANSFER_ENCODING {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

/// New in-service instances of the group get a Nomad client, as a VM that
/// boots does (what the harness's Bridge does by polling).
pub async fn register_new_instances(st: &ProxyState) {
    let Ok(out) = support::asg_client_at(&st.upstream)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&st.group)
        .send()
        .await
    else {
        return;
    };
    let fresh: Vec<String> = {
        let mut known = st.known.lock().unwrap();
        out.auto_scaling_groups()
            .iter()
            .flat_map(|g| g.instances())
            .filter(|i| {
                i.lifecycle_state()
                    .is_some_and(|l| l.as_str() == "InService")
            })
            .filter_map(|i| i.instance_id())
            .filter(|id| known.insert(id.to_string()))
            .map(str::to_owned)
            .collect()
    };
    if fresh.is_empty() {
        return;
    }
    let app = st.app.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let mut c = app.write();
        for id in fresh {
            c.register_node(&nomad_sim::state::NodeSpec {
                node_pool: Some("ci".into()),
                node_class: Some("linux".into()),
                instance_id: Some(id),
                availability_zone: Some("us-east-1a".into()),
                ..Default::default()
            });
        }
        c.schedule_pending();
    })
    .await;
}

impl ProxyState {
    /// A proxy's state: forwards to `upstream`, records into an empty log.
    pub fn new(
        upstream: &str,
        app: Arc<nomad_sim::App>,
        group: &str,
        instances: &[String],
    ) -> Arc<ProxyState> {
        Arc::new(ProxyState {
            upstream: upstream.to_owned(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            app,
            log: Mutex::new(ProxyLog::default()),
            mutate: tokio::sync::Mutex::new(()),
            group: group.to_owned(),
            known: Mutex::new(instances.iter().cloned().collect()),
        })
    }
}

impl Proxy {
    pub async fn start(
        moto: &str,
        app: Arc<nomad_sim::App>,
        group: &str,
        instances: &[String],
    ) -> Proxy {
        let state = ProxyState::new(moto, app, group, instances);
        let router = axum::Router::new()
            .fallback(proxy_handler)
            .with_state(state.clone());
        Proxy::serve(state, router).await
    }

    /// Serves `router`, whose handler records into `state`.
    pub async fn serve(state: Arc<ProxyState>, router: axum::Router) -> Proxy {
        let server = LocalServer::start(router).await;
        Proxy {
            url: server.url.clone(),
            state,
            _server: server,
        }
    }

    pub fn terminates(&self) -> Vec<TerminateRec> {
        self.state.log.lock().unwrap().terminates.clone()
    }

    pub fn ok_terminates(&self) -> usize {
        self.state
            .log
            .lock()
            .unwrap()
            .terminates
            .iter()
            .filter(|t| t.ok)
            .count()
    }

    pub fn describes(&self) -> Vec<(Instant, Instant)> {
        self.state.log.lock().unwrap().describes.clone()
    }

    pub fn timeline(&self) -> Vec<(Instant, String, f64)> {
        self.state.log.lock().unwrap().timeline.clone()
    }

    pub fn calls(&self) -> BTreeMap<String, (u64, f64, f64)> {
        self.state.log.lock().unwrap().calls.clone()
    }
}
