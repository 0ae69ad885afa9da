//! The drain `Meta` codec: how a drain records the retirement it belongs to,
//! so a controller that lost its status adopts its own drains.

use std::collections::BTreeMap;

use super::{DrainMark, RetireReason};

/// Keys of the drain `Meta` that mark a drain as this pool's, so a controller
/// that lost its status can still recognise (adopt) its own drains.
pub const META_POOL: &str = "nomadpool.dev/pool";
pub const META_POOL_UID: &str = "nomadpool.dev/pool-uid";
/// Why the client is retired (`ScaleIn`, `Requested`, `Replace`): an adopted
/// drain keeps its reason, so a replacement is never turned into a shrink.
pub const META_REASON: &str = "nomadpool.dev/reason";
/// `true` when this pool made the client ineligible: an adopted drain that is
/// cancelled restores the client's eligibility exactly as its owner had it.
pub const META_CORDONED_BY_POOL: &str = "nomadpool.dev/cordoned-by-pool";

/// The `Meta` of a drain this pool sends for the retirement `mark` records.
pub fn drain_meta(pool_key: &str, uid: &str, mark: &DrainMark) -> BTreeMap<String, String> {
    [
        (META_POOL.to_string(), pool_key.to_string()),
        (META_POOL_UID.to_string(), uid.to_string()),
        (META_REASON.to_string(), format!("{:?}", mark.reason)),
        (
            META_CORDONED_BY_POOL.to_string(),
            mark.cordoned_by_pool.to_string(),
        ),
        (
            "message".to_string(),
            "retired by nomad-pool-operator".to_string(),
        ),
    ]
    .into()
}

/// What a drain's `Meta` says about the retirement that sent it; `None`
/// for a drain that is not this pool's.
pub fn read_drain_meta(meta: &BTreeMap<String, String>, uid: &str) -> Option<DrainMark> {
    if meta.get(META_POOL_UID).map(String::as_str) != Some(uid) {
        return None;
    }
    Some(mark_of(meta))
}

/// As `read_drain_meta`, also recognising the drains of an earlier pool of
/// the same namespace/name (`pool_key`): a pool deleted and created again
/// (GitOps re-sync, `kubectl replace --force`) gets a new UID while the old
/// pool's drains run on, and would otherwise ignore them and select more.
/// The earlier pool no longer exists: the API server holds one object per
/// namespace/name, and the old one was removed (its finalizer having run)
/// before this one could be created. So its drains are ours to carry on.
pub fn read_drain_meta_of(
    meta: &BTreeMap<String, String>,
    pool_key: &str,
    uid: &str,
) -> Option<DrainMark> {
    let same_pool = meta.get(META_POOL_UID).map(String::as_str) == Some(uid)
        || meta.get(META_POOL).map(String::as_str) == Some(pool_key);
    same_pool.then(|| mark_of(meta))
}

fn mark_of(meta: &BTreeMap<String, String>) -> DrainMark {
    // Drains sent before these keys existed were scale-ins by a pool that
    // had cordoned the client: selection only takes eligible clients.
    let reason = match meta.get(META_REASON).map(String::as_str) {
        Some("Requested") => RetireReason::Requested,
        Some("Replace") => RetireReason::Replace,
        _ => RetireReason::ScaleIn,
    };
    let cordoned_by_pool = meta.get(META_CORDONED_BY_POOL).map(String::as_str) != Some("false");
    DrainMark {
        reason,
        cordoned_by_pool,
    }
}
