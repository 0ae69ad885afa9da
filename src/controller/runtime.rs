//! What a pool keeps between reconciles (its Nomad client, cloud provider,
//! watches and the memory of its own writes), built once per connection
//! fingerprint and kept in the context until the spec or its Secrets change.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::conditions::Trouble;
use super::context::Context;
use super::group::GroupView;
use super::reconcile::{ActionError, TerminateTurns};
use super::siblings::SiblingWatch;
use super::trigger::Trigger;
use super::visibility::VisibilityWatch;
use super::watch::PoolWatch;
use super::write_log::WriteLog;
use super::{connect, resends};
use crate::api::NomadClientPool;
use crate::nomad::{self, NomadClient, PoolSelector};
use crate::provider::{self, CloudProvider};

/// Terminate calls one pool has in flight, by default. Thousands of VMs can
/// clear the gate together (a 4,000-client scale-in at 25 %); sent all at
/// once, they queued in the cloud API's throttle (or moto's one process),
/// timed out after 20 s and were sent again, and almost none landed. Cloud
/// APIs throttle mutating calls per account, so a handful at a time is as
/// fast. `--terminate-calls-per-pool` sets it for an account whose quota
/// allows more.
pub const TERMINATE_CALLS: usize = 10;

/// The operator-wide setting, read when a pool's runtime is built.
static TERMINATE_CALLS_SET: AtomicUsize = AtomicUsize::new(TERMINATE_CALLS);

/// Sets the terminate calls per pool for runtimes built from now on (call
/// at start). At least one.
pub fn set_terminate_calls(n: usize) {
    TERMINATE_CALLS_SET.store(n.max(1), Ordering::Relaxed);
}

/// What a pool needs between reconciles: its clients and its watches.
pub struct PoolRuntime {
    pub fingerprint: u64,
    pub address: String,
    pub nomad: NomadClient,
    pub provider: Arc<dyn CloudProvider>,
    pub watch: PoolWatch,
    pub group: GroupView,
    /// Whether the token provably sees every allocation; no termination
    /// without it.
    pub visibility: VisibilityWatch,
    /// Every Nomad node reporting the VMs at the termination gate.
    pub siblings: SiblingWatch,
    /// Since when each in-service VM of the group has had no node of the
    /// pool, for `remediation.unregisteredAfter` and the join grace of
    /// `VMsWithoutClient` (see `clientless`).
    pub clientless: super::clientless::ClientlessClock,
    /// Nomad writes to nodes not yet seen in the node view.
    pub writes: WriteLog,
    /// Drains answered `200` that the node view does not show.
    pub drain_resends: resends::DrainResends,
    /// The planner's facts of the last node snapshot.
    pub facts: super::reconcile::facts::FactsCache,
    /// Instances whose terminate call is running: they are not sent again.
    pub terminating: Mutex<std::collections::HashSet<String>>,
    /// Turns to call the cloud's terminate (see [`set_terminate_calls`]),
    /// and the VMs checked ahead of them.
    pub terminate_turns: TerminateTurns,
    /// Failed terminate calls, reported by the next reconcile.
    pub cloud_failures: Mutex<Vec<ActionError>>,
    pub trigger: Trigger,
    /// The pool's lifecycle hook and heartbeats (see `hooks`).
    pub hooks: super::hooks::HookRuntime,
    /// Since when each client has been down or disconnected, for
    /// `remediation` (see `unhealthy`).
    pub unhealthy: super::unhealthy::UnhealthyClock,
    /// Drained clients terminated between reconciles (see `express`).
    pub express: super::reconcile::express::ExpressLane,
}

impl PoolRuntime {
    /// A Nomad write to `node_id` answered with `index`: not sent again
    /// while the node view does not show it, and read back from the node
    /// if the view does not show it within seconds.
    pub fn wrote(&self, node_id: &str, index: u64) {
        self.writes.record(node_id, index);
        self.watch.expect_write(node_id, index);
    }
}

/// The pool's runtime: the one in the context if its connection is
/// unchanged, else a new one (its Nomad client, provider and watches).
pub(super) async fn runtime(
    pool: &NomadClientPool,
    ctx: &Context,
) -> Result<Arc<PoolRuntime>, Trouble> {
    let ns = pool.namespace().unwrap_or_default();
    let key = ObjectRef::from_obj(pool);
    let conn = connect::resolve(&ctx.client, &ns, &pool.spec)
        .await
        .map_err(|e| {
            if e.revokes_consent() {
                // Its watches would keep sending a credential no longer allowed.
                ctx.pools.lock().expect("pools lock").remove(&key);
            }
            Trouble::from_connect(&e)
        })?;
    ctx.ambient
        .check(&ns, conn.provider.as_ref())
        .map_err(Trouble::refused)?;
    if let Some(rt) = ctx.pools.lock().expect("pools lock").get(&key)
        && rt.fingerprint == conn.fingerprint
    {
        return Ok(rt.clone());
    }
    let address = conn.nomad.address.clone();
    let nomad = NomadClient::new(conn.nomad).map_err(|e| Trouble::from_nomad(&e, &address))?;
    let provider = match conn.provider {
        Some(config) => {
            let name = config.group_name().to_owned();
            provider::connect(ctx.connector.as_ref(), config)
                .await
                .map_err(|e| Trouble::from_provider(&e, &name))?
        }
        None => {
            return Err(Trouble {
                reason: "InvalidSpec",
                message: "spec.provider names no provider".into(),
                retry: Duration::from_secs(120),
                stalls: true,
            });
        }
    };
    let selector = PoolSelector {
        node_pool: pool.spec.selector.node_pool.clone(),
        node_class: pool.spec.selector.node_class.clone(),
        datacenters: pool.spec.selector.datacenters.clone(),
        meta: pool.spec.selector.meta.clone(),
    };
    let filter = nomad::node_pool_filter(&selector);
    let filter = (!filter.is_empty()).then_some(filter);
    let express = super::reconcile::express::ExpressLane::default();
    let trigger = Trigger::new(ctx.trigger.clone(), key.clone()).with_lane(express.wake.clone());
    let watch = PoolWatch::start(
        nomad.clone(),
        filter,
        selector,
        provider.instance_id_attribute(),
        trigger.clone(),
    );
    let group = GroupView::new(provider.clone(), trigger.clone());
    let visibility = VisibilityWatch::start(nomad.clone(), trigger.clone());
    let siblings = SiblingWatch::new(
        nomad.clone(),
        provider.instance_id_attribute(),
        trigger.clone(),
    );
    // Turns count VMs in a call: a provider that batches carries more VMs
    // per call (`batchTerminations`), in as many calls.
    let calls = TERMINATE_CALLS_SET.load(Ordering::Relaxed) * provider.terminations_per_call();
    let rt = Arc::new(PoolRuntime {
        fingerprint: conn.fingerprint,
        address,
        nomad,
        provider,
        watch,
        group,
        visibility,
        siblings,
        clientless: Default::default(),
        writes: Default::default(),
        drain_resends: Default::default(),
        facts: Default::default(),
        terminating: Default::default(),
        terminate_turns: TerminateTurns::new(calls),
        cloud_failures: Default::default(),
        trigger,
        hooks: Default::default(),
        unhealthy: Default::default(),
        express,
    });
    rt.express.start(Arc::downgrade(&rt));
    ctx.pools
        .lock()
        .expect("pools lock")
        .insert(key, rt.clone());
    Ok(rt)
}
