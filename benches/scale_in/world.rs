//! A world: the simulator with a steady workload, its group in a moto of its
//! own, the recording proxy and the relay.

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

pub struct World {
    pub label: String,
    pub size: usize,
    pub sim: nomad_sim::Sim,
    /// The simulator itself (control surface, the bench's own reads).
    pub url: String,
    /// Nomad's address for the operator and the baseline: the counting relay.
    pub relay: Relay,
    pub http: reqwest::Client,
    pub moto: MotoServer,
    pub group: String,
    pub proxy: Proxy,
    /// Wall-clock instant and simulated ns taken together after the scale was set.
    pub clock0: (Instant, i64),
    pub scale: f64,
    /// When the simulator made each node's drain completion visible.
    pub visible_ready: Arc<Mutex<HashMap<String, Instant>>>,
    pub moto_describe_s: Vec<f64>,
    pub setup_s: f64,
}

impl World {
    pub async fn new(p: &Params, label: &str, size: usize) -> World {
        let t0 = Instant::now();
        let moto =
            MotoServer::start(&bench_dir().join(format!("scale-in-logs/moto-{label}.log"))).await;
        let asg = moto.client();
        let group = support::unique(&format!("bench-{label}"));
        let (instances, moto_describe_s) = create_group_timed(&asg, &group, size).await;
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
        post(
            "/sim/nodes",
            json!({"count": size, "node_pool": "ci", "node_class": "linux",
                   "instance_ids": instances, "availability_zone": "us-east-1a"}),
        )
        .await;
        post(
            "/sim/workload",
            json!({"node_pool": "ci", "rate_per_minute": p.rate_per_min(size),
                   "duration_min_s": p.job_min_s, "duration_max_s": p.job_max_s}),
        )
        .await;
        // Steady state before anything watches: every job now running was
        // started by the workload, none by the warm-up's beginning.
        post("/sim/time", json!({"advance_s": p.warmup_s})).await;
        post("/sim/time", json!({"scale": p.time_scale})).await;
        let app = sim.app().clone();
        let clock0 = (Instant::now(), app.clock.now());
        let visible_ready = Arc::new(Mutex::new(HashMap::new()));
        watch_drain_completions(&app, &visible_ready);
        let proxy = Proxy::start(&moto.endpoint, app, &group, &instances).await;
        let relay = Relay::start(sim.addr()).await;
        World {
            label: label.into(),
            size,
            sim,
            url,
            relay,
            http,
            moto,
            group,
            proxy,
            clock0,
            scale: p.time_scale,
            visible_ready,
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

    /// The group as moto has it now, against the simulator's live clients.
    pub async fn group_after(&self) -> Value {
        let Ok(out) = self
            .moto
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
        let live: std::collections::HashSet<String> = {
            let c = self.sim.app().cluster.read().unwrap();
            c.nodes
                .values()
                .filter(|r| r.alive)
                .filter_map(|r| r.instance_id.clone())
                .collect()
        };
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
        self.moto.stop().await;
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
