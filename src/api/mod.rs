//! The `NomadClientPool` custom resource (group `nomadpool.dev`).

pub mod v1alpha1;

pub use v1alpha1::*;

use kube::CustomResourceExt;

/// The CRD as YAML, exactly as committed under `crds/`.
pub fn crd_yaml() -> String {
    let crd = NomadClientPool::crd();
    serde_yaml::to_string(&crd).expect("a CustomResourceDefinition always serializes")
}

#[cfg(test)]
mod tests {
    /// The committed CRD is what `kubectl apply` installs; it must never drift
    /// from the Rust types. Regenerate with `cargo run -- crd > crds/nomadclientpools.nomadpool.dev.yaml`.
    #[test]
    fn committed_crd_matches_the_types() {
        let committed = include_str!("../../crds/nomadclientpools.nomadpool.dev.yaml");
        assert!(
            committed == super::crd_yaml(),
            "crds/nomadclientpools.nomadpool.dev.yaml is stale: run `cargo run -- crd > crds/nomadclientpools.nomadpool.dev.yaml`"
        );
    }
}
