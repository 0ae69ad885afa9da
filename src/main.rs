use clap::{Parser, Subcommand};

/// Kubernetes operator that retires Nomad client VMs safely.
#[derive(Parser)]
#[command(name = "nomad-pool-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the NomadClientPool CustomResourceDefinition as YAML.
    Crd,
}

fn main() {
    match Cli::parse().command {
        Command::Crd => print!("{}", nomad_pool_operator::api::crd_yaml()),
    }
}
