//! Test harness of nomad-pool-operator, shared by its end-to-end tests
//! (`tests/`), the scale-in benchmark (`benches/scale_in/`), the demo
//! (`examples/demo/`) and nomad-sim's TLS tests.
//!
//! A real kube-apiserver + etcd and a moto server (started once per test run
//! by `tests/env/up.sh`), and per test its own namespace, its own Nomad
//! simulator, its own Auto Scaling group (or managed instance group in its
//! own gce-sim), a "cloud bridge" that makes the
//! simulator's nodes follow the group's instances the way real VMs and Nomad
//! clients do, and the operator binary running as a child process.
//!
//! A dependency that cannot start fails the test with its log; nothing is skipped.
//!
//! Rooms: `env` (the environment file, waiting, naming), `cluster`
//! (Kubernetes clients, CRD, namespaces, Secrets), `aws` (groups in moto, the
//! ownership tag), `gce` (managed instance groups in a private gce-sim, its
//! service-account key, the GCE bridge), `moto` (a private moto server), `sim` (the simulator, the
//! bridge, request counts), `world` (one test's world), `retirements` (a
//! pool's status with its retirement objects, as tests read it), `operator`
//! (the binary as a process), `procstat` (CPU and memory from /proc), `proxy`
//! (fault-injecting proxies), `pki` (throw-away certificates), `deploy` (the
//! install manifests, the operator as their ServiceAccount), `faults` (what
//! the crash and fault tests share, a private control plane), `tools` (helm
//! and promtool, for the chart and alert tests), `promql` (the exposition
//! format and PromQL references, for the monitoring tests). Everything a
//! test uses often is re-exported here, so `use npo_testkit::*` is enough.
//! [`on_both_clouds!`] turns one test body into a test per cloud.

pub mod aws;
pub mod cluster;
pub mod deploy;
pub mod env;
pub mod faults;
pub mod gce;
pub mod gitops;

pub mod moto;
pub mod operator;
pub mod pki;
pub mod procstat;
pub mod promql;
pub mod proxy;
pub mod retirements;
pub mod sim;
pub mod tools;
pub mod world;

pub use crate::aws::{
    Group, Instance, OWNER_TAG, asg_client, asg_client_at, create_group, create_queue,
    create_template_group, describe_group, ec2_client, moto_endpoint, put_terminating_hook,
    sqs_client, tag_group,
};
pub use crate::cluster::{
    CRD_NAME, client_from, condition, create_aws_secret, create_namespace, create_secret,
    delete_namespace, install_crd, kube_client, merge, pool_secret, wait_crd_established,
};
pub use crate::env::{
    env, env_var, free_port, log_dir, read_env_file, repo_root, unique, wait_for,
};
pub use crate::gce::{GCE_PROJECT, GCE_SECRET, GCE_ZONE, GceCloud};
pub use crate::gitops::{Verdict, argo_health, kstatus};
pub use crate::operator::{Operator, OperatorCmd, operator_bin};
pub use crate::retirements::{POOL_LABEL, PoolView};
pub use crate::sim::{Bridge, Sim, SimOptions, delta, total};
pub use crate::world::{Cloud, World, WorldOptions, setup, setup_on, setup_with};

/// One end-to-end test per cloud from one body: for every `name` given,
/// `aws::name` and `gce::name`, each a multi-threaded `#[tokio::test]`
/// that awaits `name(cloud)` with [`Cloud::Aws`] or [`Cloud::Gce`]. The
/// body is an `async fn name(cloud: Cloud)` at the top of the test file,
/// which usually starts with `setup_on(cloud, ...)` and reads the group
/// through `World::group`. Filter one cloud with `cargo test -- gce::`.
///
/// ```ignore
/// npo_testkit::on_both_clouds!(scale_in_terminates_with_decrement);
///
/// async fn scale_in_terminates_with_decrement(cloud: npo_testkit::Cloud) {
///     let w = npo_testkit::setup_on(cloud, "scale-in", 4).await;
///     // ...
/// }
/// ```
#[macro_export]
macro_rules! on_both_clouds {
    ($($name:ident),* $(,)?) => {
        mod aws {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name($crate::Cloud::Aws).await
                }
            )*
        }
        mod gce {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    super::$name($crate::Cloud::Gce).await
                }
            )*
        }
    };
}
