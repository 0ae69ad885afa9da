#![recursion_limit = "256"]
//! nomad-sim: a simulator of the parts of HashiCorp Nomad's HTTP API that
//! nomad-pool-operator uses (nodes, allocations, drain, eligibility, purge,
//! blocking queries, the Node event stream, ACLs), with a simulated cluster
//! behind it and a control surface under `/sim/` for tests and benchmarks.
//!
//! Run it in-process with [`serve`] (bind `127.0.0.1:0`, read
//! [`Sim::addr`], call [`Sim::shutdown`]) or as the `nomad-sim` binary.
//!
//! The operator must not depend on this crate, and this crate does not use
//! the operator's Nomad types: see `wire.rs` for why.

pub mod acl;
pub mod api;
pub mod clock;
pub mod connlimit;
pub mod control;
pub mod drainer;
pub mod events;
pub mod faults;
pub mod filter;
mod goquote;
pub mod http_common;
pub mod scheduler;
pub mod state;
pub mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::acl::{Acl, Policy};
use crate::clock::{Clock, NANOS_PER_SEC};
use crate::faults::Faults;
use crate::state::{Cluster, ClusterConfig};

/// TLS settings (PEM files).
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub region: String,
    pub datacenter: String,
    /// Simulated seconds per real second.
    pub time_scale: f64,
    pub acl_tokens: Vec<(String, Policy)>,
    pub tls: Option<TlsConfig>,
    pub heartbeat_ttl: Duration,
    pub heartbeat_grace: Duration,
    pub node_slots: u32,
    pub seed: Option<u64>,
    /// Simulated start time (Unix ns); default: the real current time.
    pub start_time_ns: Option<i64>,
    pub scenario: Option<control::Scenario>,
    /// Real-time period of the simulation tick.
    pub tick: Duration,
    /// Real-time period of `{}` heartbeats on the event stream.
    pub event_heartbeat: Duration,
    /// Event batches kept for `index=` replays, all topics together
    /// (Nomad's `event_buffer_size`, default 100).
    pub event_buffer_size: usize,
    /// Refuse an event-stream subscription the way Nomad < 1.11.2 did
    /// (plain `403 Permission denied`) instead of Nomad >= 1.11.2's
    /// `200 OK` with the stream headers and a closed, empty body. The agent
    /// then reports version 1.11.1 instead of 1.11.3.
    pub legacy_event_stream_refusal: bool,
    /// Nomad's `limits.http_max_conns_per_client`: concurrent connections
    /// one client IP may hold (default 100, 0 = no limit); see `connlimit`.
    pub http_max_conns_per_client: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            region: "global".into(),
            datacenter: "dc1".into(),
            time_scale: 1.0,
            acl_tokens: Vec::new(),
            tls: None,
            heartbeat_ttl: Duration::from_secs(10),
            heartbeat_grace: Duration::from_secs(10),
            node_slots: 4,
            seed: None,
            start_time_ns: None,
            scenario: None,
            tick: Duration::from_millis(50),
            event_heartbeat: Duration::from_secs(30),
            event_buffer_size: 100,
            legacy_event_stream_refusal: false,
            http_max_conns_per_client: connlimit::DEFAULT_HTTP_MAX_CONNS_PER_CLIENT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// A PEM file (certificate, key or client CA) that does not load.
    #[error("TLS configuration: {}: {source}", path.display())]
    TlsPem {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A client CA certificate the root store refuses.
    #[error("TLS configuration: {}: {source}", path.display())]
    TlsClientCa {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// The client-certificate verifier cannot be built from the CAs.
    #[error("TLS configuration: {0}")]
    TlsClientVerifier(#[source] rustls::server::VerifierBuilderError),
    /// rustls refuses the configuration (protocol versions, key pair).
    #[error("TLS configuration: {0}")]
    TlsConfig(#[source] rustls::Error),
    #[error("scenario: {0}")]
    Scenario(#[source] control::ScenarioError),
}

/// Request counters for `/sim/stats`.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: BTreeMap<String, u64>,
    pub responses: BTreeMap<u16, u64>,
    pub faults: BTreeMap<String, u64>,
}

/// Everything the handlers share.
pub struct App {
    pub cluster: RwLock<Cluster>,
    pub clock: Clock,
    pub acl: Acl,
    pub faults: Mutex<Faults>,
    pub stats: Mutex<Stats>,
    pub cfg: Config,
    /// Blocking queries currently parked (for `/sim/stats` and benchmarks).
    pub waiters: std::sync::atomic::AtomicI64,
    /// Open connections per client IP, and those refused over the limit.
    pub conns: Arc<connlimit::ConnLimiter>,
}

impl App {
    pub fn cluster_config(cfg: &Config) -> ClusterConfig {
        ClusterConfig {
            region: cfg.region.clone(),
            datacenter: cfg.datacenter.clone(),
            heartbeat_ttl_ns: cfg.heartbeat_ttl.as_nanos() as i64,
            heartbeat_grace_ns: cfg.heartbeat_grace.as_nanos() as i64,
            default_slots: cfg.node_slots,
            acls_enabled: !cfg.acl_tokens.is_empty(),
            event_buffer_size: cfg.event_buffer_size,
            seed: cfg.seed,
            nomad_version: if cfg.legacy_event_stream_refusal {
                "1.11.1"
            } else {
                "1.11.3"
            },
        }
    }

    /// Runs the simulation up to the current simulated time.
    pub fn tick(&self) {
        let now = self.clock.now();
        let mut c = self.cluster.write().unwrap();
        // Bounded per tick so one huge batch does not starve readers.
        c.advance_to(now, 50_000);
    }

    /// A write lock with the simulated clock's "now" set. Dropping it ends
    /// the write: pending events go out as one batch.
    pub fn write(&self) -> WriteGuard<'_> {
        let now = self.clock.now();
        let mut c = self.cluster.write().unwrap();
        c.now = now.max(c.now);
        WriteGuard(c)
    }

    /// The Nomad version the agent and its nodes report.
    pub fn nomad_version(&self) -> &'static str {
        if self.cfg.legacy_event_stream_refusal {
            "1.11.1"
        } else {
            "1.11.3"
        }
    }
}

/// The cluster write lock; flushes the event batch of the write on drop.
pub struct WriteGuard<'a>(std::sync::RwLockWriteGuard<'a, Cluster>);

impl std::ops::Deref for WriteGuard<'_> {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.0
    }
}

impl std::ops::DerefMut for WriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.0
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.0.events.flush();
    }
}

/// A running simulator.
pub struct Sim {
    addr: SocketAddr,
    tls: bool,
    app: Arc<App>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sim {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` or `https://ADDR`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Stops accepting, closes open connections and stops the ticker.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

fn load_tls(t: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let pem = |path: &PathBuf| {
        let path = path.clone();
        move |source| ServeError::TlsPem { path, source }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert)
        .map_err(pem(&t.cert))?
        .collect::<Result<_, _>>()
        .map_err(pem(&t.cert))?;
    let key = PrivateKeyDer::from_pem_file(&t.key).map_err(pem(&t.key))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(ServeError::TlsConfig)?;
    let builder = match &t.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(pem(ca))? {
                roots
                    .add(c.map_err(pem(ca))?)
                    .map_err(|source| ServeError::TlsClientCa {
                        path: ca.clone(),
                        source,
                    })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(ServeError::TlsClientVerifier)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(ServeError::TlsConfig)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// Binds the listener. Accepted sockets inherit its send buffer size: a
/// fixed 1 MiB buffer lets a large response (a node's allocations, the node
/// list) go out in one write instead of waiting on the client's delayed ACKs
/// as the default 16 KiB autotuning start does (~12 ms stalls on loopback).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    let _ = sock.set_send_buffer_size(1 << 20);
    sock.bind(addr)?;
    sock.listen(4096)
}

/// Starts the simulator: binds, loads the scenario, starts the ticker.
pub async fn serve(cfg: Config) -> Result<Sim, ServeError> {
    let tls = cfg.tls.as_ref().map(load_tls).transpose()?;
    let listener = bind(cfg.listen).map_err(|e| ServeError::Bind(cfg.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Bind(cfg.listen, e))?;
    let clock = Clock::new(cfg.start_time_ns, cfg.time_scale);
    let mut cluster = Cluster::new(App::cluster_config(&cfg), 1);
    cluster.now = clock.now();
    let app = Arc::new(App {
        cluster: RwLock::new(cluster),
        clock,
        acl: Acl::new(&cfg.acl_tokens),
        faults: Mutex::new(Faults::default()),
        stats: Mutex::new(Stats::default()),
        cfg: cfg.clone(),
        waiters: std::sync::atomic::AtomicI64::new(0),
        conns: connlimit::ConnLimiter::new(cfg.http_max_conns_per_client),
    });
    if let Some(sc) = &cfg.scenario {
        control::apply_scenario(&app, sc).map_err(ServeError::Scenario)?;
    }
    let (shutdown, _) = watch::channel(false);
    let mut tasks = Vec::new();

    // Simulation ticker: processes due events from the timer heap.
    {
        let app = app.clone();
        let period = cfg.tick;
        tasks.push(tokio::spawn(async move {
            let mut iv = tokio::time::interval(period);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                iv.tick().await;
                let app2 = app.clone();
                // The write lock is a std lock: keep it off the async workers.
                let _ = tokio::task::spawn_blocking(move || app2.tick()).await;
            }
        }));
    }

    // Accept loop.
    {
        let app = app.clone();
        let shutdown_rx = shutdown.subscribe();
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let tls = tls.clone();
                let counted = match app.conns.accept(peer.ip()) {
                    Ok(counted) => counted,
                    Err(refused) => {
                        tokio::spawn(refuse(stream, tls, refused));
                        continue;
                    }
                };
                let app = app.clone();
                let mut stop = shutdown_rx.clone();
                tokio::spawn(async move {
                    // Counted until the connection closes, however it ends.
                    let _counted = counted;
                    let svc = service_fn(move |req| api::handle(app.clone(), req, peer));
                    let builder = http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            let Ok(s) = acceptor.accept(stream).await else {
                                return;
                            };
                            let conn = builder.serve_connection(TokioIo::new(s), svc);
                            tokio::select! {
                                _ = conn => {}
                                _ = stop.changed() => {}
                            }
                        }
                        None => {
                            let conn = builder.serve_connection(TokioIo::new(stream), svc);
                            tokio::select! {
                                _ = conn => {}
                                _ = stop.changed() => {}
                            }
                        }
                    }
                });
            }
        }));
    }
    Ok(Sim {
        addr,
        tls: cfg.tls.is_some(),
        app,
        shutdown,
        tasks,
    })
}

/// A connection over the limit: Nomad's 429 (through TLS on an HTTPS
/// listener) when its rate limit allows, within a 10 ms deadline, then
/// closed, before any request is read (see `connlimit`).
async fn refuse(
    stream: tokio::net::TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    refused: connlimit::Refused,
) {
    use tokio::io::AsyncWriteExt;
    if refused == connlimit::Refused::Close {
        return;
    }
    let answer = connlimit::too_many_requests_response();
    let write = async {
        match tls {
            Some(acceptor) => {
                if let Ok(mut s) = acceptor.accept(stream).await {
                    let _ = s.write_all(&answer).await;
                    let _ = s.shutdown().await;
                }
            }
            None => {
                let mut s = stream;
                let _ = s.write_all(&answer).await;
            }
        }
    };
    let _ = tokio::time::timeout(connlimit::REFUSAL_WRITE_DEADLINE, write).await;
}

/// Seconds (f64) to simulated nanoseconds.
pub fn secs_to_ns(s: f64) -> i64 {
    (s * NANOS_PER_SEC as f64) as i64
}
