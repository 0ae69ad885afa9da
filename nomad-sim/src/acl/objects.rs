//! Policies, roles and tokens as objects, and their JSON as Nomad's ACL
//! endpoints write it (`Hash` as base64, zero times as `null`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Rules, base64};

#[derive(Debug, Clone)]
pub struct AclPolicy {
    pub name: String,
    pub description: String,
    /// Raw rules text as stored (a JSON policy serialized to a string).
    pub rules: String,
    pub parsed: Rules,
    pub hash: [u8; 32],
    pub create_index: u64,
    pub modify_index: u64,
}

impl AclPolicy {
    pub fn to_json(&self) -> Value {
        json!({
            "Name": self.name,
            "Description": self.description,
            "Rules": self.rules,
            "RulesJSON": self.parsed.to_json(&self.rules),
            "JobACL": null,
            "Hash": base64(&self.hash),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }

    pub fn stub(&self) -> Value {
        json!({
            "Name": self.name,
            "Description": self.description,
            "JobACL": null,
            "Hash": base64(&self.hash),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }
}

#[derive(Debug, Clone)]
pub struct AclRole {
    pub id: String,
    pub name: String,
    pub description: String,
    pub policies: Vec<String>,
    pub hash: [u8; 32],
    pub create_index: u64,
    pub modify_index: u64,
}

impl AclRole {
    pub fn to_json(&self) -> Value {
        json!({
            "ID": self.id,
            "Name": self.name,
            "Description": self.description,
            "Policies": self.policies.iter().map(|p| json!({"Name": p})).collect::<Vec<_>>(),
            "Hash": base64(&self.hash),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }
}

#[derive(Debug, Clone)]
pub struct AclToken {
    pub accessor: String,
    pub secret: String,
    pub name: String,
    /// `client` or `management`.
    pub kind: String,
    /// `None` renders as `null` (management tokens).
    pub policies: Option<Vec<String>>,
    /// Linked role IDs.
    pub roles: Vec<String>,
    pub hash: [u8; 32],
    /// Unix ns.
    pub create_time: i64,
    pub create_index: u64,
    pub modify_index: u64,
}

impl AclToken {
    pub(super) fn anonymous() -> AclToken {
        AclToken {
            accessor: "anonymous".into(),
            secret: String::new(),
            name: "Anonymous Token".into(),
            kind: "client".into(),
            policies: Some(vec!["anonymous".into()]),
            roles: vec![],
            hash: [0; 32],
            create_time: i64::MIN,
            create_index: 0,
            modify_index: 0,
        }
    }

    pub(super) fn acls_disabled() -> AclToken {
        AclToken {
            accessor: "acls-disabled".into(),
            secret: String::new(),
            name: "ACLs disabled token".into(),
            kind: "client".into(),
            policies: None,
            roles: vec![],
            hash: [0; 32],
            create_time: i64::MIN,
            create_index: 0,
            modify_index: 0,
        }
    }

    fn is_builtin(&self) -> bool {
        self.create_time == i64::MIN
    }

    /// `ACLToken.MarshalJSON`: `ExpirationTTL` as a Go duration string (empty
    /// when 0), zero times as `null` (go-msgpack's JSON handle), `Hash` as
    /// base64, role links with the role's current name.
    pub fn to_json(&self, roles: &BTreeMap<String, AclRole>) -> Value {
        let links: Value = if self.is_builtin() {
            Value::Null
        } else {
            self.roles
                .iter()
                .filter_map(|id| roles.get(id))
                .map(|r| json!({"ID": r.id, "Name": r.name}))
                .collect()
        };
        json!({
            "ExpirationTTL": "",
            "AccessorID": self.accessor,
            "SecretID": self.secret,
            "Name": self.name,
            "Type": self.kind,
            "Policies": self.policies,
            "Roles": links,
            "Global": false,
            "Hash": if self.is_builtin() { Value::Null } else { Value::String(base64(&self.hash)) },
            "CreateTime": if self.is_builtin() { Value::Null } else { Value::String(crate::clock::rfc3339(self.create_time)) },
            "ExpirationTime": null,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }
}
