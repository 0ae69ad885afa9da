//! Terminations in batches (`batchTerminations`): up to 20 drained VMs per
//! call instead of one `TerminateInstanceInAutoScalingGroup` each.
//!
//! A batch is three calls, in this order:
//! 1. EC2 `CreateTags` puts [`DETACHED_TAG`] (naming the group) on its VMs:
//!    the record that a VM outside the group was detached by this operator
//!    to be terminated;
//! 2. `DetachInstances` takes them out of the group, with the capacity
//!    change the retirements ask for. It names its instances, so a retry of
//!    one that landed fails ("not part of Auto Scaling group") instead of
//!    lowering the capacity twice;
//! 3. EC2 `TerminateInstances` ends them.
//!
//! A crash (or a call failed for good) after step 2 leaves running VMs
//! outside the group, which no retirement ends: the group no longer
//! counts them, so no terminate is planned for them. The group's reads
//! sweep them up (`sweep`): a VM outside the group with the tag is
//! terminated through EC2. A VM read back while still `Detaching` (the
//! one-by-one path after a detach whose answer was lost) is ended the same
//! way ([`Batcher::finish_detached`]).
//! Without the tag a VM outside the group is not this operator's to end:
//! someone detached it on purpose.
//!
//! Batches form by group commit: whoever waits when a batch slot is free
//! sends everything queued (up to 20), once the oldest has waited
//! [`LINGER`] for company, so a burst shares calls. A VM still alone then
//! goes in one call of its own ([`FEWEST_PER_BATCH`]): a batch of one would
//! be three calls where one does. A detach runs no terminating lifecycle
//! hook (AWS user guide, footnote of "lifecycle hooks"), so while the group
//! has a hook other than the pool's own, VMs go one by one as without
//! batching, and without the wait.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, InstanceStateName, Tag};
use tokio::sync::{Semaphore, oneshot};
use tokio::time::Instant;
use tracing::{info, warn};

use super::super::{ProviderError, TerminateOutcome};
use super::AwsAutoScalingGroup;

/// The EC2 tag on a VM this operator detached to terminate; its value is
/// the group's name.
pub const DETACHED_TAG: &str = "nomadpool.dev/detached-to-terminate";
/// AWS's limit of instances per `DetachInstances`.
pub const MOST_PER_BATCH: usize = 20;
/// A lone VM goes the one-VM way ([`one_by_one`]): one call and one round
/// trip, where a batch is three calls in a row. From two VMs on, a batch
/// makes one Auto Scaling call where the one-VM way makes one per VM. A
/// scale-in one VM at a time, the common case, cost three calls per VM
/// before (BENCHMARKS.md, twenty-eighth pass).
pub const FEWEST_PER_BATCH: usize = 2;
/// Batches in flight at once per group: the default terminate calls per
/// pool (`runtime::TERMINATE_CALLS`), whose turns the pool multiplies by
/// [`MOST_PER_BATCH`] (`terminations_per_call`), so that a VM in its turn
/// is mostly in a batch on the wire, not queued behind one. Group commit
/// fills batches from VMs that arrive while all slots are busy. Two slots
/// (BENCHMARKS.md, seventeenth pass) left 12 VMs per batch on average and
/// most of a VM's 3 s turn in the queue, against a cloud whose three calls
/// took 0.4 s a batch.
const SLOTS: usize = 10;
/// How long a batch waits, from its oldest VM's arrival, for others to
/// share it: short beside the three calls it makes (0.4 s against a real
/// group, BENCHMARKS.md).
const LINGER: Duration = Duration::from_millis(100);
/// How long the group's lifecycle hooks, as read, decide how VMs go.
const HOOKS_FRESH: Duration = Duration::from_secs(60);

/// Whether a pool that asks for `batchTerminations` gets them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Batching {
    /// The group has no terminating lifecycle hook but the pool's own.
    On,
    /// Terminating hooks a detach would skip (their names): one VM per call.
    OtherHooks(Vec<String>),
    /// The group's hooks could not be read (what went wrong): one VM per
    /// call until they are.
    Unreadable(String),
}

/// What a pool asks of batching.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchTerminations {
    /// The pool's own terminating hook (`lifecycleHook.name`): the operator
    /// completes its actions itself, so skipping it loses nothing.
    pub own_hook: Option<String>,
}

type Reply = Result<TerminateOutcome, ProviderError>;

struct Waiter {
    seq: u64,
    queued: Instant,
    instance_id: String,
    decrement: bool,
    reply: oneshot::Sender<Reply>,
}

#[derive(Default)]
struct Queue {
    next_seq: u64,
    waiting: VecDeque<Waiter>,
}

impl Queue {
    fn holds(&self, seq: u64) -> bool {
        self.waiting.iter().any(|w| w.seq == seq)
    }

    /// While the next batch may still grow: until when it waits. Never
    /// while the group's hooks keep VMs one by one (`batches_run` false):
    /// waiting would only delay them.
    fn filling(&self, batches_run: bool) -> Option<Instant> {
        let until = self.waiting.front()?.queued + LINGER;
        let grows = batches_run && self.waiting.len() < MOST_PER_BATCH;
        (grows && Instant::now() < until).then_some(until)
    }

    /// The oldest waiter and those after it with the same capacity change,
    /// at most `most`.
    fn take_batch(&mut self, most: usize) -> Vec<Waiter> {
        let Some(decrement) = self.waiting.front().map(|w| w.decrement) else {
            return Vec::new();
        };
        let mut batch = Vec::new();
        let mut rest = VecDeque::with_capacity(self.waiting.len());
        for w in self.waiting.drain(..) {
            if w.decrement == decrement && batch.len() < most {
                batch.push(w);
            } else {
                rest.push_back(w);
            }
        }
        self.waiting = rest;
        batch
    }
}

/// Removes a waiter whose caller went away before its batch was sent: a
/// VM nobody waits for is not terminated behind its caller's back.
struct Leave<'a> {
    queue: &'a Mutex<Queue>,
    seq: u64,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut queue = self.queue.lock().expect("batch queue lock");
        queue.waiting.retain(|w| w.seq != self.seq);
    }
}

pub(super) struct Batcher {
    ec2: aws_sdk_ec2::Client,
    own_hook: Option<String>,
    queue: Mutex<Queue>,
    slots: Semaphore,
    /// When the group's hooks were last read. An async lock held across
    /// the read: the batches that start together (up to `SLOTS`) wait for
    /// one `DescribeLifecycleHooks` instead of each sending its own, a
    /// throttled call on a real account.
    hooks_read_at: tokio::sync::Mutex<Option<Instant>>,
    /// What that read said: whether batches run, and the pool's condition
    /// (read without waiting, hence a lock of its own).
    last_read: Mutex<Option<Batching>>,
    /// Ends the VMs a batch detached but could not terminate.
    pub(super) sweep: super::sweep::Sweeper,
}

impl Batcher {
    pub(super) fn new(
        sdk_config: &aws_config::SdkConfig,
        endpoint: Option<&str>,
        wanted: BatchTerminations,
    ) -> Self {
        let mut config = aws_sdk_ec2::config::Builder::from(sdk_config)
            .interceptor(super::requests::CountRequests);
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint);
        }
        let ec2 = aws_sdk_ec2::Client::from_conf(config.build());
        Self {
            sweep: super::sweep::Sweeper::new(ec2.clone()),
            ec2,
            own_hook: wanted.own_hook,
            queue: Mutex::new(Queue::default()),
            slots: Semaphore::new(SLOTS),
            hooks_read_at: tokio::sync::Mutex::new(None),
            last_read: Mutex::new(None),
        }
    }

    /// Terminate `instance_id` in the next batch; as
    /// `AwsAutoScalingGroup::terminate_one` without the read first.
    pub(super) async fn terminate(
        &self,
        aws: &AwsAutoScalingGroup,
        instance_id: &str,
        decrement: bool,
    ) -> Reply {
        let (reply, answer) = oneshot::channel();
        let seq = {
            let mut queue = self.queue.lock().expect("batch queue lock");
            let seq = queue.next_seq;
            queue.next_seq += 1;
            queue.waiting.push_back(Waiter {
                seq,
                queued: Instant::now(),
                instance_id: instance_id.to_owned(),
                decrement,
                reply,
            });
            seq
        };
        let leave = Leave {
            queue: &self.queue,
            seq,
        };
        // Group commit: every waiter tries to send, and whoever gets a slot
        // sends what is queued; a waiter another batch took just waits. A
        // batch waits for company until its oldest VM has queued for
        // LINGER (or it is full): the terminates of one reconcile start on
        // their own tasks, each after its own last check, a few
        // milliseconds apart, and sent at once each went alone.
        loop {
            let slot = self.slots.acquire().await.expect("never closed");
            // Read (or recalled) before the batch forms: while the group's
            // hooks keep VMs one by one, a slot takes one VM, so a burst
            // spreads over the slots as without batches instead of going
            // call after call through one.
            let batches_run = self.hooks_allow_batches(aws).await;
            let most = if batches_run { MOST_PER_BATCH } else { 1 };
            let batch = {
                let mut queue = self.queue.lock().expect("batch queue lock");
                if !queue.holds(seq) {
                    break;
                }
                match queue.filling(batches_run) {
                    Some(until) => Err(until),
                    None => Ok(queue.take_batch(most)),
                }
            };
            match batch {
                Ok(batch) => self.send(aws, batch, batches_run).await,
                Err(until) => {
                    drop(slot);
                    tokio::time::sleep_until(until).await;
                }
            }
        }
        drop(leave);
        answer.await.unwrap_or_else(|_| {
            // The batch's sender went away mid-call (its task was dropped):
            // what happened is unknown, so the caller reads it back later.
            Err(ProviderError::Unreachable {
                message: "the batch carrying this terminate was abandoned".into(),
            })
        })
    }

    /// Send one batch and answer each of its waiters.
    async fn send(&self, aws: &AwsAutoScalingGroup, batch: Vec<Waiter>, batches_run: bool) {
        let Some(decrement) = batch.first().map(|w| w.decrement) else {
            return;
        };
        let ids: Vec<String> = batch.iter().map(|w| w.instance_id.clone()).collect();
        let replies = if batches_run && ids.len() >= FEWEST_PER_BATCH {
            self.detach_and_terminate(aws, &ids, decrement).await
        } else {
            one_by_one(aws, &ids, decrement, false).await
        };
        for (waiter, reply) in batch.into_iter().zip(replies) {
            // A caller gone since cannot be told; its retirement reads back.
            let _ = waiter.reply.send(reply);
        }
    }

    /// The three calls of a batch (module doc); each VM's answer in order.
    async fn detach_and_terminate(
        &self,
        aws: &AwsAutoScalingGroup,
        ids: &[String],
        decrement: bool,
    ) -> Vec<Reply> {
        let group = aws.group_name();
        let tagged = (self.ec2.create_tags())
            .set_resources(Some(ids.to_vec()))
            .tags(Tag::builder().key(DETACHED_TAG).value(group).build())
            .send()
            .await;
        if let Err(e) = tagged {
            // Nothing changed in the group yet: the usual way still works.
            warn!(group, error = %aws.classify(e), "could not tag VMs for a batch; terminating them one by one");
            return one_by_one(aws, ids, decrement, false).await;
        }
        match aws.detach(ids, decrement).await {
            Ok(()) => {}
            Err(e @ ProviderError::Refused { .. }) => {
                // AWS validates a detach whole before it acts, and it is
                // never retried once it may have landed: a refusal detached
                // nothing, so the tag must not claim otherwise (a VM someone
                // else detached meanwhile is theirs). Each VM is read back.
                warn!(group, error = %e, "DetachInstances refused; terminating the batch one by one");
                self.untag(aws, ids).await;
                return one_by_one(aws, ids, decrement, true).await;
            }
            Err(e) => {
                // A timeout can hide a detach that landed: each VM is read
                // back, and one outside the group with the tag is ended.
                warn!(group, error = %e, "DetachInstances failed; terminating the batch one by one");
                return one_by_one(aws, ids, decrement, true).await;
            }
        }
        info!(
            group,
            count = ids.len(),
            decrement,
            "detached instances to terminate"
        );
        let ended = (self.ec2.terminate_instances())
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await;
        match ended {
            Ok(_) => {
                info!(group, count = ids.len(), "terminating detached instances");
                ids.iter()
                    .map(|_| Ok(TerminateOutcome::Terminated))
                    .collect()
            }
            Err(e) => {
                // Detached and tagged: the sweep ends them (`sweep`).
                super::sweep::Sweeper::soon(aws);
                let err = aws.classify(e);
                warn!(group, error = %err, "TerminateInstances failed after the detach; the sweep of detached VMs ends them");
                ids.iter().map(|_| Err(err.clone())).collect()
            }
        }
    }

    /// Take the tag off VMs this operator did not detach.
    async fn untag(&self, aws: &AwsAutoScalingGroup, ids: &[String]) {
        let removed = (self.ec2.delete_tags())
            .set_resources(Some(ids.to_vec()))
            .tags(Tag::builder().key(DETACHED_TAG).build())
            .send()
            .await;
        if let Err(e) = removed {
            // Harmless while they stay in the group; only one detached by
            // someone else later would be taken for ours.
            warn!(group = aws.group_name(), error = %aws.classify(e), "could not take the detach tag off VMs a refused batch did not detach");
        }
    }

    /// Whether the group has no terminating hook but the pool's own. Read
    /// again after [`HOOKS_FRESH`]; an unreadable answer means no.
    pub(super) async fn hooks_allow_batches(&self, aws: &AwsAutoScalingGroup) -> bool {
        // Held across the read: batches that start together wait for one.
        let mut read_at = self.hooks_read_at.lock().await;
        if read_at.is_some_and(|at| at.elapsed() < HOOKS_FRESH) {
            return self.batching() == Some(Batching::On);
        }
        let now = match aws.terminating_hooks().await {
            Ok(hooks) => {
                let others: Vec<String> = (hooks.into_iter())
                    .filter(|h| Some(h) != self.own_hook.as_ref())
                    .collect();
                if others.is_empty() {
                    Batching::On
                } else {
                    Batching::OtherHooks(others)
                }
            }
            Err(e) => Batching::Unreadable(e.to_string()),
        };
        let mut last = self.last_read.lock().expect("batching lock");
        if last.as_ref() != Some(&now) {
            // Logged when it changes; the pool's `BatchTerminations`
            // condition says it for as long as it holds.
            match &now {
                Batching::On => {}
                Batching::OtherHooks(hooks) => {
                    warn!(
                        group = aws.group_name(),
                        ?hooks,
                        "the group has terminating lifecycle hooks a detach would skip; terminating VMs one by one"
                    );
                }
                Batching::Unreadable(error) => {
                    warn!(group = aws.group_name(), %error, "could not read the group's lifecycle hooks; terminating VMs one by one");
                }
            }
        }
        let allow = now == Batching::On;
        *last = Some(now);
        *read_at = Some(Instant::now());
        allow
    }

    /// What the last read of the group's hooks said; `None` before one.
    pub(super) fn batching(&self) -> Option<Batching> {
        self.last_read.lock().expect("batching lock").clone()
    }

    /// A VM outside the group: if this operator detached it to terminate
    /// it (the tag says so) and it still runs, terminate it now. `Some`
    /// when it was ours (whatever its state), `None` when it is not.
    pub(super) async fn finish_detached(
        &self,
        aws: &AwsAutoScalingGroup,
        instance_id: &str,
    ) -> Result<Option<TerminateOutcome>, ProviderError> {
        let filter = Filter::builder()
            .name("instance-id")
            .values(instance_id)
            .build();
        let out = (self.ec2.describe_instances())
            .filters(filter)
            .send()
            .await
            .map_err(|e| aws.classify(e))?;
        let Some(instance) = (out.reservations().iter())
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance_id))
        else {
            return Ok(None);
        };
        let ours = (instance.tags().iter())
            .any(|t| t.key() == Some(DETACHED_TAG) && t.value() == Some(aws.group_name()));
        if !ours {
            return Ok(None);
        }
        let state = instance.state().and_then(|s| s.name());
        if matches!(
            state,
            Some(InstanceStateName::ShuttingDown | InstanceStateName::Terminated)
        ) {
            return Ok(Some(TerminateOutcome::AlreadyTerminating));
        }
        (self.ec2.terminate_instances())
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| aws.classify(e))?;
        info!(
            instance_id,
            group = aws.group_name(),
            "terminating an instance detached to terminate before"
        );
        // The detach already changed the group; this call did not.
        Ok(Some(TerminateOutcome::AlreadyTerminating))
    }
}

/// Each VM through the one-VM terminate, one after the other, in the
/// batch's slot: a lone VM, one per slot while the group's hooks keep VMs
/// one by one, or a batch whose tag or detach failed (the slots then keep
/// the calls in flight to what they were without batches).
async fn one_by_one(
    aws: &AwsAutoScalingGroup,
    ids: &[String],
    decrement: bool,
    read_first: bool,
) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(ids.len());
    for id in ids {
        replies.push(aws.terminate_one(id, decrement, read_first).await);
    }
    replies
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(decrements: &[bool]) -> Queue {
        let mut q = Queue::default();
        for (i, d) in decrements.iter().enumerate() {
            let (reply, _) = oneshot::channel();
            q.waiting.push_back(Waiter {
                seq: i as u64,
                queued: Instant::now(),
                instance_id: format!("i-{i}"),
                decrement: *d,
                reply,
            });
        }
        q
    }

    #[test]
    fn a_batch_takes_the_oldest_kind_in_order_and_at_most_twenty() {
        let mut q = queue(&[true, false, true, true]);
        let take = |q: &mut Queue, most| -> Vec<String> {
            q.take_batch(most)
                .into_iter()
                .map(|w| w.instance_id)
                .collect()
        };
        assert_eq!(take(&mut q, MOST_PER_BATCH), ["i-0", "i-2", "i-3"]);
        assert_eq!(take(&mut q, MOST_PER_BATCH), ["i-1"]);
        assert!(take(&mut q, MOST_PER_BATCH).is_empty());

        let mut q = queue(&[true; 45]);
        assert_eq!(q.take_batch(MOST_PER_BATCH).len(), MOST_PER_BATCH);
        assert_eq!(q.take_batch(MOST_PER_BATCH).len(), MOST_PER_BATCH);
        assert!(q.holds(44) && !q.holds(0));
        // One by one (the group's hooks): a slot takes the oldest alone.
        assert_eq!(take(&mut q, 1), ["i-40"]);
        assert!(q.holds(41) && !q.holds(40));
        assert_eq!(q.take_batch(MOST_PER_BATCH).len(), 4);
    }

    #[test]
    fn a_batch_fills_until_its_oldest_waited_the_linger_or_it_is_full() {
        assert_eq!(queue(&[]).filling(true), None, "nothing to send");
        let mut q = queue(&[true, true]);
        let until = q.filling(true).expect("a fresh batch waits for company");
        assert!(until > Instant::now() && until <= Instant::now() + LINGER);
        assert_eq!(q.filling(false), None, "one by one: no wait");
        q.waiting[1].queued -= LINGER;
        assert_eq!(q.filling(true), Some(until), "timed from the first queued");
        q.waiting[0].queued -= LINGER;
        assert_eq!(q.filling(true), None, "after the linger, it goes");
        let full = queue(&[true; MOST_PER_BATCH]);
        assert_eq!(full.filling(true), None, "full");
    }
}
