//! gce-sim: a fake of the Compute Engine v1 API calls that
//! nomad-pool-operator's GCE provider makes on managed instance groups
//! (zonal and regional): get, listManagedInstances, deleteInstances,
//! abandonInstances, recreateInstances, resize, zone/region operations
//! get and wait, autoscalers get, setInstanceTemplate, and the VMs'
//! instances.get/list (creation times). Its facts come from
//! `shared/reference/gce-mig.md` (cited as §N in the code and tests).
//! Groups are set up, time is moved and faults are injected through a
//! control surface under `/sim/`; see README.md.
//!
//! Run it in-process with [`serve`] or as the `gce-sim` binary. Its wire
//! types (`wire.rs`) are its own; the operator must not depend on it.

pub mod api;
pub mod auth;
pub mod clock;
pub mod control;
pub mod error;
pub mod faults;
pub mod http;
pub mod state;
pub mod wire;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::faults::{Faults, LoggedRequest};
use crate::state::{Timing, World};

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Simulated seconds per real second (0 freezes time).
    pub time_scale: f64,
    /// Simulated start (Unix ns); default: now.
    pub start_time_ns: Option<i64>,
    /// Seed for ids, names and fingerprints.
    pub seed: Option<u64>,
    pub timing: Timing,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:0".parse().expect("literal address"),
            time_scale: 1.0,
            start_time_ns: None,
            seed: None,
            timing: Timing::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("binding {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// Everything the handlers share.
pub struct App {
    pub world: Mutex<World>,
    pub clock: Clock,
    pub faults: Mutex<Faults>,
    pub log: Mutex<Vec<LoggedRequest>>,
    pub seq: AtomicU64,
    pub seed: Option<u64>,
    /// Registered service-account keys; none: no authentication required.
    pub accounts: Mutex<auth::Accounts>,
}

impl App {
    /// The world with its timers run up to the simulated "now".
    pub fn world(&self) -> std::sync::MutexGuard<'_, World> {
        let now = self.clock.now();
        let mut w = self.world.lock().unwrap();
        w.settle(now);
        w
    }
}

/// A running fake.
pub struct Sim {
    addr: SocketAddr,
    app: Arc<App>,
    shutdown: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl Sim {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`: the endpoint to give the SDK's `with_endpoint`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Stops accepting and closes open connections.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.accept.abort();
        let _ = self.accept.await;
    }
}

/// Binds and starts serving.
pub async fn serve(cfg: Config) -> Result<Sim, ServeError> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| ServeError::Bind(cfg.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Bind(cfg.listen, e))?;
    let clock = Clock::new(cfg.start_time_ns, cfg.time_scale);
    let mut world = World::new(cfg.seed, cfg.timing.clone());
    world.now = clock.now();
    let app = Arc::new(App {
        world: Mutex::new(world),
        clock,
        faults: Mutex::new(Faults::default()),
        log: Mutex::new(Vec::new()),
        seq: AtomicU64::new(0),
        seed: cfg.seed,
        accounts: Mutex::new(auth::Accounts::default()),
    });
    let (shutdown, stop_rx) = watch::channel(false);
    let accept = tokio::spawn(accept_loop(listener, app.clone(), stop_rx));
    Ok(Sim {
        addr,
        app,
        shutdown,
        accept,
    })
}

async fn accept_loop(listener: TcpListener, app: Arc<App>, stop: watch::Receiver<bool>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| api::handle(app.clone(), req));
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = stop.changed() => {}
            }
        });
    }
}
