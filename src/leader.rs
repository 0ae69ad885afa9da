//! Leader election on a coordination.k8s.io Lease: only the holder reconciles.
//! A replica that loses the lease exits at once (the kubelet restarts it as a
//! standby) rather than risk two controllers acting on the same nodes.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseCreateMode, LeaseManagerBuilder};
use tokio::sync::watch;
use tracing::{info, warn};

pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// A dead leader is replaced within this time.
    pub duration: Duration,
    pub grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader election on Lease {namespace}/{name} failed: {source}")]
    Lease {
        namespace: String,
        name: String,
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    #[error("lost the leader lease")]
    Lost,
}

/// Wait until this replica holds the lease, then run `work` while it does.
/// Returns when `work` ends (shutdown), releasing the lease; or fails with
/// `Lost` as soon as the lease is lost.
pub async fn run_as_leader<F: std::future::Future<Output = ()>>(
    client: Client,
    settings: LeaseSettings,
    work: impl FnOnce() -> F,
) -> Result<(), LeaderError> {
    let err = |source| LeaderError::Lease {
        namespace: settings.namespace.clone(),
        name: settings.name.clone(),
        source,
    };
    let manager = LeaseManagerBuilder::new(client, &settings.name)
        .with_namespace(&settings.namespace)
        .with_identity(&settings.identity)
        .with_duration(settings.duration.as_secs().max(2))
        .with_grace(
            settings
                .grace
                .as_secs()
                .clamp(1, settings.duration.as_secs().max(2) - 1),
        )
        .with_create_mode(LeaseCreateMode::AutoCreate)
        .build()
        .await
        .map_err(err)?;
    let (mut leading, task) = manager.watch().await;
    info!(lease = %format!("{}/{}", settings.namespace, settings.name), identity = %settings.identity, "waiting to become leader");
    while !*leading.borrow_and_update() {
        if leading.changed().await.is_err() {
            // The manager task ended: report its error.
            return match task.await {
                Ok(Err(e)) => Err(err(e)),
                _ => Err(LeaderError::Lost),
            };
        }
    }
    info!("became leader");
    crate::metrics::metrics().leader.set(1);
    let outcome = tokio::select! {
        _ = work() => Ok(()),
        _ = lost(&mut leading) => {
            warn!("lost the leader lease; stopping");
            Err(LeaderError::Lost)
        }
    };
    crate::metrics::metrics().leader.set(0);
    // Closing the channel makes the manager release the lease, so a standby
    // takes over at once instead of after the lease expires.
    drop(leading);
    let _ = task.await;
    outcome
}

async fn lost(leading: &mut watch::Receiver<bool>) {
    loop {
        if leading.changed().await.is_err() || !*leading.borrow_and_update() {
            return;
        }
    }
}
