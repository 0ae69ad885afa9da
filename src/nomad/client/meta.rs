//! What a response's status and headers say: Nomad's errors, typed, and the
//! query metadata of a read.

use super::*;

pub(super) fn status_error(
    status: StatusCode,
    body: &[u8],
    endpoint: String,
    scope: NodeScope<'_>,
) -> NomadError {
    let text = String::from_utf8_lossy(body);
    let mut message = text.trim().to_owned();
    if message.len() > MAX_ERROR_BODY {
        let cut = (0..=MAX_ERROR_BODY)
            .rev()
            .find(|&i| message.is_char_boundary(i))
            .unwrap_or(0);
        message.truncate(cut);
        message.push('…');
    }
    // Only Nomad's own message counts as "node not found": a bare 404 could
    // come from a proxy, and treating that as a vanished node could get a
    // live VM terminated. Reads answer 404, writes 500 (plain fmt.Errorf).
    let node_missing = matches!(status.as_u16(), 404 | 500) && message.ends_with("node not found");
    match scope {
        NodeScope::Node(node_id) if node_missing => NomadError::NodeNotFound {
            node_id: node_id.to_owned(),
        },
        _ if status == StatusCode::FORBIDDEN => NomadError::PermissionDenied { endpoint, message },
        _ => NomadError::Api {
            status: status.as_u16(),
            message,
            endpoint,
        },
    }
}

pub(super) fn query_meta(
    headers: &HeaderMap,
    endpoint: &str,
) -> Result<(u64, bool, Duration), NomadError> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let invalid = |header, value: Option<&str>| NomadError::InvalidHeader {
        endpoint: endpoint.to_owned(),
        header,
        value: value.map(str::to_owned),
    };
    // Without the index a watch cannot block and would spin, so it is
    // required; the other two are informational.
    let raw = text("X-Nomad-Index");
    let index = raw
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| invalid("X-Nomad-Index", raw))?;
    let known_leader = text("X-Nomad-KnownLeader") == Some("true");
    let last_contact = match text("X-Nomad-LastContact") {
        None => Duration::ZERO,
        Some(v) => v
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| invalid("X-Nomad-LastContact", Some(v)))?,
    };
    Ok((index, known_leader, last_contact))
}
