use clap::{Parser, Subcommand};
use kube::runtime::events::Reporter;
use tracing_subscriber::EnvFilter;

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
    Run {
        /// Log as JSON lines (for log pipelines) instead of human-readable text.
        #[arg(long, env = "NPO_LOG_JSON")]
        log_json: bool,
        /// Name reported on Kubernetes Events; usually the pod name.
        #[arg(long, env = "POD_NAME", default_value = "nomad-pool-operator")]
        instance: String,
        /// Watch pools in this namespace only (default: all namespaces).
        #[arg(long, env = "NPO_NAMESPACE")]
        namespace: Option<String>,
    },
    /// Print the NomadClientPool CustomResourceDefinition as YAML.
    Crd,
}

#[tokio::main]
async fn main() -> anyhow_free::Result {
    match Cli::parse().command {
        Command::Crd => print!("{}", nomad_pool_operator::api::crd_yaml()),
        Command::Run {
            log_json,
            instance,
            namespace,
        } => {
            let filter =
                EnvFilter::try_from_env("NPO_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
            let fmt = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr);
            if log_json {
                fmt.json().init();
            } else {
                fmt.init();
            }
            let client = kube::Client::try_default().await?;
            let reporter = Reporter {
                controller: "nomad-pool-operator".into(),
                instance: Some(instance),
            };
            nomad_pool_operator::controller::run(client, reporter, namespace).await;
        }
    }
    Ok(())
}

/// The binary's only failure is not reaching Kubernetes at start; a boxed
/// error prints it without another dependency.
mod anyhow_free {
    pub type Result = std::result::Result<(), Box<dyn std::error::Error>>;
}
