//! The GCE world (`SCALE_IN_PROVIDER=gce`): zonal managed instance groups
//! of at most 1,000 VMs (the zonal cap, gce-mig.md §1.1) in one in-process
//! gce-sim, a Nomad node pool and a NomadClientPool per group, and a
//! recording proxy in front of gce-sim that does for `deleteInstances` what
//! the AWS world's proxy does for `TerminateInstanceInAutoScalingGroup`:
//! timestamps each instance's delete on arrival with what the simulator
//! knew of its node, and once gce-sim accepted it stops the VM's Nomad
//! client (the harness's bridge would do that by polling the group).
//!
//! The operator reaches gce-sim as it reaches Compute: a service-account
//! key in the pool's Secret, its tokens checked by gce-sim (the e2e tests'
//! setup, `npo_testkit::gce`). Operations are `RUNNING` at the first poll
//! and `DONE` a second after they were made; a deleted VM stays `DELETING`
//! for 10 s.

use super::*;
use gce_sim::state::{Key, Scope, Timing};
use support::gce::{GCE_PROJECT, GCE_SECRET, GCE_ZONE, GceCloud, create_gce_secret, e2e_timing};

/// The zonal cap (§1.1): the most clients one group holds.
const GROUP_MAX: usize = 1000;

/// How many groups hold `p.nodes` clients: as few as the cap allows, each
/// the same size, each lowered by the same share.
pub fn groups(p: &Params) -> usize {
    let n = p.nodes.div_ceil(GROUP_MAX).max(1);
    assert!(
        p.nodes.is_multiple_of(n) && p.retire.is_multiple_of(n),
        "SCALE_IN_NODES ({}) and SCALE_IN_RETIRE ({}) must split evenly over {n} groups",
        p.nodes,
        p.retire
    );
    n
}

/// Operations as Compute runs them (`RUNNING` at the first poll, done in a
/// second); VMs delete in 10 s, in real time (gce-sim's clock runs at 1).
fn bench_timing() -> Timing {
    Timing {
        operation_polls: 1,
        operation_duration_s: 1.0,
        delete_duration_s: 10.0,
        ..e2e_timing()
    }
}

fn group_name(i: usize) -> String {
    format!("bench-gce-{i}")
}

fn pool_name(i: usize) -> String {
    format!("ci-{i}")
}

/// The world's cloud: gce-sim and its groups, in pool order.
pub struct GceSide {
    pub cloud: GceCloud,
    pub groups: Vec<String>,
    /// Bytes of one full listManagedInstances answer of one group (as
    /// gce-sim sends it) when the world was made.
    pub list_bytes: usize,
}

impl GceSide {
    fn key(group: &str) -> Key {
        Key {
            project: GCE_PROJECT.into(),
            scope: Scope::Zone(GCE_ZONE.into()),
            name: group.into(),
        }
    }

    /// Each group's VM ids, in pool order.
    fn vm_ids(&self) -> Vec<Vec<String>> {
        let w = self.cloud.sim.app().world();
        self.groups
            .iter()
            .map(|g| {
                w.groups[&Self::key(g)]
                    .instances
                    .values()
                    .filter_map(|i| i.id.map(|id| id.to_string()))
                    .collect()
            })
            .collect()
    }

    /// Per group: targetSize, VMs not being deleted, and those of them
    /// without a live Nomad client.
    pub fn groups_after(&self, live: &std::collections::HashSet<String>) -> Value {
        let w = self.cloud.sim.app().world();
        let per: Vec<Value> = self
            .groups
            .iter()
            .filter_map(|g| w.groups.get(&Self::key(g)))
            .map(|g| {
                let kept: Vec<String> = g
                    .instances
                    .values()
                    .filter(|i| i.current_action != "DELETING")
                    .filter_map(|i| i.id.map(|id| id.to_string()))
                    .collect();
                json!({
                    "group": g.key.name,
                    "target_size": g.target_size,
                    "instances": kept.len(),
                    "instances_without_a_live_nomad_client":
                        kept.iter().filter(|id| !live.contains(*id)).count(),
                })
            })
            .collect();
        let sum = |k: &str| per.iter().filter_map(|g| g[k].as_u64()).sum::<u64>();
        json!({
            "target_size": sum("target_size"),
            "instances": sum("instances"),
            "instances_without_a_live_nomad_client": sum("instances_without_a_live_nomad_client"),
            "groups": per,
        })
    }

    pub async fn shutdown(self) {
        self.cloud.sim.shutdown().await;
    }
}

/// One full listManagedInstances of `group` as gce-sim answers it: seconds
/// to build and serialize it in-process, and its size.
fn time_list(cloud: &GceCloud, group: &str) -> (f64, usize) {
    let t = Instant::now();
    let w = cloud.sim.app().world();
    let list = w
        .list_managed(&GceSide::key(group), None, None)
        .expect("the group exists");
    let bytes = serde_json::to_vec_pretty(&list).expect("serializes").len();
    (t.elapsed().as_secs_f64(), bytes)
}

/// The GCE world: `groups(p)` groups of `p.nodes / groups(p)` VMs, each
/// VM a Nomad client (GCE fingerprint) in its group's node pool.
pub async fn new_world(p: &Params, label: &str) -> World {
    let t0 = Instant::now();
    let n = groups(p);
    let size = p.nodes / n;
    let cloud = GceCloud::start_with(bench_timing()).await;
    let names: Vec<String> = (0..n).map(group_name).collect();
    for g in &names {
        cloud.create_group(g, size as i32).await;
    }
    let reads: Vec<(f64, usize)> = (0..3).map(|_| time_list(&cloud, &names[0])).collect();
    let side = GceSide {
        cloud,
        groups: names,
        list_bytes: reads[0].1,
    };
    let sets: Vec<NodeSet> = side
        .vm_ids()
        .into_iter()
        .enumerate()
        .map(|(i, ids)| {
            assert_eq!(ids.len(), size, "gce-sim made every VM of group {i}");
            NodeSet {
                node_pool: pool_name(i),
                instance_ids: ids,
                cloud: "gce",
                zone: GCE_ZONE.into(),
            }
        })
        .collect();
    let s = SimSide::start(p, label, &sets).await;
    let proxy = start_proxy(&side.cloud, s.sim.app().clone()).await;
    let relay = Relay::start(s.sim.addr()).await;
    World {
        label: label.into(),
        size: p.nodes,
        sim: s.sim,
        url: s.url,
        relay,
        http: s.http,
        cloud: CloudSide::Gce(side),
        group: String::new(),
        node_pools: (0..n).map(pool_name).collect(),
        proxy,
        clock0: s.clock0,
        scale: p.time_scale,
        visible_ready: s.visible_ready,
        moto_describe_s: reads.iter().map(|r| round(r.0, 4)).collect(),
        setup_s: t0.elapsed().as_secs_f64(),
    }
}

/// The namespace, the service-account key Secret, one pool per group (each
/// group's description naming its pool as owner), and a fresh operator.
pub async fn manage(client: &kube::Client, w: &World, g: &GceSide, p: &Params) -> Managed {
    let ns = support::create_namespace(client, &format!("bench-{}", w.label)).await;
    create_gce_secret(client, &ns, &g.cloud.key_json).await;
    let pools: Api<NomadClientPool> = Api::namespaced(client.clone(), &ns);
    let size = w.size / g.groups.len();
    let mut names = Vec::new();
    for (i, group) in g.groups.iter().enumerate() {
        let name = pool_name(i);
        g.cloud.set_owner(group, &format!("{ns}/{name}")).await;
        let manifest = json!({
            "apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientPool",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "nomad": {"address": w.operator_nomad_url()},
                "selector": {"nodePool": w.node_pools[i]},
                "provider": {"gceManagedInstanceGroup": {
                    "project": GCE_PROJECT, "zone": GCE_ZONE, "name": group,
                    "endpoint": w.proxy.url, "credentialsSecretRef": {"name": GCE_SECRET}}},
                "replicas": size,
                "disruption": {"maxUnavailable": format!("{}%", p.max_unavailable_pct),
                               "selectionPolicy": "LeastBusy"},
            }
        });
        apply_pool(&pools, &manifest).await;
        names.push(name);
    }
    let op = OperatorProc::start(&ns, &w.label).await;
    Managed {
        ns,
        pools,
        names,
        op,
    }
}

/// Compute calls per terminated VM, by method, from the figures'
/// `cloud_calls` (what one retirement costs the Compute API).
pub fn calls_per_terminate(f: &Value) -> Value {
    let retired = f["retired"].as_u64().unwrap_or(0).max(1) as f64;
    f["cloud_calls"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let n = v["count"].as_f64().unwrap_or(0.0);
            (k.clone(), json!(round(n / retired, 2)))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

// ---------------------------------------------------------------------------
// The recording proxy in front of gce-sim

struct GceProxy {
    st: Arc<ProxyState>,
    gce: Arc<gce_sim::App>,
}

async fn start_proxy(cloud: &GceCloud, nomad: Arc<nomad_sim::App>) -> Proxy {
    let st = ProxyState::new(&cloud.url, nomad, "", &[]);
    let state = Arc::new(GceProxy {
        st: st.clone(),
        gce: cloud.sim.app().clone(),
    });
    let router = axum::Router::new()
        .fallback(gce_proxy_handler)
        .with_state(state);
    Proxy::serve(st, router).await
}

/// A Compute call's name from its path (`/compute/v1/projects/P/zones/Z/
/// <collection>/<name>[/<verb>]`): the verb (`listManagedInstances`,
/// `deleteInstances`, `operations.wait`), else `<collection>.get`; and the
/// group it is on, if any.
fn call_name(method: &axum::http::Method, path: &str) -> (String, Option<String>) {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let rest = segs.get(6..).unwrap_or(&[]);
    let group = match rest {
        ["instanceGroupManagers", g, ..] => Some(g.to_string()),
        _ => None,
    };
    let name = match rest {
        [coll, _, "wait"] => format!("{coll}.wait"),
        [_, _, verb] => verb.to_string(),
        [coll, _] => format!("{coll}.{}", method.as_str().to_ascii_lowercase()),
        _ => format!("{method} {path}"),
    };
    (name, group)
}

/// The VM ids (and names) a deleteInstances body names, looked up in
/// gce-sim before the call changes anything.
fn deleted_vms(gce: &gce_sim::App, group: &str, body: &[u8]) -> Vec<(String, String)> {
    let urls: Vec<String> = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| serde_json::from_value(v["instances"].clone()).ok())
        .unwrap_or_default();
    let w = gce.world();
    let Some(g) = w.groups.get(&GceSide::key(group)) else {
        return Vec::new();
    };
    urls.iter()
        .filter_map(|u| {
            let name = u.rsplit('/').next()?;
            let id = g.instances.get(name)?.id?;
            Some((id.to_string(), name.to_string()))
        })
        .collect()
}

async fn gce_proxy_handler(
    axum::extract::State(px): axum::extract::State<Arc<GceProxy>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let at = Instant::now();
    let st = &px.st;
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let (call, group) = call_name(&method, &path);
    let mut headers = req.headers().clone();
    headers.remove(axum::http::header::HOST);
    headers.remove(axum::http::header::CONTENT_LENGTH);
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let delete = call == "deleteInstances";
    // What Nomad knew of each VM's node when its delete arrived.
    let vms: Vec<(String, Option<NodeSnap>)> = match (&group, delete) {
        (Some(g), true) => deleted_vms(&px.gce, g, &body)
            .into_iter()
            .map(|(id, _)| {
                let snap = snapshot(&st.app, &id);
                (id, snap)
            })
            .collect(),
        _ => Vec::new(),
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
    if delete && ok {
        // The VMs are going: their Nomad clients stop heartbeating (the
        // simulator records a violation if anything still ran there).
        let app = st.app.clone();
        let ids: Vec<String> = vms.iter().map(|(id, _)| id.clone()).collect();
        let _ = tokio::task::spawn_blocking(move || {
            let mut c = app.write();
            for id in ids {
                let _ = c.vm_action(&id, "kill");
            }
        })
        .await;
    }
    record(st, at, call, ok, vms);
    let mut out = axum::response::Response::new(axum::body::Body::from(rbody));
    *out.status_mut() = status;
    for (k, v) in rheaders.iter() {
        if k != axum::http::header::CONTENT_LENGTH && k != axum::http::header::TRANSFER_ENCODING {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

/// Into the proxy's log: the call's time; a listManagedInstances as a
/// group read; one terminate per VM a deleteInstances named.
fn record(
    st: &ProxyState,
    at: Instant,
    call: String,
    ok: bool,
    vms: Vec<(String, Option<NodeSnap>)>,
) {
    let took = at.elapsed().as_secs_f64();
    let mut log = st.log.lock().unwrap();
    if call == "listManagedInstances" {
        log.describes.push((at, Instant::now()));
    }
    let e = log.calls.entry(call).or_insert((0, 0.0, 0.0));
    e.0 += 1;
    e.1 += took;
    e.2 = e.2.max(took);
    for (instance, snap) in vms {
        log.terminates.push(TerminateRec {
            at,
            ok,
            instance,
            snap,
        });
    }
}
