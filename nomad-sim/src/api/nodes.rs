//! `/v1/nodes` and `/v1/node/:id[/...]`.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{Map, Value};

use super::{
    ApiError, Resp, authorize, block_until, json_bytes, paginate, parse_query, parse_write,
    read_body, set_meta, text, to_json,
};
use crate::App;
use crate::acl::Capability;
use crate::filter::{self, Expr};
use crate::state::NodeRec;
use crate::wire::{DrainRequest, EligibilityRequest, Node, NodePurgeResponse, StrMap};

/// The `filter` parameter, parsed. A bad one is Nomad's 400: the endpoint
/// wraps `paginator.NewPaginator`'s error, which wraps go-bexpr's.
pub(super) fn parse_filter(f: &Option<String>) -> Result<Option<Expr>, ApiError> {
    match f {
        Some(s) if !s.is_empty() => filter::parse(s).map(Some).map_err(|e| {
            ApiError::BadRequest(format!(
                "failed to create result paginator: failed to read filter expression: {e}"
            ))
        }),
        _ => Ok(None),
    }
}

/// What of a node a filter reads: its top-level fields, and of the string
/// maps `Attributes` and `Meta` only the keys it names when that is all it
/// reads of them (None: the whole map).
struct Reads {
    fields: Vec<String>,
    attributes: Option<Vec<String>>,
    meta: Option<Vec<String>>,
}

impl Reads {
    fn of(e: &Expr) -> Reads {
        let mut fields = Vec::new();
        e.fields(&mut fields);
        let keys = |f: &str| {
            let mut out = Vec::new();
            e.map_keys(f, &mut out).then_some(out)
        };
        Reads {
            fields,
            attributes: keys("Attributes"),
            meta: keys("Meta"),
        }
    }
}

/// A string map as a filter sees it: whole, or only the keys it reads (a
/// missing key stays missing).
fn str_map(m: Option<&StrMap>, keys: Option<&[String]>) -> Value {
    match (m, keys) {
        (None, _) => Value::Null,
        (Some(m), None) => serde_json::to_value(m).unwrap(),
        (Some(m), Some(keys)) => Value::Object(
            keys.iter()
                .filter_map(|k| m.get(k).map(|v| (k.clone(), Value::String(v.clone()))))
                .collect(),
        ),
    }
}

/// The datum a filter sees: the Go struct's fields. Only the top-level
/// fields the expression reads are built. The synthetic `Drain` bool is not
/// a Go field, so (as in Nomad) it is not filterable.
fn node_datum(n: &Node, reads: &Reads) -> Value {
    let mut m = Map::new();
    let mut full: Option<Value> = None;
    for f in &reads.fields {
        let v = match f.as_str() {
            "ID" => Value::String(n.id.clone()),
            "Name" => Value::String(n.name.clone()),
            "Datacenter" => Value::String(n.datacenter.clone()),
            "NodePool" => Value::String(n.node_pool.clone()),
            "NodeClass" => Value::String(n.node_class.clone()),
            "Status" => Value::String(n.status.clone()),
            "SchedulingEligibility" => Value::String(n.scheduling_eligibility.clone()),
            "HTTPAddr" => Value::String(n.http_addr.clone()),
            "Attributes" => str_map(Some(&n.attributes), reads.attributes.as_deref()),
            "Meta" => str_map(n.meta.as_ref(), reads.meta.as_deref()),
            "Drain" => continue,
            other => {
                let fv = full.get_or_insert_with(|| serde_json::to_value(n).unwrap());
                match fv.get(other) {
                    Some(v) => v.clone(),
                    None => continue,
                }
            }
        };
        m.insert(f.clone(), v);
    }
    Value::Object(m)
}

pub(super) async fn list(
    app: &Arc<App>,
    req: Request<Incoming>,
    kl: bool,
) -> Result<Resp, ApiError> {
    authorize(app, req.headers(), Capability::NodeRead)?;
    let q = parse_query(app, req.uri().query())?;
    let expr = parse_filter(&q.filter)?.map(filter::Prepared::new);
    block_until(app, &q, |c| (c.nodes_index, Some(c.nodes_tx.subscribe()))).await;
    let c = super::read_state(app);
    let reads = expr.as_ref().map(|e| Reads::of(e.expr()));
    // The operator's batched VM reads test one instance-ID attribute
    // against a set: answered from the attribute index, the same nodes in
    // the same order as testing each node of the cluster (which, at 20,000
    // nodes and thousands of reads, was most of the bench process's CPU).
    let indexed = (expr.as_ref())
        .and_then(|e| e.key_in_set("Attributes"))
        .and_then(|(key, values)| c.nodes_with_attribute(key, values));
    let listed: Box<dyn Iterator<Item = (&String, &NodeRec)>> = match &indexed {
        Some(ids) => Box::new(ids.iter().filter_map(|id| c.nodes.get_key_value(*id))),
        None => Box::new(c.nodes.range(q.prefix.clone()..)),
    };
    let mut items: Vec<(String, Vec<u8>)> = Vec::new();
    for (id, rec) in listed {
        if !id.starts_with(&q.prefix) {
            if indexed.is_some() {
                continue;
            }
            break;
        }
        if let (Some(e), Some(reads), None) = (&expr, &reads, &indexed) {
            let keep = e
                .eval(&node_datum(&rec.node, reads))
                .map_err(|e| ApiError::BadRequest(format!("failed to read result page: {e}")))?;
            if !keep {
                continue;
            }
        }
        items.push((
            id.clone(),
            serde_json::to_vec(&rec.node.stub(q.resources, q.os)).unwrap(),
        ));
    }
    let index = c.nodes_index;
    drop(c);
    let (page, next) = paginate(items, &q);
    let mut body = Vec::with_capacity(page.iter().map(|p| p.len() + 1).sum::<usize>() + 2);
    body.push(b'[');
    for (i, p) in page.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(p);
    }
    body.push(b']');
    if q.pretty {
        let v: Value = serde_json::from_slice(&body).unwrap();
        body = to_json(&v, true);
    }
    let mut r = json_bytes(StatusCode::OK, body);
    set_meta(&mut r, index, kl);
    if let Some(n) = next {
        r.headers_mut()
            .insert("x-nomad-nexttoken", n.parse().unwrap());
    }
    Ok(r)
}

pub(super) async fn read(
    app: &Arc<App>,
    req: Request<Incoming>,
    id: &str,
    kl: bool,
) -> Result<Resp, ApiError> {
    authorize(app, req.headers(), Capability::NodeRead)?;
    let q = parse_query(app, req.uri().query())?;
    block_until(app, &q, |c| match c.nodes.get(id) {
        Some(r) => (
            r.node.modify_index,
            c.watches.get(id).map(|w| w.node.subscribe()),
        ),
        None => (c.nodes_index, Some(c.nodes_tx.subscribe())),
    })
    .await;
    let c = super::read_state(app);
    match c.nodes.get(id) {
        Some(rec) => {
            let body = to_json(&rec.node, q.pretty);
            let idx = rec.node.modify_index;
            drop(c);
            let mut r = json_bytes(StatusCode::OK, body);
            set_meta(&mut r, idx, kl);
            Ok(r)
        }
        None => {
            // setMeta runs before the 404, so the headers are there too.
            let mut r = text(StatusCode::NOT_FOUND, "node not found");
            set_meta(&mut r, c.nodes_index, kl);
            Ok(r)
        }
    }
}

fn node_allocs_index(c: &crate::state::Cluster, id: &str) -> u64 {
    let m = c.node_allocs(id).map(|a| a.alloc.modify_index).max();
    match m {
        Some(i) => i,
        None => c.allocs_index.max(1),
    }
}

pub(super) async fn allocations(
    app: &Arc<App>,
    req: Request<Incoming>,
    id: &str,
    kl: bool,
) -> Result<Resp, ApiError> {
    // Node.GetAllocs needs only node:read; allocations in namespaces where
    // the token lacks read-job are silently left out, but still count for
    // the index.
    let a = super::auth(app, req.headers())?;
    if !a.node_read() {
        return Err(ApiError::PermissionDenied);
    }
    let q = parse_query(app, req.uri().query())?;
    block_until(app, &q, |c| {
        let rx = match c.watches.get(id) {
            Some(w) => w.allocs.subscribe(),
            None => c.allocs_tx.subscribe(),
        };
        (node_allocs_index(c, id), Some(rx))
    })
    .await;
    let c = super::read_state(app);
    let idx = node_allocs_index(&c, id);
    let mut body = Vec::new();
    body.push(b'[');
    let mut readable: std::collections::HashMap<&str, bool> = Default::default();
    let mut first = true;
    for al in c.node_allocs(id) {
        let ns = al.alloc.namespace.as_str();
        if !*readable
            .entry(ns)
            .or_insert_with(|| a.allow_ns_op(ns, "read-job"))
        {
            continue;
        }
        if !first {
            body.push(b',');
        }
        first = false;
        al.alloc.write_full(&mut body);
    }
    body.push(b']');
    drop(c);
    if q.pretty {
        let v: Value = serde_json::from_slice(&body).unwrap();
        body = to_json(&v, true);
    }
    let mut r = json_bytes(StatusCode::OK, body);
    set_meta(&mut r, idx, kl);
    Ok(r)
}

fn accessor(id: &Option<crate::acl::Identity>) -> String {
    match id {
        Some(i) => i.accessor_string(),
        None => "token:acls-disabled".into(),
    }
}

fn write_resp<T: serde::Serialize>(v: &T, index: u64) -> Resp {
    let mut r = json_bytes(StatusCode::OK, to_json(v, false));
    r.headers_mut()
        .insert("x-nomad-index", index.to_string().parse().unwrap());
    r
}

pub(super) async fn drain(
    app: &Arc<App>,
    req: Request<Incoming>,
    id: &str,
) -> Result<Resp, ApiError> {
    let headers = req.headers().clone();
    parse_write(app, req.uri().query())?;
    let body: DrainRequest = read_body(
        req,
        &["DrainSpec", "MarkEligible", "Meta", "NodeID"],
        &[("DrainSpec", &["Deadline", "IgnoreSystemJobs"])],
    )
    .await?;
    let ident = authorize(app, &headers, Capability::NodeWrite)?;
    let unapplied = body.drain_spec.is_some() && {
        let f = app.faults.lock().unwrap();
        f.drains_not_applied && f.applies(&format!("/v1/node/{id}/drain"))
    };
    let out = if unapplied {
        app.write().accept_drain_unapplied(id)?
    } else {
        app.write().update_drain(id, &body, &accessor(&ident))?
    };
    Ok(write_resp(&out, out.index))
}

pub(super) async fn eligibility(
    app: &Arc<App>,
    req: Request<Incoming>,
    id: &str,
) -> Result<Resp, ApiError> {
    let headers = req.headers().clone();
    parse_write(app, req.uri().query())?;
    let body: EligibilityRequest = read_body(req, &["Eligibility", "NodeID"], &[]).await?;
    authorize(app, &headers, Capability::NodeWrite)?;
    // A non-empty NodeID in the body overrides the path.
    let node_id = body
        .node_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or(id)
        .to_string();
    let out = app
        .write()
        .update_eligibility(&node_id, &body.eligibility)?;
    Ok(write_resp(&out, out.index))
}

pub(super) async fn purge(
    app: &Arc<App>,
    req: Request<Incoming>,
    id: &str,
) -> Result<Resp, ApiError> {
    parse_write(app, req.uri().query())?;
    authorize(app, req.headers(), Capability::NodeWrite)?;
    let (idx, evals) = app.write().purge_node(id)?;
    let out = NodePurgeResponse {
        eval_create_index: if evals.is_some() { idx } else { 0 },
        eval_ids: evals,
        heartbeat_ttl: 0,
        index: idx,
        known_leader: false,
        last_contact: 0,
        leader_rpc_addr: String::new(),
        node_modify_index: idx,
        num_nodes: 0,
        servers: None,
    };
    Ok(write_resp(&out, idx))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A filter on one attribute builds only that key of each node.
    #[test]
    fn map_keys_read() {
        let keys = |s: &str, f: &str| {
            let mut out = Vec::new();
            filter::parse(s)
                .unwrap()
                .map_keys(f, &mut out)
                .then_some(out)
        };
        let a = r#"Attributes["unique.platform.aws.instance-id"] == "i-1""#;
        assert_eq!(
            keys(a, "Attributes"),
            Some(vec!["unique.platform.aws.instance-id".to_string()])
        );
        assert_eq!(keys(a, "Meta"), Some(vec![]));
        assert_eq!(
            keys(r#"Meta.team == "a" or Meta["x"] != "b""#, "Meta"),
            Some(vec!["team".to_string(), "x".to_string()])
        );
        assert_eq!(
            keys(r#"Meta.team == "a" or Meta.team == "b""#, "Meta"),
            Some(vec!["team".to_string()]),
            "a key read by many terms is built once"
        );
        assert_eq!(keys(r#""team" in Meta"#, "Meta"), None);
        assert_eq!(keys(r#"Meta.a == "b" and Meta is empty"#, "Meta"), None);
    }

    #[test]
    fn partial_maps_keep_missing_keys_missing() {
        let m: StrMap = [("a".to_string(), "1".to_string())].into();
        let keys = ["a".to_string(), "b".to_string()];
        assert_eq!(
            str_map(Some(&m), Some(&keys)),
            serde_json::json!({"a": "1"})
        );
        assert_eq!(str_map(None, Some(&keys)), Value::Null);
        assert_eq!(str_map(Some(&m), None), serde_json::json!({"a": "1"}));
    }
}
