//! go-bexpr filter expressions for Nomad list endpoints.
//!
//! Quoting follows go-bexpr's grammar, not Go's string syntax: a
//! double-quoted literal is `'"' (!'"' .)* '"'` passed to `strconv.Unquote`.
//! The parser stops at the first `"` even after a backslash, so `\"` cannot
//! be used; a quote is written as `\x22` instead, which `Unquote` turns back
//! into `"`. Backslashes and control characters are escaped for `Unquote`.

use std::collections::BTreeMap;
use std::fmt::Write;

/// Which Nomad nodes belong to a pool. Empty fields do not constrain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolSelector {
    pub node_pool: Option<String>,
    pub node_class: Option<String>,
    /// A node matches if it is in any of these.
    pub datacenters: Vec<String>,
    /// A node matches if it has every one of these `Meta` entries.
    pub meta: BTreeMap<String, String>,
}

impl PoolSelector {
    /// The same test as [`node_pool_filter`], applied locally to a node that
    /// arrived on the event stream (which is not filtered server-side).
    pub fn matches(&self, node: &super::Node) -> bool {
        self.node_pool.as_ref().is_none_or(|p| *p == node.node_pool)
            && self
                .node_class
                .as_ref()
                .is_none_or(|c| *c == node.node_class)
            && (self.datacenters.is_empty() || self.datacenters.contains(&node.datacenter))
            && self.meta.iter().all(|(k, v)| node.meta.get(k) == Some(v))
    }
}

/// The `filter` for `GET /v1/nodes` selecting `sel`'s nodes. Nomad evaluates
/// it against the full node, so `Meta` works even though the list stub lacks
/// it. An empty selector yields `""`, which the client sends as no filter.
pub fn node_pool_filter(sel: &PoolSelector) -> String {
    let mut terms = Vec::new();
    if let Some(pool) = &sel.node_pool {
        terms.push(format!("NodePool == {}", quote(pool)));
    }
    if let Some(class) = &sel.node_class {
        terms.push(format!("NodeClass == {}", quote(class)));
    }
    // `in` needs a collection on its right, so a list of scalars becomes an
    // `or` group.
    match sel.datacenters.as_slice() {
        [] => {}
        [dc] => terms.push(format!("Datacenter == {}", quote(dc))),
        dcs => {
            let alternatives: Vec<_> = dcs
                .iter()
                .map(|dc| format!("Datacenter == {}", quote(dc)))
                .collect();
            terms.push(format!("({})", alternatives.join(" or ")));
        }
    }
    for (key, value) in &sel.meta {
        terms.push(format!("Meta[{}] == {}", quote(key), quote(value)));
    }
    terms.join(" and ")
}

/// Filter for `GET /v1/allocations` matching one node's allocations.
pub fn allocations_on_node_filter(node_id: &str) -> String {
    format!("NodeID == {}", quote(node_id))
}

/// A go-bexpr string literal denoting exactly `s`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str(r"\x22"),
            '\n' => out.push_str(r"\n"),
            '\t' => out.push_str(r"\t"),
            // Go's Unquote rejects raw newlines and we keep every control
            // character out of the URL-encoded filter for readability.
            c if c.is_ascii_control() => {
                let _ = write!(out, r"\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_selector_is_no_filter() {
        assert_eq!(node_pool_filter(&PoolSelector::default()), "");
    }

    #[test]
    fn single_terms() {
        let sel = PoolSelector {
            node_pool: Some("ci".into()),
            ..Default::default()
        };
        assert_eq!(node_pool_filter(&sel), r#"NodePool == "ci""#);

        let sel = PoolSelector {
            datacenters: vec!["dc1".into()],
            ..Default::default()
        };
        assert_eq!(node_pool_filter(&sel), r#"Datacenter == "dc1""#);
    }

    #[test]
    fn full_selector() {
        let sel = PoolSelector {
            node_pool: Some("ci".into()),
            node_class: Some("linux".into()),
            datacenters: vec!["dc1".into(), "dc2".into()],
            meta: BTreeMap::from([
                ("team".into(), "build".into()),
                ("env".into(), "prod".into()),
            ]),
        };
        assert_eq!(
            node_pool_filter(&sel),
            r#"NodePool == "ci" and NodeClass == "linux" and (Datacenter == "dc1" or Datacenter == "dc2") and Meta["env"] == "prod" and Meta["team"] == "build""#
        );
    }

    #[test]
    fn quoting_escapes_for_go_unquote() {
        assert_eq!(quote("plain"), r#""plain""#);
        assert_eq!(quote(r#"a"b"#), r#""a\x22b""#);
        assert_eq!(quote(r"C:\pool"), r#""C:\\pool""#);
        assert_eq!(quote("l1\nl2\t\r"), r#""l1\nl2\t\x0d""#);
        assert_eq!(quote("zoné"), "\"zoné\"");
        // Injection attempt stays inside one literal: no bare quote survives.
        let evil = r#"ci" or NodePool != ""#;
        let q = quote(evil);
        assert_eq!(q.matches('"').count(), 2);
        assert_eq!(q, r#""ci\x22 or NodePool != \x22""#);
    }

    #[test]
    fn meta_keys_are_quoted_too() {
        let sel = PoolSelector {
            meta: BTreeMap::from([(r#"we"ird"#.into(), "v".into())]),
            ..Default::default()
        };
        assert_eq!(node_pool_filter(&sel), r#"Meta["we\x22ird"] == "v""#);
    }

    #[test]
    fn node_id_filter() {
        assert_eq!(
            allocations_on_node_filter("f7476465-4d6e"),
            r#"NodeID == "f7476465-4d6e""#
        );
    }
}
