//! The sweep of VMs a batch detached but never terminated.
//!
//! A batch tags its VMs, detaches them, then terminates them through EC2
//! (`batch`). When that last call fails for good (the SDK's attempts spent)
//! or the process dies before it, the VMs run on outside the group. Their
//! retirements cannot end them: a VM outside the group is no longer the
//! group's, so the plan sends no terminate for it and the runtime skips one
//! for a VM it sees leaving. Left alone they are orphans, paid for and
//! running a Nomad client. So they are looked for: at the process's first
//! read of the group (a crash between the calls), every [`SWEEP_EVERY`] of
//! its reads, and on a task of its own soon after a terminate of detached
//! VMs failed.
//! A VM is ended only when it carries the tag naming this group and the
//! group no longer counts it: the tag goes on just before the detach, only
//! on VMs whose retirements recorded `Terminating`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use tokio::time::Instant;
use tracing::{info, warn};

use super::super::{GroupState, Lifecycle, ProviderError};
use super::{AwsAutoScalingGroup, DETACHED_TAG, MOST_PER_BATCH};

/// How often the group's reads look for detached VMs with no failure to
/// prompt them (a crash leaves no trace in the next process but the tag).
const SWEEP_EVERY: Duration = Duration::from_secs(600);
/// After a failed terminate of detached VMs: how long before a sweep, and
/// between sweeps while they fail, at most `SWEEP_TRIES` times (then the
/// reads' own sweeps take over).
const SWEEP_AGAIN: Duration = Duration::from_secs(10);
const SWEEP_TRIES: u32 = 30;

pub(super) struct Sweeper {
    ec2: aws_sdk_ec2::Client,
    /// When the last sweep started; `None` until the first. Held while one
    /// runs.
    last: tokio::sync::Mutex<Option<Instant>>,
    /// A follow-up of a failed terminate is scheduled.
    pending: AtomicBool,
}

impl Sweeper {
    pub(super) fn new(ec2: aws_sdk_ec2::Client) -> Self {
        Self {
            ec2,
            last: tokio::sync::Mutex::new(None),
            pending: AtomicBool::new(false),
        }
    }

    /// A terminate of VMs `aws` detached failed for good: sweep on a task
    /// of its own, so they end even while no reconcile reads the group (a
    /// settled pool reads it rarely).
    pub(super) fn soon(aws: &AwsAutoScalingGroup) {
        let Some(batch) = &aws.batch else {
            return;
        };
        if batch.sweep.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let aws = aws.clone();
        tokio::spawn(async move {
            let Some(batch) = aws.batch.clone() else {
                return;
            };
            for _ in 0..SWEEP_TRIES {
                tokio::time::sleep(SWEEP_AGAIN).await;
                let swept = match aws.describe().await {
                    Ok(group) => batch.sweep.sweep(&aws, &group).await,
                    Err(e) => Err(e),
                };
                match swept {
                    Ok(()) => break,
                    Err(e) => {
                        warn!(group = aws.group_name(), error = %e, "could not sweep VMs detached to terminate; trying again")
                    }
                }
            }
            batch.sweep.pending.store(false, Ordering::Release);
        });
    }

    /// At a read of the group: sweep at the process's first read (a crash
    /// between the calls) and every [`SWEEP_EVERY`]. A read that finds a
    /// sweep running goes on without waiting for it.
    pub(super) async fn maybe(&self, aws: &AwsAutoScalingGroup, group: &GroupState) {
        let due = match self.last.try_lock() {
            Ok(last) => last.is_none_or(|at| at.elapsed() >= SWEEP_EVERY),
            Err(_) => false,
        };
        if due && let Err(e) = self.sweep(aws, group).await {
            warn!(group = aws.group_name(), error = %e, "could not sweep VMs detached to terminate");
        }
    }

    async fn sweep(
        &self,
        aws: &AwsAutoScalingGroup,
        group: &GroupState,
    ) -> Result<(), ProviderError> {
        let mut last = self.last.lock().await;
        *last = Some(Instant::now());
        let n = self.end_detached(aws, group).await?;
        if n > 0 {
            info!(
                group = aws.group_name(),
                count = n,
                "terminated VMs detached to terminate whose terminate had not landed"
            );
        }
        Ok(())
    }

    /// Terminate the VMs tagged for this group that it no longer counts;
    /// how many.
    async fn end_detached(
        &self,
        aws: &AwsAutoScalingGroup,
        group: &GroupState,
    ) -> Result<usize, ProviderError> {
        let tag = Filter::builder()
            .name(format!("tag:{DETACHED_TAG}"))
            .values(aws.group_name())
            .build();
        let alive = Filter::builder()
            .name("instance-state-name")
            .set_values(Some(
                ["pending", "running", "stopping", "stopped"]
                    .map(String::from)
                    .to_vec(),
            ))
            .build();
        let mut found = Vec::new();
        let mut token = None;
        loop {
            let out = (self.ec2.describe_instances())
                .filters(tag.clone())
                .filters(alive.clone())
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| aws.classify(e))?;
            found.extend(
                (out.reservations().iter())
                    .flat_map(|r| r.instances())
                    .filter_map(|i| i.instance_id().map(str::to_owned)),
            );
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        let outside = outside_group(found, group);
        for ids in outside.chunks(MOST_PER_BATCH) {
            (self.ec2.terminate_instances())
                .set_instance_ids(Some(ids.to_vec()))
                .send()
                .await
                .map_err(|e| aws.classify(e))?;
        }
        Ok(outside.len())
    }
}

/// Of the tagged VMs `found`, those the group no longer counts: gone from
/// it, or leaving it without being terminated. A tagged VM still in
/// service is a batch's between its tag and its detach (or a refused
/// detach whose tag could not be taken off): the group's to keep.
fn outside_group(found: Vec<String>, group: &GroupState) -> Vec<String> {
    let counted: HashSet<&str> = (group.instances.iter())
        .filter(|i| i.lifecycle != Lifecycle::Detaching)
        .map(|i| i.id.as_str())
        .collect();
    (found.into_iter())
        .filter(|id| !counted.contains(id.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::fake::{group_of, vm};

    #[test]
    fn only_vms_the_group_no_longer_counts_are_swept() {
        let group = group_of(vec![
            vm("i-tagged-in-service", Lifecycle::InService),
            vm("i-leaving", Lifecycle::Detaching),
            vm("i-terminating", Lifecycle::Terminating),
        ]);
        let found = [
            "i-tagged-in-service",
            "i-leaving",
            "i-terminating",
            "i-gone",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(outside_group(found, &group), ["i-leaving", "i-gone"]);
    }
}
