//! nomad-pool-operator: declarative, crash-safe retirement of Nomad client VMs.
//!
//! The crate is a library with thin binaries: `api` holds the `NomadClientPool`
//! resource types, `nomad` the typed Nomad HTTP client, `provider` the cloud
//! instance-group providers, and `controller` the reconciler (pure planning in
//! `controller::plan`, side effects in `controller::reconcile`).

pub mod api;
pub mod controller;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod nomad;
pub mod provider;
pub mod server;
