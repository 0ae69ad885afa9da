//! `/v1/allocations` and `/v1/allocation/:id`.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::Value;

use super::nodes::parse_filter;
use super::{
    ApiError, Resp, auth, block_until, json_bytes, paginate, parse_query, set_meta, text, to_json,
};
use crate::App;
use crate::goquote::go_quote;

fn ns_matches(q: &str, ns: &str) -> bool {
    q == "*" || q == ns
}

pub(super) async fn list(
    app: &Arc<App>,
    req: Request<Incoming>,
    kl: bool,
) -> Result<Resp, ApiError> {
    // Alloc.List: read-job in the requested namespace (for `*`, in any
    // namespace), else 403; then only allocations of namespaces the token
    // can read-job in are listed, and none at all if there is no such
    // namespace. The index is the allocs table's, hidden ones included.
    let a = auth(app, req.headers())?;
    let q = parse_query(app, req.uri().query())?;
    if !a.allow_ns_op(&q.namespace, "read-job") {
        return Err(ApiError::PermissionDenied);
    }
    let expr = parse_filter(&q.filter)?;
    block_until(app, &q, |c| (c.allocs_index, Some(c.allocs_tx.subscribe()))).await;
    let c = super::read_state(app);
    let readable: std::collections::HashSet<&str> = c
        .namespaces
        .keys()
        .filter(|n| a.allow_ns_op(n, "read-job"))
        .map(String::as_str)
        .collect();
    let mut fields = Vec::new();
    if let Some(e) = &expr {
        e.fields(&mut fields);
    }
    let mut items: Vec<(String, Vec<u8>)> = Vec::new();
    for (id, a) in c.allocs.range(q.prefix.clone()..) {
        if !id.starts_with(&q.prefix) {
            break;
        }
        if !ns_matches(&q.namespace, &a.alloc.namespace)
            || !readable.contains(a.alloc.namespace.as_str())
        {
            continue;
        }
        if let Some(e) = &expr {
            // Nomad filters the full Allocation, not the stub.
            let keep = e
                .eval(&a.alloc.filter_datum(&fields))
                .map_err(|e| ApiError::BadRequest(format!("failed to read result page: {e}")))?;
            if !keep {
                continue;
            }
        }
        items.push((
            id.clone(),
            serde_json::to_vec(&a.alloc.stub(q.task_states)).unwrap(),
        ));
    }
    let index = c.allocs_index.max(1);
    drop(c);
    let (page, next) = paginate(items, &q);
    let mut body = vec![b'['];
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
    // Alloc.GetAlloc checks the namespace only once it found the
    // allocation: an unknown one is `404 alloc not found` whatever the
    // token may read; one in a namespace without read-job is the RPC's plain
    // error `Unknown allocation "<id>"`, which the HTTP layer sends as 500.
    let auth = auth(app, req.headers())?;
    let q = parse_query(app, req.uri().query())?;
    block_until(app, &q, |c| match c.allocs.get(id) {
        Some(a) => (
            a.alloc.modify_index,
            Some(match c.watches.get(&a.alloc.node_id) {
                Some(w) => w.allocs.subscribe(),
                None => c.allocs_tx.subscribe(),
            }),
        ),
        None => (c.allocs_index, Some(c.allocs_tx.subscribe())),
    })
    .await;
    let c = super::read_state(app);
    match c.allocs.get(id) {
        Some(a) if !auth.allow_ns_op(&a.alloc.namespace, "read-job") => Err(ApiError::Internal(
            format!("Unknown allocation {}", go_quote(id)),
        )),
        Some(a) => {
            let mut body = Vec::new();
            a.alloc.write_full(&mut body);
            let idx = a.alloc.modify_index;
            drop(c);
            if q.pretty {
                let v: Value = serde_json::from_slice(&body).unwrap();
                body = to_json(&v, true);
            }
            let mut r = json_bytes(StatusCode::OK, body);
            set_meta(&mut r, idx, kl);
            Ok(r)
        }
        None => {
            let mut r = text(StatusCode::NOT_FOUND, "alloc not found");
            set_meta(&mut r, c.allocs_index, kl);
            Ok(r)
        }
    }
}
