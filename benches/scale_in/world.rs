//! A world: the simulator with a steady workload, its group in a moto of its
//! own (or, on GCE, its groups in a gce-sim, `gce.rs`), the recording proxy
//! and the relay.

use super::*;
use support::moto::MotoServer;

/// Creates the group (in the world's own moto) and returns its instance IDs
/// and how long three describes of it took (s).
pub async fn create_group_timed(
    asg: &AsgClient,
    name: &str,
    size: usize,
) -> (Vec<String>, Vec<f64>) {
    support::create_group(asg, name, 0, size as i32, size as i32).await;
    let mut times = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let out = asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .expect("describing the group");
        times.push(t.elapsed().as_secs_f64());
        ids = out.auto_scaling_groups()[0]
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect();
    }
    assert_eq!(ids.len(), size, "moto launched every instance");
    (ids, times)
}

// ---------------------------------------------------------------------------
// A world: simulator with a steady workload, its group in its own moto, the proxy

/// The cloud side of a world.
pub enum CloudSide {
    /// One Auto Scaling group (`World::group`) in a moto of its own.
    Aws(MotoServer),
    /// Managed instance groups in an in-process gce-sim (`gce.rs`).
    Gce(gce::GceSide),
}

/// Clients of one Nomad node pool: their VMs and the fingerprint's cloud.
pub struct NodeSet {
    pub node_pool: String,
    pub instance_ids: Vec<String>,
    /// `aws` or `gce` (nomad-sim's fingerprints).
    pub cloud: &'static str,
    pub zone: String,
}

pub struct World {
    pub label: String,
    pub size: usize,
    pub sim: nomad_sim::Sim,
    /// The simulator itself (control surface, the bench's own reads).
    pub url: String,
    /// Nomad's address for the operator and the baseline: the counting relay.
    pub relay: Relay,
    pub http: reqwest::Client,
    pub cloud: CloudSide,
    /// The Auto Scaling group (AWS worlds).
    pub group: String,
    /// Nomad node pools, one per pool of the operator.
    pub node_pools: Vec<String>,
    pub proxy: Proxy,
    /// Wall-clock instant and simulated ns taken together after the scale was set.
    pub clock0: (Instant, i64),
    pub scale: f64,
    /// When the simulator made each node's drain completion visible.
    pub visible_ready: Arc<Mutex<HashMap<String, Instant>>>,
    pub moto_describe_s: Vec<f64>,
    pub setup_s: f64,
}

/// A world's Nomad side: the simulator with its clients and a steady
/// workload per node pool, warmed up, its clock running; the per-node
/// drain-completion watches.
pub struct SimSide {
    pub sim: nomad_sim::Sim,
    pub url: String,
    pub http: reqwest::Client,
    pub clock0: (Instant, i64),
    pub visible_ready: Arc<Mutex<HashMap<String, Instant>>>,
}

impl SimSide {
    pub async fn start(p: &Params, label: &str, sets: &[NodeSet]) -> SimSide {
        let sim = nomad_sim::serve(nomad_sim::Config {
            time_scale: 0.0,
            seed: Some(p.seed),
            node_slots: p.slots,
            heartbeat_ttl: Duration::from_secs_f64(p.heartbeat_ttl_s),
            heartbeat_grace: Duration::from_secs_f64(p.heartbeat_grace_s),
            // The baseline script sends `budget` requests at once (500 in
            // the 5,000-client run), as the script it stands for would; a
            // real agent would refuse most of them, so its world has no
            // limit. The operator's worlds keep Nomad's default: the operator
            // must stay under it (refused connections would show as Nomad
            // errors in its log and slow retirements).
            http_max_conns_per_client: if label == "baseline" {
                0
            } else {
                nomad_sim::connlimit::DEFAULT_HTTP_MAX_CONNS_PER_CLIENT
            },
            ..Default::default()
        })
        .await
        .expect("starting nomad-sim");
        let url = sim.url();
        let http = reqwest::Client::new();
        let post = |path: &str, body: Value| {
            let req = http.post(format!("{url}{path}")).json(&body);
            async move {
                let r = req.send().await.unwrap();
                assert!(r.status().is_success(), "{}", r.text().await.unwrap());
                r.json::<Value>().await.unwrap()
            }
        };
        for s in sets {
            post(
                "/sim/nodes",
                json!({"count": s.instance_ids.len(), "node_pool": s.node_pool, "node_class": "linux",
                       "cloud": s.cloud, "instance_ids": s.instance_ids, "availability_zone": s.zone}),
            )
            .await;
        }
        for s in sets {
            post(
                "/sim/workload",
                json!({"node_pool": s.node_pool, "rate_per_minute": p.rate_per_min(s.instance_ids.len()),
                       "duration_min_s": p.job_min_s, "duration_max_s": p.job_max_s}),
            )
            .await;
        }
        // Steady state before anything watches: every job now running was
        // started by the workload, none by the warm-up's beginning.
        post("/sim/time", json!({"advance_s": p.warmup_s})).await;
        post("/sim/time", json!({"scale": p.time_scale})).await;
        let app = sim.app().clone();
        let clock0 = (Instant::now(), app.clock.now());
        let visible_ready = Arc::new(Mutex::new(HashMap::new()));
        watch_drain_completions(&app, &visible_ready);
        SimSide {
            sim,
            url,
            http,
            clock0,
            visible_ready,
        }
    }
}

impl World {
    pub async fn new(p: &Params, label: &str, size: usize) -> World {
        let t0 = Instant::now();
        let moto =
            MotoServer::start(&bench_dir().join(format!("scale-in-logs/moto-{label}.log"))).await;
        let asg = moto.client();
        let group = support::unique(&format!("bench-{label}"));
        let (instances, moto_describe_s) = create_group_timed(&asg, &group, size).await;
        // moto loads its EC2 API on the first EC2 call: with batches, the
        // scale-in's first ten `CreateTags` waited for that (0.1-0.8 s, the
        // slowest terminations of a run), a cold start AWS does not have.
        // One read of one instance loads it before anything is measured.
        if let Some(first) = instances.first() {
            (support::aws::ec2_client_at(&moto.endpoint).describe_instances())
                .instance_ids(first)
                .send()
                .await
                .expect("warming moto's EC2 API");
        }
        let set = NodeSet {
            node_pool: "ci".into(),
            instance_ids: instances.clone(),
            cloud: "aws",
            zone: "us-east-1a".into(),
        };
        let s = SimSide::start(p, label, &[set]).await;
        let proxy = Proxy::start(&moto.endpoint, s.sim.app().clone(), &group, &instances).await;
        let relay = Relay::start(s.sim.addr()).await;
        World {
            label: label.into(),
            size,
            sim: s.sim,
            url: s.url,
            relay,
            http: s.http,
            cloud: CloudSide::Aws(moto),
            group,
            node_pools: vec!["ci".into()],
            proxy,
            clock0: s.clock0,
            scale: p.time_scale,
            visible_ready: s.visible_ready,
            moto_describe_s,
            setup_s: t0.elapsed().as_secs_f64(),
        }
    }

    /// Nomad's address for the operator: the relay, or with
    /// `SCALE_IN_RELAY=0` the simulator itself (one file descriptor of this
    /// process per operator connection instead of three; the Nomad traffic
    /// figures are then 0).
    pub fn operator_nomad_url(&self) -> String {
        if env_or("SCALE_IN_RELAY", 1) == 0 {
            self.url.clone()
        } else {
            self.relay.url.clone()
        }
    }

    /// Seconds after `clock0` (wall clock) at which simulated time was `ns`.
    pub fn wall_of_sim(&self, ns: i64) -> f64 {
        (ns - self.clock0.1) as f64 / NS_PER_S / self.scale
    }

    pub fn wall_of(&self, t: Instant) -> f64 {
        if t >= self.clock0.0 {
            (t - self.clock0.0).as_secs_f64()
        } else {
            -(self.clock0.0 - t).as_secs_f64()
        }
    }

    /// Nomad API requests (`/v1/...`) by endpoint, as the simulator counted them.
    pub fn nomad_requests(&self) -> BTreeMap<String, u64> {
        let s = self.sim.app().stats.lock().unwrap();
        s.requests
            .iter()
            .filter(|(k, _)| k.contains(" /v1/"))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn violations(&self) -> Value {
        self.get("/sim/violations").await
    }

    /// Instance ids of the simulator's live clients.
    pub fn live_instances(&self) -> std::collections::HashSet<String> {
        let c = self.sim.app().cluster.read().unwrap();
        c.nodes
            .values()
            .filter(|r| r.alive)
            .filter_map(|r| r.instance_id.clone())
            .collect()
    }

    /// The group(s) as the cloud has them now, against the simulator's live clients.
    pub async fn group_after(&self) -> Value {
        let moto = match &self.cloud {
            CloudSide::Aws(moto) => moto,
            CloudSide::Gce(g) => return g.groups_after(&self.live_instances()),
        };
        let Ok(out) = moto
            .client()
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.group)
            .send()
            .await
        else {
            return Value::Null;
        };
        let Some(g) = out.auto_scaling_groups().first() else {
            return Value::Null;
        };
        let live = self.live_instances();
        let ids: Vec<&str> = g
            .instances()
            .iter()
            .filter_map(|i| i.instance_id())
            .collect();
        json!({
            "desired_capacity": g.desired_capacity(),
            "instances": ids.len(),
            "instances_without_a_live_nomad_client": ids.iter().filter(|i| !live.contains(**i)).count(),
        })
    }

    pub async fn shutdown(self) {
        drop(self.proxy);
        drop(self.relay);
        self.sim.shutdown().await;
        match self.cloud {
            CloudSide::Aws(moto) => moto.stop().await,
            CloudSide::Gce(g) => g.shutdown().await,
        }
    }
}

/// One task per node, parked on the simulator's per-node watch: records the
/// wall-clock moment its drain completion became visible to API clients.
pub fn watch_drain_completions(
    app: &Arc<nomad_sim::App>,
    out: &Arc<Mutex<HashMap<String, Instant>>>,
) {
    let rxs: Vec<(String, tokio::sync::watch::Receiver<u64>)> = {
        let c = app.cluster.read().unwrap();
        c.watches
            .iter()
            .map(|(id, w)| (id.clone(), w.node.subscribe()))
            .collect()
    };
    for (id, mut rx) in rxs {
        let app = app.clone();
        let out = out.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let done = {
                    let c = app.cluster.read().unwrap();
                    c.nodes.get(&id).is_none_or(|r| {
                        r.node.drain_strategy.is_none()
                            && r.node
                                .last_drain
                                .as_ref()
                                .is_some_and(|d| d.status == "complete")
                    })
                };
                if done {
                    out.lock().unwrap().insert(id, Instant::now());
                    return;
                }
            }
        });
    }
}
