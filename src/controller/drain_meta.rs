//! The drain `Meta` codec: how a drain records the retirement it belongs to,
//! so a controller that lost its status adopts its own drains. `reconcile`
//! writes it into the drains it sends and reads it back from Nomad's
//! `LastDrain`; the planner sees only the `DrainMark` it decodes to.
//!
//! The Meta outlives the controller that wrote it, so its values are a wire
//! format: the reason is written by its explicit name (`RetireReason::as_str`),
//! and a drain written by any earlier version reads the same.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::api::RetireReason;

/// A retirement as this pool records it in the Meta of the drain it sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainMark {
    pub reason: RetireReason,
    pub cordoned_by_pool: bool,
    /// When the retirement that sent the drain was selected, to the whole
    /// second (as its status keeps it): tells this retirement's drain from
    /// an earlier one of the same client, which Nomad keeps as `LastDrain`
    /// after it finished. `None` in drains of earlier versions.
    pub selected_at: Option<Timestamp>,
}

/// `t` to the whole second, as the API server keeps a status's times.
pub fn whole_second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

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

/// The `NomadClientRetirement` the drain belongs to: a drain whose object
/// went missing (etcd restored, deleted while the operator was down) gets
/// its object back under the same name.
pub const META_RETIREMENT: &str = "nomadpool.dev/retirement";

/// When the retirement was selected (RFC 3339, whole seconds): see
/// [`DrainMark::selected_at`].
pub const META_SELECTED_AT: &str = "nomadpool.dev/selected-at";

/// `meta` naming the retirement object too.
pub fn with_retirement(
    mut meta: BTreeMap<String, String>,
    retirement: Option<&str>,
) -> BTreeMap<String, String> {
    if let Some(name) = retirement {
        meta.insert(META_RETIREMENT.to_string(), name.to_string());
    }
    meta
}

/// The retirement each drain of this pool names, by node ID.
pub fn retirement_names(
    snapshot: &crate::controller::watch::NodesSnapshot,
    pool_key: &str,
    uid: &str,
) -> std::collections::HashMap<String, String> {
    snapshot
        .nodes
        .iter()
        .filter_map(|n| {
            let meta = &n.last_drain.as_ref()?.meta;
            read_drain_meta_of(meta, pool_key, uid)?;
            Some((n.id.clone(), meta.get(META_RETIREMENT)?.clone()))
        })
        .collect()
}

/// The `Meta` of a drain this pool sends for the retirement `mark` records.
pub fn drain_meta(pool_key: &str, uid: &str, mark: &DrainMark) -> BTreeMap<String, String> {
    let selected_at =
        (mark.selected_at).map(|t| (META_SELECTED_AT.to_string(), whole_second(t).to_string()));
    [
        (META_POOL.to_string(), pool_key.to_string()),
        (META_POOL_UID.to_string(), uid.to_string()),
        (META_REASON.to_string(), mark.reason.as_str().to_string()),
        (
            META_CORDONED_BY_POOL.to_string(),
            mark.cordoned_by_pool.to_string(),
        ),
        (
            "message".to_string(),
            "retired by nomad-pool-operator".to_string(),
        ),
    ]
    .into_iter()
    .chain(selected_at)
    .collect()
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
    let reason = meta
        .get(META_REASON)
        .map(String::as_str)
        .and_then(reason_named)
        .unwrap_or(RetireReason::ScaleIn);
    let cordoned_by_pool = meta.get(META_CORDONED_BY_POOL).map(String::as_str) != Some("false");
    let selected_at = (meta.get(META_SELECTED_AT)).and_then(|s| s.parse().ok());
    DrainMark {
        reason,
        cordoned_by_pool,
        selected_at,
    }
}

/// The reason the Meta names; `None` for a name this version does not know.
fn reason_named(name: &str) -> Option<RetireReason> {
    RetireReason::ALL.into_iter().find(|r| r.as_str() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(reason: RetireReason, cordoned_by_pool: bool) -> DrainMark {
        DrainMark {
            reason,
            cordoned_by_pool,
            selected_at: None,
        }
    }

    #[test]
    fn the_selection_time_is_written_to_the_second_and_reads_back() {
        let mut m = mark(RetireReason::ScaleIn, true);
        m.selected_at = Some("2026-12-06T10:00:00.750Z".parse().unwrap());
        let meta = drain_meta("ns/pool", "uid-1", &m);
        assert_eq!(meta[META_SELECTED_AT], "2026-12-06T10:00:00Z");
        let read = read_drain_meta(&meta, "uid-1").unwrap();
        assert_eq!(
            read.selected_at,
            Some("2026-12-06T10:00:00Z".parse().unwrap())
        );
    }

    /// The values written are the ones every earlier version wrote: drains
    /// in flight across an upgrade are adopted with their reason.
    #[test]
    fn written_values_are_pinned() {
        for (reason, written) in [
            (RetireReason::ScaleIn, "ScaleIn"),
            (RetireReason::Requested, "Requested"),
            (RetireReason::Replace, "Replace"),
        ] {
            let meta = drain_meta("ns/pool", "uid-1", &mark(reason, false));
            assert_eq!(meta[META_REASON], written);
            assert_eq!(meta[META_POOL], "ns/pool");
            assert_eq!(meta[META_POOL_UID], "uid-1");
            assert_eq!(meta[META_CORDONED_BY_POOL], "false");
            assert_eq!(meta["message"], "retired by nomad-pool-operator");
            assert_eq!(meta.len(), 5);
            assert_eq!(read_drain_meta(&meta, "uid-1"), Some(mark(reason, false)));
        }
    }

    /// A Meta exactly as the previous version wrote it (its reason from
    /// `Debug` output) reads as the retirement it recorded.
    #[test]
    fn reads_a_meta_written_by_the_old_codec() {
        let old: BTreeMap<String, String> = [
            ("nomadpool.dev/pool", "ns/pool"),
            ("nomadpool.dev/pool-uid", "uid-1"),
            ("nomadpool.dev/reason", "Replace"),
            ("nomadpool.dev/cordoned-by-pool", "true"),
            ("message", "retired by nomad-pool-operator"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let replace = mark(RetireReason::Replace, true);
        assert_eq!(read_drain_meta(&old, "uid-1"), Some(replace.clone()));
        assert_eq!(read_drain_meta_of(&old, "ns/pool", "uid-2"), Some(replace));
        let mut requested = old.clone();
        requested.insert(META_REASON.into(), "Requested".into());
        assert_eq!(
            read_drain_meta(&requested, "uid-1"),
            Some(mark(RetireReason::Requested, true))
        );
        // An unknown reason reads as a scale-in, as before.
        let mut unknown = old;
        unknown.insert(META_REASON.into(), "SomethingNewer".into());
        assert_eq!(
            read_drain_meta(&unknown, "uid-1"),
            Some(mark(RetireReason::ScaleIn, true))
        );
    }
}
