//! The API server's side of a scale-in: kube-apiserver's own request
//! counters and request body sizes (its `/metrics`), the CPU seconds of the
//! kube-apiserver and etcd processes of the test environment (their
//! `/proc/<pid>/stat`, pids from `tests/env/up.sh`'s run directory), a few
//! etcd counters (its `/metrics` on the client URL), and the largest pool and
//! retirement objects written (every version, seen through a watch).

use super::*;
use futures::TryStreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::runtime::watcher;
use support::procstat;

/// The API group of the operator's resources.
pub const GROUP: &str = "nomadpool.dev";

/// `apiserver_request_total` verbs that change stored state.
const WRITE_VERBS: [&str; 6] = [
    "POST",
    "PUT",
    "PATCH",
    "DELETE",
    "APPLY",
    "DELETECOLLECTION",
];

/// etcd counters kept from its `/metrics` (deltas over the run).
const ETCD_COUNTERS: [&str; 3] = [
    "etcd_network_client_grpc_received_bytes_total",
    "etcd_mvcc_put_total",
    "process_cpu_seconds_total",
];

/// A write request's (verb, group, resource, subresource).
pub type WriteKey = (String, String, String, String);

/// One reading of everything the API server figures are deltas of.
#[derive(Clone, Debug, Default)]
pub struct ApiSample {
    /// Write requests by (verb, group, resource, subresource), from `apiserver_request_total`.
    pub writes: BTreeMap<WriteKey, f64>,
    /// Request body bytes (sum, count) by (group, resource, verb), from
    /// `apiserver_request_body_size_bytes`.
    pub body: BTreeMap<(String, String, String), (f64, f64)>,
    pub cpu_apiserver: Option<f64>,
    pub cpu_etcd: Option<f64>,
    pub etcd: BTreeMap<String, f64>,
}

/// One sample line of the Prometheus text format: name, labels, value.
pub fn parse_line(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let (head, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let Some((name, rest)) = head.split_once('{') else {
        return Some((head, BTreeMap::new(), value));
    };
    let body = rest.strip_suffix('}')?;
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() || chars.next() != Some('"') {
            break;
        }
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => val.extend(chars.next()),
                '"' => break,
                c => val.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_owned(), val);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some((name, labels, value))
}

/// The pid `tests/env/up.sh` recorded for one of its components.
fn component_pid(name: &str) -> Option<u32> {
    let dir = PathBuf::from(support::env_var("NPO_TESTENV_DIR")).join("run");
    let pid: u32 = std::fs::read_to_string(dir.join(format!("{name}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    std::path::Path::new(&format!("/proc/{pid}"))
        .exists()
        .then_some(pid)
}

pub async fn sample(client: &kube::Client) -> ApiSample {
    let mut s = ApiSample {
        cpu_apiserver: component_pid("kube-apiserver").map(procstat::cpu_seconds),
        cpu_etcd: component_pid("etcd").map(procstat::cpu_seconds),
        ..Default::default()
    };
    let req = axum::http::Request::get("/metrics")
        .body(Vec::new())
        .unwrap();
    let text = client.request_text(req).await.unwrap_or_default();
    for line in text.lines() {
        let Some((name, l, v)) = parse_line(line) else {
            continue;
        };
        let get = |k: &str| l.get(k).cloned().unwrap_or_default();
        match name {
            "apiserver_request_total" if WRITE_VERBS.contains(&get("verb").as_str()) => {
                let key = (
                    get("verb"),
                    get("group"),
                    get("resource"),
                    get("subresource"),
                );
                *s.writes.entry(key).or_default() += v;
            }
            "apiserver_request_body_size_bytes_sum" | "apiserver_request_body_size_bytes_count" => {
                let key = (get("group"), get("resource"), get("verb"));
                let e = s.body.entry(key).or_default();
                if name.ends_with("_sum") {
                    e.0 += v;
                } else {
                    e.1 += v;
                }
            }
            _ => {}
        }
    }
    let etcd = format!("{}/metrics", support::env_var("NPO_ETCD_ENDPOINT"));
    if let Ok(r) = reqwest::get(&etcd).await {
        for line in r.text().await.unwrap_or_default().lines() {
            if let Some((name, l, v)) = parse_line(line)
                && l.is_empty()
                && ETCD_COUNTERS.contains(&name)
            {
                s.etcd.insert(name.to_owned(), v);
            }
        }
    }
    s
}

/// Growth of each entry from `b` to `a`, zeros left out.
fn grew<K: Ord + Clone>(a: &BTreeMap<K, f64>, b: &BTreeMap<K, f64>) -> BTreeMap<K, f64> {
    a.iter()
        .map(|(k, v)| (k.clone(), v - b.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

/// The API server figures of one run (the `operator` object's fields),
/// from samples at its start and end and the objects seen meanwhile.
pub fn apiserver_figures(
    a: &ApiSample,
    b: &ApiSample,
    retired: usize,
    largest: &LargestObjects,
) -> serde_json::Map<String, Value> {
    let n = retired.max(1) as f64;
    let writes = grew(&b.writes, &a.writes);
    let sum_where = |f: &dyn Fn(&WriteKey) -> bool| -> f64 {
        writes.iter().filter(|(k, _)| f(k)).map(|(_, v)| v).sum()
    };
    let all = sum_where(&|_| true);
    let ours = sum_where(&|k| k.1 == GROUP);
    let by_req: BTreeMap<String, f64> = writes
        .iter()
        .map(|((verb, g, r, sub), v)| (format!("{verb} {g}/{r}{}", sub_path(sub)), *v))
        .collect();
    let body_sum = |k: &(String, String, String)| b.body.get(k).map_or(0.0, |x| x.0);
    let bytes: BTreeMap<String, f64> = b
        .body
        .keys()
        .map(|k| {
            let d = body_sum(k) - a.body.get(k).map_or(0.0, |x| x.0);
            (format!("{} {}/{}", k.2, k.0, k.1), d)
        })
        .filter(|(_, d)| *d > 0.0)
        .collect();
    let bytes_all: f64 = bytes.values().sum();
    let bytes_ours: f64 = bytes
        .iter()
        .filter(|(k, _)| k.contains(&format!(" {GROUP}/")))
        .map(|(_, v)| v)
        .sum();
    let cpu = |f: fn(&ApiSample) -> Option<f64>| match (f(a), f(b)) {
        (Some(x), Some(y)) => Some(y - x),
        _ => None,
    };
    let (cpu_api, cpu_etcd) = (cpu(|s| s.cpu_apiserver), cpu(|s| s.cpu_etcd));
    let cpu_both = cpu_api.zip(cpu_etcd).map(|(x, y)| x + y);
    let etcd = grew(&b.etcd, &a.etcd);
    let mut o = serde_json::Map::new();
    let mut put = |k: &str, v: Value| {
        o.insert(k.to_owned(), v);
    };
    put(
        "apiserver_writes_per_retired_node",
        json!(round(all / n, 1)),
    );
    put(
        "apiserver_writes_per_retired_node_nomadpool",
        json!(round(ours / n, 1)),
    );
    put(
        "apiserver_writes",
        json!({"total": all, "nomadpool.dev": ours, "by_request": by_req}),
    );
    put(
        "apiserver_bytes_per_retired_node",
        json!(round(bytes_all / n, 0)),
    );
    put(
        "apiserver_bytes_per_retired_node_nomadpool",
        json!(round(bytes_ours / n, 0)),
    );
    put(
        "apiserver_request_bytes",
        json!({"metric": "apiserver_request_body_size_bytes_sum", "total": bytes_all,
               "nomadpool.dev": bytes_ours, "by_request": bytes}),
    );
    put(
        "apiserver_cpu_seconds",
        json!(cpu_both.map(|c| round(c, 2))),
    );
    put(
        "apiserver_cpu_seconds_per_retired_node",
        json!(cpu_both.map(|c| round(c / n, 4))),
    );
    put(
        "apiserver_cpu_seconds_by_process",
        json!({"kube-apiserver": cpu_api.map(|c| round(c, 2)), "etcd": cpu_etcd.map(|c| round(c, 2))}),
    );
    put("etcd_counters", json!(etcd));
    put("largest_object_bytes", json!(largest.largest()));
    put("largest_objects", largest.json());
    o
}

fn sub_path(sub: &str) -> String {
    if sub.is_empty() {
        String::new()
    } else {
        format!("/{sub}")
    }
}

// ---------------------------------------------------------------------------
// The largest objects written

/// The largest version of each kind of object seen, by JSON size.
#[derive(Clone, Debug, Default)]
pub struct Largest {
    pub bytes: usize,
    pub name: String,
    pub versions_seen: u64,
    pub objects: std::collections::HashSet<String>,
}

/// Every version of the pool and of its retirement objects in a namespace,
/// followed by watches for the length of a run.
pub struct LargestObjects {
    pub pool: Arc<Mutex<Largest>>,
    pub retirement: Arc<Mutex<Largest>>,
    /// False when the API server does not serve the retirement CRD.
    pub retirement_served: bool,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for LargestObjects {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, "v1alpha1", kind), plural)
}

fn follow(api: Api<DynamicObject>, into: Arc<Mutex<Largest>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default());
        let mut stream = std::pin::pin!(stream);
        loop {
            let ev = match stream.try_next().await {
                Ok(Some(ev)) => ev,
                Ok(None) => return,
                Err(_) => continue,
            };
            let obj = match ev {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => o,
                _ => continue,
            };
            // The API server stores custom resources as JSON; this is that
            // JSON re-encoded (same fields, same length up to key order).
            let size = serde_json::to_vec(&obj).map(|v| v.len()).unwrap_or(0);
            let name = obj.metadata.name.clone().unwrap_or_default();
            let mut l = into.lock().unwrap();
            l.versions_seen += 1;
            if size > l.bytes {
                l.bytes = size;
                l.name = name.clone();
            }
            l.objects.insert(name);
        }
    })
}

impl LargestObjects {
    pub async fn start(client: &kube::Client, ns: &str) -> LargestObjects {
        let pools: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            ns,
            &resource("NomadClientPool", "nomadclientpools"),
        );
        let ncrs: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            ns,
            &resource("NomadClientRetirement", "nomadclientretirements"),
        );
        let retirement_served = ncrs.list(&ListParams::default().limit(1)).await.is_ok();
        let (pool, retirement) = (Arc::default(), Arc::default());
        let mut tasks = vec![follow(pools, Arc::clone(&pool))];
        if retirement_served {
            tasks.push(follow(ncrs, Arc::clone(&retirement)));
        }
        LargestObjects {
            pool,
            retirement,
            retirement_served,
            tasks,
        }
    }

    pub fn largest(&self) -> usize {
        let p = self.pool.lock().unwrap().bytes;
        p.max(self.retirement.lock().unwrap().bytes)
    }

    pub fn json(&self) -> Value {
        let one = |l: &Arc<Mutex<Largest>>| {
            let l = l.lock().unwrap();
            json!({"bytes": l.bytes, "name": l.name, "versions_seen": l.versions_seen,
                   "objects": l.objects.len()})
        };
        json!({
            "pool": one(&self.pool),
            "retirement": if self.retirement_served { one(&self.retirement) } else { Value::Null },
            "retirement_crd_served": self.retirement_served,
            "how": "every version of the pool and of its NomadClientRetirements seen through a watch, JSON size",
        })
    }
}
