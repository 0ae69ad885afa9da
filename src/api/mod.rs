//! The custom resources of group `nomadpool.dev`: `NomadClientPool` and
//! `NomadClientRetirement`.

pub mod v1alpha1;

pub use v1alpha1::*;

use kube::CustomResourceExt;

/// The CRDs, each as YAML and the file under `crds/` it is committed as.
pub fn crds() -> [(&'static str, String); 2] {
    let yaml =
        |crd| serde_yaml::to_string(&crd).expect("a CustomResourceDefinition always serializes");
    [
        (
            "nomadclientpools.nomadpool.dev.yaml",
            yaml(NomadClientPool::crd()),
        ),
        (
            "nomadclientretirements.nomadpool.dev.yaml",
            yaml(NomadClientRetirement::crd()),
        ),
    ]
}

/// Every CRD as one multi-document YAML stream (what `crd` prints).
pub fn crd_yaml() -> String {
    crds()
        .iter()
        .map(|(_, yaml)| format!("---\n{yaml}"))
        .collect()
}

#[cfg(test)]
mod tests {
    /// The committed CRDs are what `kubectl apply` installs; they must never
    /// drift from the Rust types. Regenerate with `make crds`.
    #[test]
    fn committed_crds_match_the_types() {
        // The checkout under test, read at run time: checkouts share the
        // build cache, and a binary reused from another one would compare
        // the types with that checkout's files.
        let dir =
            std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"))
                .join("crds");
        for (file, yaml) in super::crds() {
            let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            assert!(
                committed == yaml,
                "crds/{file} is stale or missing: run `make crds`"
            );
        }
    }
}
