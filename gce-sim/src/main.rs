//! `gce-sim`: see README.md.

use std::net::SocketAddr;

use clap::Parser;
use gce_sim::Config;
use gce_sim::state::Timing;

#[derive(Parser, Debug)]
#[command(
    name = "gce-sim",
    about = "A fake of the Compute Engine API's managed instance group calls, for tests"
)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: SocketAddr,
    /// Simulated seconds per real second (0 freezes time; see /sim/time).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Seed for ids, instance names and fingerprints.
    #[arg(long)]
    seed: Option<u64>,
    /// Polls an operation answers RUNNING before it can be DONE.
    #[arg(long, default_value_t = 1)]
    operation_polls: u32,
    /// Simulated seconds before an operation can be DONE.
    #[arg(long, default_value_t = 0.0)]
    operation_duration_s: f64,
    /// Simulated seconds an instance stays DELETING.
    #[arg(long, default_value_t = 30.0)]
    delete_duration_s: f64,
    /// Leave `error.status` out of HTTP error bodies.
    #[arg(long)]
    no_error_status: bool,
}

#[tokio::main]
async fn main() {
    let a = Args::parse();
    if !(a.time_scale >= 0.0 && a.time_scale.is_finite()) {
        eprintln!("gce-sim: --time-scale must be a number >= 0");
        std::process::exit(2);
    }
    let cfg = Config {
        listen: a.listen,
        time_scale: a.time_scale,
        seed: a.seed,
        timing: Timing {
            operation_polls: a.operation_polls,
            operation_duration_s: a.operation_duration_s,
            delete_duration_s: a.delete_duration_s,
            error_status: !a.no_error_status,
            ..Timing::default()
        },
        ..Config::default()
    };
    let sim = match gce_sim::serve(cfg).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gce-sim: {e}");
            std::process::exit(1);
        }
    };
    println!("gce-sim listening on {}", sim.url());
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
}
