use std::collections::VecDeque;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::*;
use crate::provider::QueuedNotice;
use crate::provider::fake::FakeProvider;

fn terminating(group: &str, hook: &str, id: &str) -> Notice {
    Notice::Terminating {
        group: group.into(),
        hook: hook.into(),
        instance_id: id.into(),
        token: Some(format!("00000000-0000-4000-8000-00000000000{}", id.len())),
    }
}

#[test]
fn triage_deletes_our_tests_keeps_ours_and_leaves_the_rest() {
    let t = |n: &Notice| triage(n, "g", "h");
    assert_eq!(
        t(&Notice::Test {
            group: Some("g".into())
        }),
        Triage::Delete
    );
    assert_eq!(t(&Notice::Test { group: None }), Triage::Delete);
    assert_eq!(
        t(&Notice::Test {
            group: Some("other".into())
        }),
        Triage::Leave
    );
    assert!(matches!(
        t(&terminating("g", "h", "i-1")),
        Triage::Ours { instance_id, token: Some(_) } if instance_id == "i-1"
    ));
    assert_eq!(t(&terminating("other", "h", "i-1")), Triage::Leave);
    assert_eq!(t(&terminating("g", "other-hook", "i-1")), Triage::Leave);
    assert_eq!(t(&Notice::Other { why: "x" }), Triage::Leave);
}

#[test]
fn overlay_marks_only_views_older_than_the_confirmation() {
    let p = FakeProvider::new("g", &["i-1", "i-2", "i-3"]);
    let mut g = p.group_state();
    g.instances[1].lifecycle = Lifecycle::Terminating;
    let held = vec![
        ("i-1".to_owned(), None),
        ("i-2".to_owned(), None),
        ("i-9".to_owned(), None),
    ];
    assert_eq!(overlay(&held, &mut g), 1);
    assert_eq!(g.instances[0].lifecycle, Lifecycle::TerminatingWait);
    // Already leaving: the view is newer than the message.
    assert_eq!(g.instances[1].lifecycle, Lifecycle::Terminating);
    assert_eq!(g.instances[2].lifecycle, Lifecycle::InService);
    assert_eq!(g.instances.len(), 3, "nothing is added");
}

/// A queue in memory: what tests put, receive hands out (in-flight until
/// deleted), deletes recorded.
#[derive(Debug, Default)]
struct MemQueue {
    inbox: Mutex<VecDeque<QueuedNotice>>,
    deleted: Mutex<Vec<String>>,
    fail: Mutex<Option<QueueError>>,
}

impl LifecycleQueue for MemQueue {
    fn url(&self) -> &str {
        "http://127.0.0.1:1/123456789012/q"
    }
    fn receive(&self) -> BoxFuture<'_, Result<Vec<QueuedNotice>, QueueError>> {
        async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some(e) = self.fail.lock().unwrap().clone() {
                return Err(e);
            }
            Ok(self.inbox.lock().unwrap().drain(..).collect())
        }
        .boxed()
    }
    fn delete<'a>(&'a self, receipt_handle: &'a str) -> BoxFuture<'a, Result<(), QueueError>> {
        self.deleted.lock().unwrap().push(receipt_handle.to_owned());
        futures::future::ready(Ok(())).boxed()
    }
}

fn message(receipt: &str, notice: Notice) -> QueuedNotice {
    QueuedNotice {
        message_id: receipt.into(),
        receipt_handle: receipt.into(),
        notice,
    }
}

async fn settle() {
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_confirmed_message_wakes_the_pool_and_is_deleted_only_when_the_action_is_over() {
    let provider = FakeProvider::new("g", &["i-1", "i-2"]);
    provider.hooks(|h, _| h.put("h", 30)).unwrap();
    provider.hooks(|h, g| h.begin_terminating(g, "i-1"));
    let queue = Arc::new(MemQueue::default());
    queue.inbox.lock().unwrap().extend([
        message(
            "test",
            Notice::Test {
                group: Some("g".into()),
            },
        ),
        message("other-group", terminating("other", "h", "i-7")),
        message("ours", terminating("g", "h", "i-1")),
        // The group shows i-2 in service: not believed, not deleted.
        message("unconfirmed", terminating("g", "h", "i-2")),
    ]);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let key = kube::runtime::reflector::ObjectRef::new("p").within("ns");
    let watch = QueueWatch::start(
        queue.url(),
        QueueParts {
            queue: Ok(queue.clone()),
            provider: provider.clone(),
            group: "g".into(),
            hook: "h".into(),
            trigger: Trigger::new(tx, key),
        },
    );
    tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .expect("the pool is woken")
        .unwrap();
    assert_eq!(watch.held().len(), 1);
    assert_eq!(watch.held()[0].0, "i-1");
    assert!(watch.token("i-1").is_some());
    assert_eq!(*queue.deleted.lock().unwrap(), vec!["test".to_owned()]);
    // Completed: the sweep sees it leave the wait and deletes its message.
    let action = crate::provider::LifecycleAction {
        hook: "h".into(),
        instance_id: "i-1".into(),
        token: None,
    };
    provider.hooks(|h, g| h.complete(g, &action));
    tokio::time::sleep(SWEEP_EVERY + Duration::from_millis(500)).await;
    settle().await;
    assert_eq!(
        *queue.deleted.lock().unwrap(),
        vec!["test".to_owned(), "ours".to_owned()]
    );
    assert!(watch.held().is_empty());
}

#[tokio::test]
async fn a_queue_that_cannot_be_read_is_reported_and_retried() {
    let provider = FakeProvider::new("g", &["i-1"]);
    let queue = Arc::new(MemQueue::default());
    *queue.fail.lock().unwrap() = Some(QueueError::NotFound {
        url: queue.url().into(),
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let key = kube::runtime::reflector::ObjectRef::new("p").within("ns");
    let watch = QueueWatch::start(
        queue.url(),
        QueueParts {
            queue: Ok(queue.clone()),
            provider,
            group: "g".into(),
            hook: "h".into(),
            trigger: Trigger::new(tx, key),
        },
    );
    rx.recv().await.unwrap();
    assert!(matches!(watch.problem(), Some(QueueError::NotFound { .. })));
    *queue.fail.lock().unwrap() = None;
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("woken again when the queue reads")
        .unwrap();
    assert_eq!(watch.problem(), None);
}
