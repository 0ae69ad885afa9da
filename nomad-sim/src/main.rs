//! `nomad-sim`: see README.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use nomad_sim::acl::Policy;
use nomad_sim::{Config, TlsConfig, clock::parse_go_duration, control::Scenario};

#[derive(Parser, Debug)]
#[command(
    name = "nomad-sim",
    about = "Simulated HashiCorp Nomad HTTP API for tests and benchmarks"
)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:4646")]
    listen: SocketAddr,
    #[arg(long, default_value = "global")]
    region: String,
    /// Default datacenter of registered nodes.
    #[arg(long, default_value = "dc1")]
    datacenter: String,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// `SECRET=POLICY` (management, node-write, node-read, deny); repeatable.
    /// Without any, ACLs are disabled.
    #[arg(long = "acl-token")]
    acl_tokens: Vec<String>,
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA.
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Scenario file (JSON): nodes, allocations and workloads to start with.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Seed for deterministic IDs.
    #[arg(long)]
    seed: Option<u64>,
    /// Heartbeat TTL (Go duration, simulated time).
    #[arg(long, default_value = "10s")]
    heartbeat_ttl: String,
    /// Grace after the TTL before a silent node is marked down.
    #[arg(long, default_value = "10s")]
    heartbeat_grace: String,
    /// Allocation slots per node (non-system allocations).
    #[arg(long, default_value_t = 4)]
    node_slots: u32,
    /// Nomad's `limits.http_max_conns_per_client`: concurrent connections
    /// per client IP; 0 = no limit.
    #[arg(long, default_value_t = nomad_sim::connlimit::DEFAULT_HTTP_MAX_CONNS_PER_CLIENT)]
    http_max_conns_per_client: usize,
}

fn dur(s: &str, what: &str) -> Duration {
    parse_go_duration(s).unwrap_or_else(|| {
        eprintln!("nomad-sim: invalid {what} {s:?}");
        std::process::exit(2)
    })
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let a = Args::parse();
    if !(a.time_scale >= 0.0 && a.time_scale.is_finite()) {
        eprintln!("nomad-sim: --time-scale must be a number >= 0");
        std::process::exit(2);
    }
    let mut tokens = Vec::new();
    for t in &a.acl_tokens {
        let Some((secret, policy)) = t.split_once('=') else {
            eprintln!("nomad-sim: --acl-token wants SECRET=POLICY, got {t:?}");
            std::process::exit(2);
        };
        let policy: Policy = policy.parse().unwrap_or_else(|e| {
            eprintln!("nomad-sim: {e}");
            std::process::exit(2)
        });
        tokens.push((secret.to_string(), policy));
    }
    let scenario = a.scenario.as_ref().map(|p| {
        let text = std::fs::read_to_string(p).unwrap_or_else(|e| {
            eprintln!("nomad-sim: reading {}: {e}", p.display());
            std::process::exit(2)
        });
        serde_json::from_str::<Scenario>(&text).unwrap_or_else(|e| {
            eprintln!("nomad-sim: scenario {}: {e}", p.display());
            std::process::exit(2)
        })
    });
    let cfg = Config {
        listen: a.listen,
        region: a.region,
        datacenter: a.datacenter,
        time_scale: a.time_scale,
        acl_tokens: tokens,
        tls: a.tls_cert.map(|cert| TlsConfig {
            cert,
            key: a.tls_key.expect("clap requires tls_key"),
            client_ca: a.tls_client_ca,
        }),
        heartbeat_ttl: dur(&a.heartbeat_ttl, "--heartbeat-ttl"),
        heartbeat_grace: dur(&a.heartbeat_grace, "--heartbeat-grace"),
        node_slots: a.node_slots,
        http_max_conns_per_client: a.http_max_conns_per_client,
        seed: a.seed,
        scenario,
        ..Config::default()
    };
    let sim = match nomad_sim::serve(cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nomad-sim: {e}");
            std::process::exit(1);
        }
    };
    println!("nomad-sim listening on {}", sim.url());
    tracing::info!(addr = %sim.addr(), "ready");
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
}
