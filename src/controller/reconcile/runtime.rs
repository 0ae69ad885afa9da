//! A pool's clients and watches (Nomad, the cloud provider, the allocation
//! and sibling watches), built once per connection fingerprint and kept in
//! the context until the spec or its Secrets change.

use super::*;

pub(super) async fn runtime(
    pool: &NomadClientPool,
    ctx: &Context,
) -> Result<Arc<PoolRuntime>, Trouble> {
    let ns = pool.namespace().unwrap_or_default();
    let key = ObjectRef::from_obj(pool);
    let conn = connect::resolve(&ctx.client, &ns, &pool.spec)
        .await
        .map_err(|e| {
            if e.withdraws_consent() {
                // Its watches would keep sending a credential no longer allowed.
                ctx.pools.lock().expect("pools lock").remove(&key);
            }
            Trouble::from_connect(&e)
        })?;
    ctx.ambient
        .check(&ns, conn.aws.as_ref())
        .map_err(Trouble::refused)?;
    if let Some(rt) = ctx.pools.lock().expect("pools lock").get(&key)
        && rt.fingerprint == conn.fingerprint
    {
        return Ok(rt.clone());
    }
    let address = conn.nomad.address.clone();
    let nomad = NomadClient::new(conn.nomad).map_err(|e| Trouble::from_nomad(&e, &address))?;
    let provider: Arc<dyn CloudProvider> = match conn.aws {
        Some(aws) => {
            let name = aws.group_name.clone();
            Arc::new(
                AwsAutoScalingGroup::new(aws)
                    .await
                    .map_err(|e| Trouble::from_provider(&e, &name))?,
            )
        }
        None => {
            return Err(Trouble {
                reason: "InvalidSpec",
                message: "spec.provider names no provider".into(),
                retry: Duration::from_secs(120),
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
    let trigger = Trigger::new(ctx.trigger.clone(), key.clone());
    let watch = PoolWatch::start(
        nomad.clone(),
        filter,
        selector,
        provider.instance_id_attribute(),
        trigger.clone(),
    );
    let group = crate::controller::group::GroupView::new(provider.clone(), trigger.clone());
    let visibility =
        crate::controller::visibility::VisibilityWatch::start(nomad.clone(), trigger.clone());
    let siblings = crate::controller::siblings::SiblingWatch::new(
        nomad.clone(),
        provider.instance_id_attribute(),
        trigger.clone(),
    );
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
        terminating: Default::default(),
        cloud_failures: Default::default(),
        trigger,
    });
    ctx.pools
        .lock()
        .expect("pools lock")
        .insert(key, rt.clone());
    Ok(rt)
}
