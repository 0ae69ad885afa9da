//! Credentials never reach the log, whatever `NPO_LOG` asks for: the operator
//! runs a retirement at `trace` (globally and for the very targets that print
//! request headers and credentials: the AWS SDK's signing, runtime and config
//! crates, hyper and reqwest), with distinctive AWS keys, session token and
//! Nomad token, and the whole log is searched for each of them.

use std::path::PathBuf;
use std::time::Duration;

use npo_testkit::*;
use serde_json::json;

/// Every target known to log request headers or credentials, each asked for
/// at `trace` explicitly (a more specific directive beats a general one in
/// an env filter), after a global `trace`.
const NPO_LOG: &str = "trace,aws_sigv4=trace,aws_sigv4::http_request::sign=trace,\
aws_smithy_runtime=trace,aws_smithy_runtime::client::orchestrator=trace,\
aws_smithy_runtime_api=trace,aws_config=trace,aws_credential_types=trace,\
aws_sdk_autoscaling=trace,aws_smithy_http_client=trace,hyper=trace,hyper_util=trace,\
reqwest=trace,h2=trace,rustls=trace,nomad_pool_operator=trace";

/// The operator binary for `namespace`, with NPO_LOG; its log file.
fn start_operator_at_trace(namespace: &str) -> (Operator, PathBuf) {
    let log = log_dir().join(format!("operator-logsecrets-{namespace}.log"));
    let mut cmd = OperatorCmd::run(namespace, log.clone())
        .env("POD_NAME", "nomad-pool-operator")
        .env("NPO_LOG", NPO_LOG);
    cmd.truncate_log = true;
    (Operator::spawn(cmd), log)
}

/// For each (what, value) found in `text`, the first line holding it.
fn lines_with(text: &str, values: &[(&str, &String)]) -> Vec<String> {
    let mut found = vec![];
    for (what, value) in values {
        if let Some((n, line)) = text
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains(value.as_str()))
        {
            found.push(format!("{what} on line {}: {line:.300}", n + 1));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn no_credential_appears_in_a_trace_log_of_a_retirement() {
    let tag: u32 = rand::random();
    let nomad_token = format!("{tag:08x}-feed-4bad-8ee5-5ec2e7700000");
    let key_id = format!("AKIALOGTEST{tag:08X}");
    let secret_key = format!("logtest-secret-key-{tag:08x}");
    let session_token = format!("logtest-session-token-{tag:08x}");

    let mut opts = WorldOptions {
        size: 3,
        ..Default::default()
    };
    opts.sim.acl_tokens = vec![(nomad_token.clone(), nomad_sim::acl::Policy::Management)];
    let w = World::new("logsecrets", opts).await;
    create_secret(
        &w.client,
        &w.namespace,
        "aws",
        "aws-credentials",
        json!({"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret_key,
               "AWS_SESSION_TOKEN": session_token}),
    )
    .await;
    create_secret(
        &w.client,
        &w.namespace,
        "nomad-token",
        "nomad-token",
        json!({"token": nomad_token}),
    )
    .await;

    let (operator, log) = start_operator_at_trace(&w.namespace);

    // One client retired all the way: cordon, drain, terminate (AWS calls
    // signed with the keys), purge (Nomad calls with the token).
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 2, "nomad": {"tokenSecretRef": {"name": "nomad-token"}}}),
    ))
    .await;
    let tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    let start = std::time::Instant::now();
    loop {
        let st = w.status("pool").await;
        let done = st.retired_total == 1
            && st.retiring.is_empty()
            && condition(&st, "Ready").is_some_and(|c| c.status == "True");
        if done {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the retirement did not finish\nstatus: {}\nlog tail:\n{}",
            serde_json::to_string_pretty(&st).unwrap(),
            tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(w.group().await.desired, 2);
    w.sim.assert_no_violations().await;
    operator.kill().await;

    let text = std::fs::read_to_string(&log).unwrap();
    // The log really is at trace, and the requests really were made and
    // logged: otherwise finding nothing would prove nothing.
    assert!(
        text.lines().filter(|l| l.contains(" TRACE ")).count() > 100,
        "the operator did not log at trace"
    );
    assert!(
        text.contains(":terminate{instance=i-") && text.contains("hyper_util::client"),
        "the log does not show the AWS termination call's HTTP traffic"
    );
    assert!(
        text.contains("nomad request endpoint=GET /v1/acl/token/self status=200"),
        "the log does not show an authenticated Nomad request"
    );
    let found = lines_with(
        &text,
        &[
            ("AWS access key ID", &key_id),
            ("AWS secret access key", &secret_key),
            ("AWS session token", &session_token),
            ("Nomad token", &nomad_token),
        ],
    );
    assert!(
        found.is_empty(),
        "credentials in the log ({}):\n{}",
        log.display(),
        found.join("\n")
    );
    w.cleanup().await;
}
