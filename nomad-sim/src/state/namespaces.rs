//! Namespaces (`structs.Namespace`): the `default` one every cluster has,
//! and those the control surface creates for ACL and filter tests.

use super::*;

/// A namespace (`structs.Namespace`; only what the simulator uses).
#[derive(Debug, Clone)]
pub struct NamespaceRec {
    pub name: String,
    pub description: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl NamespaceRec {
    pub fn to_json(&self) -> serde_json::Value {
        let mut h = Vec::new();
        h.extend_from_slice(self.name.as_bytes());
        h.extend_from_slice(self.description.as_bytes());
        serde_json::json!({
            "Name": self.name,
            "Description": self.description,
            "Quota": "",
            "Capabilities": null,
            "NodePoolConfiguration": null,
            "VaultConfiguration": null,
            "ConsulConfiguration": null,
            "Meta": null,
            "Hash": crate::acl::base64(&crate::acl::blake2b_256(&h)),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }
}

impl Cluster {
    /// Creates a namespace (`POST /sim/namespaces`); an existing one keeps
    /// its create index and gets the new description.
    pub fn upsert_namespace(&mut self, name: &str, description: &str) -> Result<u64, StateError> {
        // structs.Namespace.Validate: validNamespaceName.
        let ok = (1..=128).contains(&name.len())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(StateError::InvalidNamespaceName { name: name.into() });
        }
        let idx = self.next_index();
        let rec = self
            .namespaces
            .entry(name.to_string())
            .or_insert_with(|| NamespaceRec {
                name: name.into(),
                description: String::new(),
                create_index: idx,
                modify_index: idx,
            });
        rec.description = description.into();
        rec.modify_index = idx;
        self.namespaces_index = idx;
        Ok(idx)
    }
}
