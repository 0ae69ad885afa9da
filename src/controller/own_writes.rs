//! The pool as our own last status write left it, for reconciles that start
//! from a cache that has not caught up with that write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;

use crate::api::NomadClientPool;

/// Our own status writes, for reading them back before the controller's
/// cache shows them. The controller hands each reconcile its cache's copy of
/// the pool, which trails our last status write until the watch event for
/// it arrives; a write made from that copy fails the resourceVersion check.
/// During a busy scale-in that happened on one reconcile in seven, and each
/// conflict held every planned action back. A copy whose resourceVersion one
/// of our writes replaced is swapped for what that write returned; any other
/// version (a user's edit, a newer event) is used as is.
#[derive(Default)]
pub struct OwnWrites(Mutex<HashMap<ObjectRef<NomadClientPool>, Written>>);

struct Written {
    latest: Arc<NomadClientPool>,
    replaced: std::collections::VecDeque<String>,
    at: std::time::Instant,
}

/// How many of our replaced resourceVersions are remembered per pool: the
/// cache trails by an event or two, never by dozens.
const OWN_WRITES_KEPT: usize = 16;

impl OwnWrites {
    /// The newest copy of the pool we know of.
    pub fn newest(&self, pool: Arc<NomadClientPool>) -> Arc<NomadClientPool> {
        let Some(rv) = pool.metadata.resource_version.as_deref() else {
            return pool;
        };
        let own = self.0.lock().expect("own writes lock");
        match own.get(&ObjectRef::from_obj(pool.as_ref())) {
            Some(w) if w.replaced.iter().any(|r| r == rv) => w.latest.clone(),
            _ => pool,
        }
    }

    /// Remember a write: `before` is the copy it was made from, `after` what
    /// the API server returned.
    pub fn wrote(&self, before: &NomadClientPool, after: NomadClientPool) {
        let Some(rv) = before.metadata.resource_version.clone() else {
            return;
        };
        let after = Arc::new(after);
        let mut own = self.0.lock().expect("own writes lock");
        let w = own
            .entry(ObjectRef::from_obj(before))
            .or_insert_with(|| Written {
                latest: after.clone(),
                replaced: Default::default(),
                at: std::time::Instant::now(),
            });
        w.latest = after;
        w.at = std::time::Instant::now();
        w.replaced.push_back(rv);
        if w.replaced.len() > OWN_WRITES_KEPT {
            w.replaced.pop_front();
        }
    }

    /// Whether this process wrote the pool's status within `period`.
    pub fn written_within(&self, pool: &NomadClientPool, period: Duration) -> bool {
        self.0
            .lock()
            .expect("own writes lock")
            .get(&ObjectRef::from_obj(pool))
            .is_some_and(|w| w.at.elapsed() < period)
    }

    pub fn forget(&self, pool: &NomadClientPool) {
        self.0
            .lock()
            .expect("own writes lock")
            .remove(&ObjectRef::from_obj(pool));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_our_write_replaced_is_read_as_what_the_write_returned() {
        let pool = |rv: &str, retired: i64| {
            let spec = crate::api::NomadClientPoolSpec {
                nomad: Default::default(),
                selector: Default::default(),
                provider: Default::default(),
                replicas: None,
                retire: vec![],
                drain: Default::default(),
                disruption: Default::default(),
                max_node_age: None,
                replace_drifted: false,
                remediation: None,
                retirement_history_limit: None,
            };
            let mut p = NomadClientPool::new("ci", spec);
            p.metadata.namespace = Some("default".into());
            p.metadata.resource_version = Some(rv.into());
            p.status = Some(crate::api::NomadClientPoolStatus {
                retired_total: retired,
                ..Default::default()
            });
            Arc::new(p)
        };
        let own = OwnWrites::default();
        own.wrote(&pool("1", 0), (*pool("2", 1)).clone());
        own.wrote(&pool("2", 1), (*pool("3", 2)).clone());
        let rv = |p: Arc<NomadClientPool>| p.metadata.resource_version.clone().unwrap();
        assert_eq!(rv(own.newest(pool("1", 0))), "3", "cache two writes behind");
        assert_eq!(rv(own.newest(pool("2", 1))), "3", "cache one write behind");
        assert_eq!(rv(own.newest(pool("3", 2))), "3");
        assert!(own.written_within(&pool("3", 2), Duration::from_secs(60)));
        assert!(!own.written_within(&pool("3", 2), Duration::ZERO));
        assert_eq!(
            rv(own.newest(pool("7", 0))),
            "7",
            "a version we did not write over is newer: a user's edit"
        );
        own.forget(&pool("3", 2));
        assert_eq!(rv(own.newest(pool("1", 0))), "1");
    }
}
