use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kube::runtime::events::Reporter;
use nomad_pool_operator::{controller, leader, server};
use tracing::{error, info};

/// mimalloc (its v2 line) instead of glibc's malloc. The operator allocates
/// and frees small objects at a high rate on two threads (JSON from watches
/// and Nomad answers, the plan's maps): glibc's malloc and free were about a
/// fifth of its CPU samples in a 5,000-client scale-in, and Debian's
/// mimalloc 2.0 preloaded under the same binary took its CPU from
/// 12.9-13.6 s to 12.1 s. The v3
/// line (the crate's default) peaked at 110 MiB there, past the 100 MiB a
/// pool of 5,000 is held to (BENCHMARKS.md, sixteenth pass).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Kubernetes operator that retires Nomad client VMs safely.
#[derive(Parser)]
#[command(name = "nomad-pool-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the cluster in KUBECONFIG or the pod's service account.
    Run(RunArgs),
    /// Print the NomadClientPool CustomResourceDefinition as YAML.
    Crd,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Log as JSON lines (for log pipelines) instead of human-readable text.
    #[arg(long, env = "NPO_LOG_JSON")]
    log_json: bool,
    /// This replica's name, on Events and in the leader lease; usually the pod name.
    #[arg(long, env = "POD_NAME", default_value = "nomad-pool-operator")]
    instance: String,
    /// Watch pools in these namespaces only (repeat the flag or separate
    /// with commas); default: all namespaces. The operator needs rights in
    /// the listed namespaces only (deploy/namespaced/).
    #[arg(long = "namespace", env = "NPO_NAMESPACE", value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Namespaces whose pools may use the operator's own cloud identity (IRSA,
    /// environment, instance metadata) instead of a credentials Secret: a
    /// comma list, `*` for every namespace. Default: none.
    #[arg(
        long,
        env = "NPO_AMBIENT_CREDENTIALS_NAMESPACES",
        value_delimiter = ','
    )]
    ambient_credentials_namespaces: Vec<String>,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "NPO_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Elect a leader among replicas through a Lease; only the leader acts.
    #[arg(long, env = "NPO_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "nomad-pool-system")]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "NPO_LEASE_NAME", default_value = "nomad-pool-operator")]
    lease_name: String,
    /// Seconds after which a dead leader's lease is taken over.
    #[arg(long, env = "NPO_LEASE_DURATION", default_value_t = 15)]
    lease_duration: u64,
    /// Most connections held open to one Nomad agent, by all pools together.
    /// Keep it under the agent's `limits.http_max_conns_per_client` (100 by
    /// default), which counts every connection from this pod's IP.
    #[arg(long, env = "NPO_NOMAD_MAX_CONNECTIONS",
          default_value_t = nomad_pool_operator::nomad::DEFAULT_MAX_CONNECTIONS as u64,
          value_parser = clap::value_parser!(u64).range(nomad_pool_operator::nomad::MIN_MAX_CONNECTIONS as u64..))]
    nomad_max_connections: u64,
    /// Most cloud terminate calls one pool has in flight. Cloud APIs
    /// throttle mutating calls per account; raise it where the quota allows
    /// more and wide scale-ins should go faster.
    #[arg(long, env = "NPO_TERMINATE_CALLS_PER_POOL",
          default_value_t = nomad_pool_operator::controller::runtime::TERMINATE_CALLS as u64,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    terminate_calls_per_pool: u64,

    /// Least time between two reconciles of one pool that its Nomad, cloud
    /// and retirement watches ask for, in milliseconds. The first change
    /// after a quiet spell is acted on at once; the changes that follow
    /// within this time are acted on together. Higher: less CPU during large scale-ins,
    /// each step of a retirement up to this much later.
    #[arg(long, env = "NPO_MIN_RECONCILE_INTERVAL_MS", default_value_t = 250)]
    min_reconcile_interval_ms: u64,
    /// Threads that run the operator's tasks. One by default: the work is
    /// waiting on Nomad, the cloud and the API server in many small tasks,
    /// and a second thread spends much of its time waking and parking
    /// (BENCHMARKS.md, nineteenth pass: 11 % less CPU at 5,000 clients, and
    /// a p99 no worse at 20,000, where the API server shares the cores).
    #[arg(long, env = "NPO_WORKER_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    worker_threads: u16,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", nomad_pool_operator::api::crd_yaml());
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(usize::from(args.worker_threads))
                .enable_all()
                .build();
            let runtime = match runtime {
                Ok(runtime) => runtime,
                Err(e) => {
                    // Before `run` sets up logging.
                    eprintln!("starting the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(args: RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    // NPO_LOG, except that credential-printing targets stay at info.
    nomad_pool_operator::logging::init(args.log_json);
    nomad_pool_operator::nomad::set_max_connections(
        usize::try_from(args.nomad_max_connections).unwrap_or(usize::MAX),
    );
    info!(
        max = args.nomad_max_connections,
        "connections per Nomad agent"
    );
    nomad_pool_operator::controller::runtime::set_terminate_calls(
        usize::try_from(args.terminate_calls_per_pool).unwrap_or(usize::MAX),
    );
    let ready = server::Readiness::default();
    let bound = server::serve(args.metrics_addr, ready.clone()).await?;
    info!(%bound, "serving /metrics, /healthz and /readyz");

    let client = kube_client().await?;
    ready.set_ready();
    let reporter = Reporter {
        controller: "nomad-pool-operator".into(),
        instance: Some(args.instance.clone()),
    };
    let ambient =
        controller::authority::AmbientCredentials::from_list(&args.ambient_credentials_namespaces);
    info!(%ambient, "namespaces that may use the operator's own cloud identity");
    let namespaces = watched_namespaces(&args.namespaces);
    let work = || {
        controller::run(
            client.clone(),
            reporter,
            namespaces.clone(),
            ambient.clone(),
            Duration::from_millis(args.min_reconcile_interval_ms),
        )
    };
    if !args.leader_elect {
        work().await;
        return Ok(());
    }
    // Two replicas with the same pod name must still be told apart.
    let identity = format!("{}-{:08x}", args.instance, rand::random::<u32>());
    let settings = leader::LeaseSettings {
        namespace: args.lease_namespace.clone(),
        name: args.lease_name.clone(),
        identity,
        duration: Duration::from_secs(args.lease_duration),
        grace: Duration::from_secs((args.lease_duration / 3).max(1)),
    };
    leader::run_as_leader(client.clone(), settings, work).await?;
    Ok(())
}

/// The `--namespace` values, without blanks (a trailing comma) or repeats.
fn watched_namespaces(given: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for ns in given.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if !out.iter().any(|o| o == ns) {
            out.push(ns.to_string());
        }
    }
    out
}

/// The API server's client. Every request names the operator in its
/// User-Agent: the API server records it as the field manager of writes that
/// name none (kube's finalizer helper sends its patches so, and they showed
/// up as `unknown` in the pool's managedFields), and audit logs show it.
async fn kube_client() -> Result<kube::Client, Box<dyn std::error::Error>> {
    let mut config = kube::Config::infer().await?;
    config.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_static(concat!(
            "nomad-pool-operator/",
            env!("CARGO_PKG_VERSION")
        )),
    ));
    Ok(kube::Client::try_from(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespaces(args: &[&str]) -> Vec<String> {
        let cli = Cli::try_parse_from(["nomad-pool-operator", "run"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Run(a) => watched_namespaces(&a.namespaces),
            Command::Crd => unreachable!(),
        }
    }

    #[test]
    fn namespaces_are_repeated_flags_or_comma_lists() {
        assert!(namespaces(&[]).is_empty(), "no flag: every namespace");
        assert_eq!(namespaces(&["--namespace", "ci"]), ["ci"]);
        assert_eq!(
            namespaces(&[
                "--namespace",
                "ci",
                "--namespace=batch,gpu",
                "--namespace",
                "ci,"
            ]),
            ["ci", "batch", "gpu"]
        );
    }
}
