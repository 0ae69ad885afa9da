//! Keeps a pool's proof that its Nomad token sees every allocation
//! (`nomad::acl`), checked when the pool connects and again in the
//! background: once per pool, never per node, so it costs a handful of small
//! requests every few minutes whatever the pool's size.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::controller::trigger::Trigger;
use crate::nomad::acl::{MINIMAL_NAMESPACE_RULE, Visibility};
use crate::nomad::{NomadClient, NomadError};

/// How often a proof is checked again: a policy can be narrowed at any time.
const RECHECK_PROVEN: Duration = Duration::from_secs(300);
/// How often a missing proof is checked again, so a fixed policy lets the
/// pool go on within seconds.
const RECHECK_UNPROVEN: Duration = Duration::from_secs(10);

/// What the pool knows now.
#[derive(Clone, Debug)]
pub enum VisibilityState {
    /// The first check has not answered yet.
    Checking,
    Known(Visibility),
    /// The check failed before any proof was had (a failure after one keeps
    /// it: Nomad being briefly unreachable does not narrow a policy).
    Failed(Arc<NomadError>),
}

impl VisibilityState {
    /// Why no termination may happen now, for status, events and logs;
    /// `None` when the token provably sees every allocation.
    pub fn gap(&self) -> Option<String> {
        match self {
            VisibilityState::Known(v) if v.proven() => None,
            VisibilityState::Known(Visibility::Unproven(gap)) => Some(format!(
                "{gap}. Until then, drained clients are not terminated; add `{MINIMAL_NAMESPACE_RULE}` \
                 (or capabilities = [\"read-job\"]) to one of the token's policies"
            )),
            VisibilityState::Known(_) => None,
            VisibilityState::Checking => {
                Some("checking that the Nomad token reads jobs in every namespace".into())
            }
            VisibilityState::Failed(e) => Some(format!(
                "cannot check that the Nomad token reads jobs in every namespace ({e})"
            )),
        }
    }
}

/// The background check of one pool. Dropping it stops the check.
pub struct VisibilityWatch {
    /// The answer and how many times it changed.
    rx: watch::Receiver<(u64, VisibilityState)>,
    task: JoinHandle<()>,
    /// The change count the pool last acted on (see [`Self::changed_since_seen`]).
    seen: AtomicU64,
}

impl Drop for VisibilityWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl VisibilityWatch {
    pub fn start(client: NomadClient, trigger: Trigger) -> Self {
        let (tx, rx) = watch::channel((0, VisibilityState::Checking));
        let task = tokio::spawn(run(client, tx, trigger));
        Self {
            rx,
            task,
            seen: AtomicU64::new(0),
        }
    }

    pub fn state(&self) -> VisibilityState {
        self.rx.borrow().1.clone()
    }

    /// Whether the answer changed since the last call. Allocation reads made
    /// before a change may have been filtered by what the token could not
    /// see (a blocking query does not wake when a policy changes), so the
    /// pool reads them again.
    pub fn changed_since_seen(&self) -> bool {
        let version = self.rx.borrow().0;
        self.seen.swap(version, Ordering::Relaxed) != version
    }

    /// Whether a change waits for `changed_since_seen`, which is left to it.
    pub fn change_unseen(&self) -> bool {
        self.seen.load(Ordering::Relaxed) != self.rx.borrow().0
    }
}

async fn run(client: NomadClient, tx: watch::Sender<(u64, VisibilityState)>, trigger: Trigger) {
    loop {
        let next = match client.check_visibility().await {
            Ok(v) => VisibilityState::Known(v),
            Err(e) => {
                warn!(error = %e, "checking the Nomad token's namespace access failed");
                match &tx.borrow().1 {
                    VisibilityState::Known(v) if !is_revocation(&e) => {
                        VisibilityState::Known(v.clone())
                    }
                    _ => VisibilityState::Failed(Arc::new(e)),
                }
            }
        };
        let proven = matches!(&next, VisibilityState::Known(v) if v.proven());
        let (count, old) = tx.borrow().clone();
        if changed(&old, &next) {
            match next.gap() {
                None => info!("the Nomad token reads jobs in every namespace"),
                Some(gap) => warn!("{gap}"),
            }
            tx.send_replace((count + 1, next));
            trigger.fire();
        }
        tokio::time::sleep(if proven {
            RECHECK_PROVEN
        } else {
            RECHECK_UNPROVEN
        })
        .await;
    }
}

/// A refused token is an answer, not an outage: it ends the proof.
fn is_revocation(e: &NomadError) -> bool {
    matches!(e, NomadError::PermissionDenied { .. })
}

fn changed(old: &VisibilityState, new: &VisibilityState) -> bool {
    match (old, new) {
        (VisibilityState::Known(a), VisibilityState::Known(b)) => a != b,
        (VisibilityState::Failed(a), VisibilityState::Failed(b)) => a.to_string() != b.to_string(),
        _ => true,
    }
}
