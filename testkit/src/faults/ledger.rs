//! Every retirement of a pool as a watch on the `NomadClientRetirement`
//! objects shows it, checked on each event against what must hold at
//! every instant, however the operator is killed and restarted: never two
//! retirements under way for one client (by node ID, node name or VM),
//! each retirement's one reason never changing, and those under way
//! within the disruption budget and `maxUnhealthy` (`Limits`). Under way
//! means from `Selected` on: the pool creates an object and then writes
//! its first status, so one in `Pending` has not started (a test checks
//! at the end that none stays there: `Ledger::unfinished`). The checks
//! are pure (`Ledger::observe`), so their unit tests show each one fails.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::ResourceExt;
use nomad_pool_operator::api::{NomadClientRetirement, RetireReason, RetirementPhase};
use tokio::task::JoinHandle;

/// What the retirements under way may add up to at any instant.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Voluntary retirements before their VM's terminate (`Selected` to
    /// `Drained`). Those in `Terminating` are left out: a reconcile creates
    /// its new retirements before it marks the finished ones `Retired`,
    /// and a SIGKILL between the two leaves both looking unfinished until
    /// the next process; Nomad's side (`ServiceWatch`) counts those.
    pub voluntary: u32,
    /// Remediations (`Unhealthy`, `Unregistered`) under way.
    pub remediations: u32,
}

/// One retirement as last seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub name: String,
    pub reason: RetireReason,
    pub phase: RetirementPhase,
    pub node_id: Option<String>,
    pub node_name: Option<String>,
    pub instance_id: Option<String>,
    pub selected_at: Option<Timestamp>,
}

impl Seen {
    pub fn of(r: &NomadClientRetirement) -> Seen {
        let st = r.status.clone().unwrap_or_default();
        let t = &r.spec.target;
        Seen {
            name: r.name_any(),
            reason: r.spec.reason,
            phase: r.phase(),
            node_id: st.node_id.or_else(|| t.node_id.clone()),
            node_name: st.node_name.or_else(|| t.node_name.clone()),
            instance_id: st.instance_id.or_else(|| t.instance_id.clone()),
            selected_at: st.selected_at.map(|t| t.0),
        }
    }

    /// Started and not finished.
    fn under_way(&self) -> bool {
        self.phase.in_flight().is_some()
    }

    fn before_terminate(&self) -> bool {
        self.under_way()
            && !matches!(
                self.phase,
                RetirementPhase::Terminating | RetirementPhase::Cancelling
            )
    }
}

/// What the watch has seen so far.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    /// Every retirement by UID, as last seen (deleted ones kept).
    pub objects: BTreeMap<String, Seen>,
    /// What broke an invariant, each said once.
    pub violations: BTreeSet<String>,
    /// Most voluntary retirements before their terminate at once.
    pub max_voluntary: u32,
    /// Most remediations under way at once.
    pub max_remediations: u32,
    /// Events that moved a retirement (a new one, or a new phase).
    pub moves: u64,
    /// Retirements seen, each counted when it first shows up.
    pub created: u64,
}

impl Ledger {
    /// Take in one object as the watch delivered it, and check every
    /// invariant against the state it leaves.
    pub fn observe(&mut self, uid: &str, now: Seen, limits: Limits) {
        let before = self.objects.get(uid);
        if let Some(b) = before.filter(|b| b.reason != now.reason) {
            self.violations.insert(format!(
                "retirement {} changed its reason from {} to {}",
                now.name, b.reason, now.reason
            ));
        }
        if before.is_none_or(|b| b.phase != now.phase) {
            self.moves += 1;
        }
        if before.is_none() {
            self.created += 1;
        }
        self.objects.insert(uid.to_owned(), now);
        self.check_clients();
        self.check_counts(limits);
    }

    fn check_clients(&mut self) {
        let mut by: BTreeMap<(&str, &str), Vec<&Seen>> = BTreeMap::new();
        for s in self.objects.values().filter(|s| s.under_way()) {
            for (kind, key) in [
                ("node", &s.node_id),
                ("node name", &s.node_name),
                ("VM", &s.instance_id),
            ] {
                if let Some(k) = key.as_deref() {
                    by.entry((kind, k)).or_default().push(s);
                }
            }
        }
        let twice: Vec<String> = (by.iter())
            .filter(|(_, list)| list.len() > 1)
            .map(|((kind, key), list)| {
                let named: Vec<String> = (list.iter())
                    .map(|s| format!("{} ({}, {})", s.name, s.reason, s.phase.as_str()))
                    .collect();
                format!(
                    "{kind} {key} has {} retirements under way at once: {}",
                    list.len(),
                    named.join(", ")
                )
            })
            .collect();
        self.violations.extend(twice);
    }

    fn check_counts(&mut self, limits: Limits) {
        let under_way = || self.objects.values().filter(|s| s.under_way());
        let voluntary: Vec<&Seen> = under_way()
            .filter(|s| s.reason.is_voluntary() && s.before_terminate())
            .collect();
        let remediations: Vec<&Seen> = under_way().filter(|s| s.reason.is_remediation()).collect();
        let names = |l: &[&Seen]| l.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        let mut found = Vec::new();
        if voluntary.len() as u32 > limits.voluntary {
            found.push(format!(
                "{} voluntary retirements before their terminate at once (budget {}): {:?}",
                voluntary.len(),
                limits.voluntary,
                names(&voluntary)
            ));
        }
        if remediations.len() as u32 > limits.remediations {
            found.push(format!(
                "{} remediations at once (maxUnhealthy {}): {:?}",
                remediations.len(),
                limits.remediations,
                names(&remediations)
            ));
        }
        self.max_voluntary = self.max_voluntary.max(voluntary.len() as u32);
        self.max_remediations = self.max_remediations.max(remediations.len() as u32);
        self.violations.extend(found);
    }

    /// Retirements not finished (`Pending` ones included), as `name
    /// (reason, phase)`.
    pub fn unfinished(&self) -> Vec<String> {
        (self.objects.values())
            .filter(|s| !s.phase.is_finished())
            .map(|s| format!("{} ({}, {})", s.name, s.reason, s.phase.as_str()))
            .collect()
    }

    /// Every retirement seen whose client is `node_id`.
    pub fn of_node(&self, node_id: &str) -> Vec<&Seen> {
        (self.objects.values())
            .filter(|s| s.node_id.as_deref() == Some(node_id))
            .collect()
    }

    /// How many retirements seen have each reason.
    pub fn by_reason(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for s in self.objects.values() {
            *out.entry(format!("{}/{}", s.reason, s.phase.as_str()))
                .or_default() += 1;
        }
        out
    }
}

/// Starts that break "at most `n` per rolling `per`": any `n + 1` of
/// `starts` within less than `per`. Times are whole seconds as the API
/// server stores them, which makes two starts look at most a second
/// closer or further apart; a span of `per` or more stays one.
pub fn over_rate(starts: &[Timestamp], n: usize, per: SignedDuration) -> Option<String> {
    let mut sorted = starts.to_vec();
    sorted.sort();
    sorted.windows(n + 1).find_map(|w| {
        let span = w[n].duration_since(w[0]);
        (span < per).then(|| {
            format!(
                "{} voluntary starts within {span} (rate {n} per {per}): {w:?}",
                n + 1
            )
        })
    })
}

/// A watch on one namespace's retirements feeding a [`Ledger`].
pub struct RetirementWatch {
    ledger: Arc<Mutex<Ledger>>,
    moves: tokio::sync::watch::Receiver<(u64, u64)>,
    task: JoinHandle<()>,
}

impl Drop for RetirementWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RetirementWatch {
    pub fn start(api: Api<NomadClientRetirement>, limits: Limits) -> RetirementWatch {
        use futures::StreamExt;
        use kube::runtime::watcher::{self, Event};
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let (tx, moves) = tokio::sync::watch::channel((0u64, 0u64));
        let l = ledger.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
            while let Some(ev) = events.next().await {
                let r = match ev {
                    Ok(Event::Apply(r) | Event::InitApply(r)) => r,
                    // Deleted (pruned history): kept as last seen.
                    _ => continue,
                };
                let uid = r.uid().unwrap_or_else(|| r.name_any());
                let moved = {
                    let mut l = l.lock().unwrap();
                    l.observe(&uid, Seen::of(&r), limits);
                    (l.moves, l.created)
                };
                tx.send_replace(moved);
            }
        });
        RetirementWatch {
            ledger,
            moves,
            task,
        }
    }

    /// What the watch has seen so far.
    pub fn ledger(&self) -> Ledger {
        self.ledger.lock().unwrap().clone()
    }

    /// Counts the events that moved a retirement (each is a write-ahead
    /// after which the operator runs the action it names), and the
    /// retirements that showed up (each created just before its first
    /// status is written).
    pub fn moves(&self) -> tokio::sync::watch::Receiver<(u64, u64)> {
        self.moves.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        voluntary: 2,
        remediations: 1,
    };

    fn seen(name: &str, reason: RetireReason, phase: RetirementPhase, node: &str) -> Seen {
        Seen {
            name: name.into(),
            reason,
            phase,
            node_id: Some(node.into()),
            node_name: Some(format!("name-{node}")),
            instance_id: Some(format!("i-{node}")),
            selected_at: None,
        }
    }

    use RetireReason as R;
    use RetirementPhase as P;

    #[test]
    fn one_client_twice_at_once_is_caught_but_not_one_after_the_other() {
        let mut l = Ledger::default();
        l.observe("1", seen("a", R::ScaleIn, P::Draining, "n1"), LIMITS);
        l.observe("1", seen("a", R::ScaleIn, P::Cancelled, "n1"), LIMITS);
        l.observe("2", seen("b", R::Drifted, P::Selected, "n1"), LIMITS);
        assert!(l.violations.is_empty(), "{:?}", l.violations);
        // Created, its first status not written yet: not started.
        l.observe("3", seen("c", R::Unhealthy, P::Pending, "n1"), LIMITS);
        assert!(l.violations.is_empty(), "{:?}", l.violations);
        assert_eq!(
            l.unfinished(),
            ["b (Drifted, Selected)", "c (Unhealthy, Pending)"]
        );
        l.observe("3", seen("c", R::Unhealthy, P::Selected, "n1"), LIMITS);
        assert_eq!(
            l.violations.len(),
            3,
            "node, name and VM: {:?}",
            l.violations
        );
        assert!(l.violations.iter().any(|v| v.contains("node n1 has 2")));
    }

    #[test]
    fn a_reason_that_changes_is_caught() {
        let mut l = Ledger::default();
        l.observe("1", seen("a", R::Expired, P::Selected, "n1"), LIMITS);
        l.observe("1", seen("a", R::Drifted, P::Cordoned, "n1"), LIMITS);
        assert!(
            l.violations
                .iter()
                .any(|v| v.contains("from Expired to Drifted"))
        );
        assert_eq!(l.moves, 2);
    }

    #[test]
    fn counts_beyond_the_limits_are_caught() {
        let mut l = Ledger::default();
        l.observe("1", seen("a", R::ScaleIn, P::Draining, "n1"), LIMITS);
        l.observe("2", seen("b", R::Expired, P::Drained, "n2"), LIMITS);
        // Terminating ones and remediations do not count against the budget.
        l.observe("3", seen("c", R::Drifted, P::Terminating, "n3"), LIMITS);
        l.observe("4", seen("d", R::Unhealthy, P::Cordoned, "n4"), LIMITS);
        assert!(l.violations.is_empty(), "{:?}", l.violations);
        l.observe("7", seen("g", R::ScaleIn, P::Pending, "n7"), LIMITS);
        assert!(l.violations.is_empty(), "{:?}", l.violations);
        l.observe("5", seen("e", R::Drifted, P::Selected, "n5"), LIMITS);
        l.observe("6", seen("f", R::Unhealthy, P::Terminating, "n6"), LIMITS);
        assert_eq!(l.violations.len(), 2, "{:?}", l.violations);
        assert_eq!((l.max_voluntary, l.max_remediations), (3, 2));
    }

    #[test]
    fn the_rate_is_checked_over_any_window() {
        let t = |s: i64| Timestamp::from_second(1_800_000_000 + s).unwrap();
        let per = SignedDuration::from_secs(10);
        assert_eq!(over_rate(&[t(0), t(1), t(2), t(10), t(11)], 3, per), None);
        assert!(over_rate(&[t(0), t(1), t(9), t(5)], 3, per).is_some());
        assert_eq!(over_rate(&[t(0)], 3, per), None);
    }
}
