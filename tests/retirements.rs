//! `NomadClientRetirement` objects end to end: one per client in flight,
//! made by the pool or by hand, stopped by deleting them, pruned beyond the
//! pool's history, rebuilt from Nomad when lost, and made from the status
//! of the previous version on an upgrade in place.

use std::time::Duration;

use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use nomad_pool_operator::api::{NomadClientRetirement, RetirementPhase};
use npo_testkit::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

fn ncrs(w: &World) -> Api<NomadClientRetirement> {
    Api::namespaced(w.client.clone(), &w.namespace)
}

async fn all_ncrs(w: &World) -> Vec<NomadClientRetirement> {
    ncrs(w).list(&ListParams::default()).await.unwrap().items
}

/// Wait until the namespace's retirements satisfy `pred`; they are returned.
async fn wait_ncrs(
    w: &World,
    what: &str,
    pred: impl Fn(&[NomadClientRetirement]) -> bool,
) -> Vec<NomadClientRetirement> {
    wait_for(what, T, || async {
        let items = all_ncrs(w).await;
        pred(&items).then_some(items)
    })
    .await
}

fn phase_of(items: &[NomadClientRetirement], name: &str) -> Option<RetirementPhase> {
    items
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(name))
        .map(|r| r.phase())
}

/// A retirement created by hand, as `kubectl create -f` would.
async fn create_by_hand(w: &World, name: &str, node_name: &str) {
    let r: NomadClientRetirement = serde_json::from_value(json!({
        "apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientRetirement",
        "metadata": {"name": name, "namespace": w.namespace},
        "spec": {"pool": "pool", "target": {"nodeName": node_name}},
    }))
    .unwrap();
    ncrs(w).create(&PostParams::default(), &r).await.unwrap();
}

async fn node(w: &World, name: &str) -> Value {
    w.sim
        .nodes()
        .await
        .into_iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

/// `kubectl` as an admin of this world's namespace; its stdout.
fn kubectl(w: &World, args: &[&str]) -> String {
    let out = std::process::Command::new(std::env::var("NPO_KUBECTL").expect("NPO_KUBECTL"))
        .args(["-n", &w.namespace])
        .args(args)
        .output()
        .expect("running kubectl");
    assert!(out.status.success(), "kubectl {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// An admin retires one client by hand; `kubectl get` and `describe` show it
/// draining and the job that blocks it; deleting the object gives the client
/// back (eligible again, drain cancelled) and terminates nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_hand_made_retirement_runs_and_deleting_it_gives_the_client_back() {
    let w = setup("ncr-by-hand", 3).await;
    let jobs = w.busy_everywhere().await;
    // No replicas: the pool retires only what it is asked to.
    w.apply_pool(&w.pool_manifest("pool", json!({}))).await;
    let target = w.ready_nodes().await[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let mut watch = tokio::process::Command::new(std::env::var("NPO_KUBECTL").unwrap())
        .args(["-n", &w.namespace, "get", "ncr", "-w"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl get -w");
    create_by_hand(&w, "retire-one", &target).await;

    let items = wait_ncrs(&w, "the retirement draining, its job counted", |rs| {
        phase_of(rs, "retire-one") == Some(RetirementPhase::Draining)
            && rs[0].status.as_ref().unwrap().allocations_left == 1
    })
    .await;
    let r = &items[0];
    assert_eq!(
        r.metadata.labels.as_ref().unwrap()["nomadpool.dev/pool"],
        "pool"
    );
    assert!(
        r.metadata
            .finalizers
            .as_ref()
            .unwrap()
            .contains(&"nomadpool.dev/retirement".into())
    );
    let st = r.status.as_ref().unwrap();
    assert_eq!(st.node_name.as_deref(), Some(target.as_str()));
    assert!(st.cordoned_by_pool);
    let job = format!("ci-build-{}", &st.node_id.as_deref().unwrap()[..8]);

    let table = kubectl(&w, &["get", "ncr"]);
    assert!(
        table.contains("retire-one") && table.contains("Draining"),
        "{table}"
    );
    let described = kubectl(&w, &["describe", "ncr", "retire-one"]);
    assert!(
        described.contains(&job),
        "describe names the blocking job:\n{described}"
    );

    ncrs(&w)
        .delete("retire-one", &DeleteParams::default())
        .await
        .unwrap();
    wait_ncrs(&w, "the retirement gone", |rs| rs.is_empty()).await;
    let n = node(&w, &target).await;
    assert_eq!(n["eligibility"], "eligible", "{n}");
    assert_eq!(n["draining"], false, "{n}");
    let g = w.group().await;
    assert_eq!((g.desired, g.instances.len()), (3, 3), "nothing terminated");
    // `kubectl get ncr -w` showed each phase as it happened.
    watch.start_kill().ok();
    let seen = String::from_utf8(watch.wait_with_output().await.unwrap().stdout).unwrap();
    let missing: Vec<&str> = ["Draining", "Cancelling", "Cancelled"]
        .into_iter()
        .filter(|p| !seen.contains(p))
        .collect();
    assert!(
        missing.is_empty(),
        "kubectl get -w never showed {missing:?}:\n{seen}"
    );
    drop(jobs);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// Hand-made retirements count in the disruption budget and wait for it:
/// with `maxUnavailable: 1`, a second one stays Pending, and a scale-in
/// starts nothing, until the first is done.
#[tokio::test(flavor = "multi_thread")]
async fn hand_made_retirements_wait_for_the_budget_and_count_in_it() {
    let w = setup("ncr-budget", 4).await;
    let jobs = w.busy_everywhere().await;
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 4, "disruption": {"maxUnavailable": 1}}),
    ))
    .await;
    let nodes = w.ready_nodes().await;
    let (a, b) = (
        nodes[0]["name"].as_str().unwrap(),
        nodes[1]["name"].as_str().unwrap(),
    );
    create_by_hand(&w, "first", a).await;
    wait_ncrs(&w, "the first draining", |rs| {
        phase_of(rs, "first") == Some(RetirementPhase::Draining)
    })
    .await;
    create_by_hand(&w, "second", b).await;
    w.patch_spec("pool", json!({"replicas": 3})).await;
    let st = w
        .wait_status("pool", "the second pending", T, |s| {
            s.retirements_pending == 1
        })
        .await;
    assert_eq!(st.retirements_in_flight, 1, "{st:#?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let items = all_ncrs(&w).await;
    assert_eq!(
        items.len(),
        2,
        "the scale-in waits for the budget too: {items:#?}"
    );
    assert_eq!(phase_of(&items, "second"), Some(RetirementPhase::Pending));
    let second = items
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("second"));
    let waits = second.and_then(|r| r.status.as_ref()?.message.clone());
    assert!(
        waits
            .as_deref()
            .is_some_and(|m| m.contains("disruption budget")),
        "a pending retirement says what it waits for: {waits:?}"
    );

    // The first one's job ends: it retires, then the second one starts.
    let first = items
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("first"))
        .unwrap();
    let first_node = first.status.as_ref().unwrap().node_id.clone().unwrap();
    let alloc = &jobs.iter().find(|(n, _)| *n == first_node).unwrap().1;
    w.sim.finish(alloc).await;
    wait_ncrs(&w, "first retired, second started", |rs| {
        phase_of(rs, "first") == Some(RetirementPhase::Retired)
            && phase_of(rs, "second").is_some_and(|p| p != RetirementPhase::Pending)
    })
    .await;
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// Finished retirements are kept up to `retirementHistoryLimit`, the
/// oldest deleted first.
#[tokio::test(flavor = "multi_thread")]
async fn finished_retirements_beyond_the_history_limit_are_deleted() {
    let w = setup("ncr-history", 4).await;
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 1, "retirementHistoryLimit": 2,
               "disruption": {"maxUnavailable": 1}}),
    ))
    .await;
    w.wait_status("pool", "three retired", T, |s| {
        s.retired_total == 3 && s.retirements_in_flight == 0
    })
    .await;
    let items = wait_ncrs(&w, "two kept", |rs| rs.len() == 2).await;
    assert!(
        items.iter().all(|r| r.phase() == RetirementPhase::Retired),
        "{items:#?}"
    );
    assert!(items.iter().all(|r| r.metadata.finalizers.is_none()));
    // Every write to them is recorded under the operator's name.
    let managers: Vec<&str> = (items.iter())
        .flat_map(|r| r.metadata.managed_fields.iter().flatten())
        .filter_map(|m| m.manager.as_deref())
        .collect();
    assert!(
        !managers.is_empty() && managers.iter().all(|m| *m == "nomad-pool-operator"),
        "{managers:?}"
    );
    // So is the pool's finalizer, added through kube's helper, which names
    // no field manager of its own: the operator's User-Agent does.
    let pool = w.pools().get("pool").await.unwrap();
    let finalizer_managers: Vec<&str> = (pool.metadata.managed_fields.iter().flatten())
        .filter(|m| {
            (m.fields_v1.as_ref()).is_some_and(|f| f.0["f:metadata"]["f:finalizers"].is_object())
        })
        .filter_map(|m| m.manager.as_deref())
        .collect();
    assert_eq!(
        finalizer_managers,
        ["nomad-pool-operator"],
        "{:#?}",
        pool.metadata.managed_fields
    );
    w.cleanup().await;
}

/// A drain of ours whose object was deleted while the operator was down
/// gets its object back, under the name its drain's Meta records, and the
/// pool starts no other retirement in its place.
#[tokio::test(flavor = "multi_thread")]
async fn a_drain_whose_retirement_was_lost_gets_it_back() {
    let mut w = setup("ncr-lost", 3).await;
    let jobs = w.busy_everywhere().await;
    w.apply_pool(&w.pool_manifest("pool", json!({"replicas": 2})))
        .await;
    let items = wait_ncrs(&w, "one draining", |rs| {
        rs.len() == 1 && rs[0].phase() == RetirementPhase::Draining
    })
    .await;
    let name = items[0].metadata.name.clone().unwrap();
    let node_id = items[0].status.as_ref().unwrap().node_id.clone().unwrap();

    w.operator.as_ref().unwrap().kill().await;
    let api = ncrs(&w);
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    wait_ncrs(&w, "the object gone", |rs| rs.is_empty()).await;
    w.restart_operator().await;

    let items = wait_ncrs(&w, "the object back", |rs| {
        rs.len() == 1 && rs[0].phase() != RetirementPhase::Pending
    })
    .await;
    assert_eq!(items[0].metadata.name.as_deref(), Some(name.as_str()));
    let st = items[0].status.as_ref().unwrap();
    assert_eq!(st.node_id.as_deref(), Some(node_id.as_str()));
    assert_eq!(st.phase, Some(RetirementPhase::Draining));
    for (_, alloc) in &jobs {
        w.sim.finish(alloc).await;
    }
    w.wait_status("pool", "settled at 2", T, |s| {
        s.retired_total == 1 && s.retirements_in_flight == 0
    })
    .await;
    let items = all_ncrs(&w).await;
    assert_eq!(items.len(), 1, "{items:#?}");
    assert_eq!(items[0].phase(), RetirementPhase::Retired);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}
