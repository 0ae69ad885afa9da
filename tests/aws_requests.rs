//! `nomadpool_aws_requests_total` counts what reaches AWS, not what the
//! provider was asked: a batch of terminations and the group reads go
//! through a proxy in front of moto that counts every request by `Action`,
//! one read throttled so the SDK retries it, and the metric must
//! say exactly what the proxy saw. Alone in its test binary: the metrics
//! are the process's, and another test's calls would land in them.

use std::collections::BTreeMap;

use nomad_pool_operator::provider::{CloudProvider, Lifecycle};
use npo_testkit::promql::Exposition;
use npo_testkit::proxy::aws_faults::{AwsFaults, FaultProxy};
use npo_testkit::{asg_client, unique};

/// The metric's count per (operation, code) now.
fn counted() -> BTreeMap<(String, String), f64> {
    let mut scrape = Exposition::default();
    scrape.add(&nomad_pool_operator::metrics::metrics().encode());
    (scrape.samples.into_iter())
        .filter(|(name, _, _)| name == "nomadpool_aws_requests_total")
        .map(|(_, l, v)| ((l["operation"].clone(), l["code"].clone()), v))
        .collect()
}

#[tokio::test]
async fn every_request_a_batch_and_the_sdks_retries_send_is_counted_once() {
    let name = unique("npo-aws-requests");
    npo_testkit::create_group(&asg_client(), &name, 0, 30, 25).await;
    let proxy = FaultProxy::start(&npo_testkit::moto_endpoint(), 7).await;
    let p = npo_testkit::aws::batching_provider_via(&name, &proxy.url).await;
    let group = p.describe_group().await.expect("describe the group");
    let victims: Vec<String> = (group.instances.iter())
        .filter(|i| i.lifecycle == Lifecycle::InService)
        .map(|i| i.id.clone())
        .take(20)
        .collect();
    npo_testkit::aws::terminate_all_at_once(&p, &victims).await;
    // A throttled read: each of the SDK's attempts reaches the proxy, and
    // each is counted, whatever the call's outcome.
    proxy.set_faults(AwsFaults {
        throttle_rate: 1.0,
        only_actions: vec!["DescribeAutoScalingGroups".into()],
        ..AwsFaults::default()
    });
    let refused = p.describe_group().await;
    assert!(refused.is_err(), "{refused:?}");
    proxy.set_faults(AwsFaults::default());
    p.describe_group().await.expect("describe the group");
    let stats = proxy.stats();
    let metric = counted();
    let per_operation = |op: &str| -> f64 {
        (metric.iter())
            .filter(|((o, _), _)| o == op)
            .map(|(_, v)| v)
            .sum()
    };
    for (action, s) in &stats {
        assert_eq!(
            per_operation(action),
            s.requests as f64,
            "{action}: metric {metric:?}, proxy {stats:?}"
        );
    }
    let operations: Vec<&String> = metric.keys().map(|(o, _)| o).collect();
    assert!(
        operations.iter().all(|o| stats.contains_key(*o)),
        "the metric names a request the proxy never saw: {metric:?} / {stats:?}"
    );
    // The calls inside one provider operation are there, under AWS's names.
    for inside in ["CreateTags", "DetachInstances", "TerminateInstances"] {
        assert!(per_operation(inside) >= 1.0, "{inside}: {metric:?}");
    }
    assert!(
        per_operation("TerminateInstances") < victims.len() as f64,
        "a batch ends its VMs in shared calls: {metric:?}"
    );
    let describes = &stats["DescribeAutoScalingGroups"];
    assert!(describes.throttled > 1, "the SDK retried: {stats:?}");
    let throttled = metric.get(&("DescribeAutoScalingGroups".into(), "400".into()));
    assert_eq!(throttled, Some(&(describes.throttled as f64)), "{metric:?}");
}
