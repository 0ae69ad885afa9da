//! How GitOps tools judge a live object: kstatus (Flux and kubectl-based
//! pipelines), by the real library built by `tests/env/up.sh`
//! (tests/env/go/kstatus), and Argo CD, by the health checks in
//! deploy/argocd/ run in Debian's Lua 5.1 (the Lua Argo CD embeds) with the
//! object as the global `obj`, as Argo CD passes it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use serde_json::Value;

use crate::env::{env, repo_root};

/// A tool's verdict: its status word and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub status: String,
    pub message: String,
}

/// The object as the API server serves it, every field kept.
pub async fn live<K>(client: &Client, namespace: &str, name: &str) -> Value
where
    K: kube::Resource<DynamicType = ()>,
{
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &ApiResource::erase::<K>(&()));
    let obj = api
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("reading {name}: {e}"));
    serde_json::to_value(obj).expect("an object is JSON")
}

/// The kstatus checker: `NPO_KSTATUS` from the env file, or where up.sh
/// puts it (`$NPO_CACHE/testbin/kstatus-<version>/kstatus`). Another
/// checkout's up.sh may rewrite the shared env file without the variable.
pub fn kstatus_bin() -> PathBuf {
    if let Some(p) = env().get("NPO_KSTATUS").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let build = read_env_file_kv(&repo_root().join("tests/env/go/kstatus/build.env"));
    let version = build
        .iter()
        .find(|(k, _)| k == "VERSION")
        .map(|(_, v)| v.clone())
        .expect("VERSION in tests/env/go/kstatus/build.env");
    let cache = std::env::var("NPO_CACHE").unwrap_or_else(|_| {
        format!(
            "{}/.cache/nomad-pool-operator",
            std::env::var("HOME").expect("HOME")
        )
    });
    PathBuf::from(cache).join(format!("testbin/kstatus-{version}/kstatus"))
}

/// KEY=VALUE lines of a build.env (data, never run).
fn read_env_file_kv(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// What kstatus computes for `obj`.
pub fn kstatus(obj: &Value) -> Verdict {
    let bin = kstatus_bin();
    assert!(
        bin.is_file(),
        "no kstatus checker at {}: tests/env/up.sh builds it (ensure_check_tools)",
        bin.display()
    );
    let out = run(
        Command::new(&bin),
        serde_json::to_vec(obj).unwrap(),
        "kstatus",
    );
    let v: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("kstatus printed {out:?}, not its JSON result: {e}"));
    Verdict {
        status: v["status"].as_str().unwrap_or_default().to_string(),
        message: v["message"].as_str().unwrap_or_default().to_string(),
    }
}

/// What the Argo CD health check `script` (under deploy/argocd/) says of
/// `obj`.
pub fn argo_health(script: &str, obj: &Value) -> Verdict {
    let path = repo_root().join("deploy/argocd").join(script);
    assert!(path.is_file(), "no health check {}", path.display());
    let chunk = format!(
        "obj = {}\nlocal hs = dofile({})\nio.write(tostring(hs.status), \"\\n\", tostring(hs.message))\n",
        lua_literal(obj),
        lua_string(&path.display().to_string())
    );
    let mut lua = Command::new("lua5.1");
    lua.arg("-");
    let out = run(
        lua,
        chunk.into_bytes(),
        "lua5.1 (tests/env/up.sh installs it)",
    );
    let (status, message) = out.split_once('\n').unwrap_or((&out, ""));
    Verdict {
        status: status.to_string(),
        message: message.to_string(),
    }
}

/// Run `cmd` with `stdin`; its stdout, or a panic that shows stderr.
fn run(mut cmd: Command, stdin: Vec<u8>, what: &str) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&stdin)
        .expect("writing the object");
    let out = child.wait_with_output().expect("waiting for it");
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// `v` as a Lua table constructor, as Argo CD converts objects: objects are
/// tables keyed by field, arrays are sequences from 1, null is absent.
pub fn lua_literal(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(lua_literal).collect();
            format!("{{{}}}", inner.join(", "))
        }
        Value::Object(fields) => {
            let inner: Vec<String> = fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_literal(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

/// A Lua 5.1 string literal: quotes and backslashes escaped, control bytes
/// as decimal escapes (Lua 5.1 has no `\x`).
fn lua_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii_control() => out.push_str(&format!("\\{:03}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
