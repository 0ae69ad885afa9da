//! Managed instance groups in gce-sim, as the harness creates and reads
//! them, the credentials the operator reaches gce-sim with, and the bridge
//! that makes the Nomad simulator's nodes follow a group's VMs.
//!
//! Credentials: a real service-account key file (an RSA key made with the
//! openssl CLI, in Google's `key.json` format) in the pool's Secret, its
//! public half registered with gce-sim, which from then on refuses every
//! Compute call without a token that key signed (gce-sim `src/auth.rs`).
//! The operator signs its tokens with google-cloud-auth as it would against
//! Google; nothing in the pool spec or the binary is test-only.
//!
//! Ownership: the operator reads a MIG's owner from its `description`
//! (`nomadpool.dev/pool=<namespace>/<name>`), which the harness sets as the
//! group's owner would.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use gce_sim::state::Timing;
use serde_json::{Value, json};

use crate::aws::{Group, Instance, OWNER_TAG};
use crate::cluster::create_secret;
use crate::sim::Bridge;

/// The project and zone of every test group (a project ID the CRD accepts).
pub const GCE_PROJECT: &str = "npo-tests";
pub const GCE_ZONE: &str = "us-central1-a";
/// The pool Secret holding the service-account key (as `key.json`).
pub const GCE_SECRET: &str = "gce";

/// A private gce-sim (in this process, on its own port) with a service
/// account whose key the operator uses.
pub struct GceCloud {
    pub sim: gce_sim::Sim,
    pub url: String,
    /// The service-account key file's JSON (what `key.json` holds).
    pub key_json: String,
    http: reqwest::Client,
}

/// Timings for end-to-end tests: operations DONE after one poll, VMs that
/// start in 2 s and delete in half a second, in real time. A deleted VM's
/// client is gone before Nomad marks it down anyway.
pub fn e2e_timing() -> Timing {
    Timing {
        operation_polls: 1,
        operation_duration_s: 0.0,
        delete_duration_s: 0.5,
        abandon_duration_s: 0.5,
        create_duration_s: 2.0,
        recreate_duration_s: 2.0,
        ..Timing::default()
    }
}

impl GceCloud {
    pub async fn start() -> GceCloud {
        Self::start_with(e2e_timing()).await
    }

    pub async fn start_with(timing: Timing) -> GceCloud {
        let sim = gce_sim::serve(gce_sim::Config {
            timing,
            ..Default::default()
        })
        .await
        .expect("starting gce-sim");
        let url = sim.url();
        let (key_json, account) = service_account_key(GCE_PROJECT, "npo-operator");
        let cloud = GceCloud {
            sim,
            url,
            key_json,
            http: reqwest::Client::new(),
        };
        cloud.post("/sim/service_accounts", account).await;
        cloud
    }

    pub async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        crate::sim::control_call(&self.http, "gce-sim", &self.url, method, path, body).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.control(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Value {
        self.control(reqwest::Method::GET, path, None).await
    }

    /// A zonal group of `size` RUNNING VMs.
    pub async fn create_group(&self, name: &str, size: i32) {
        self.post(
            "/sim/groups",
            json!({"project": GCE_PROJECT, "zone": GCE_ZONE, "name": name,
                   "target_size": size, "base_instance_name": name}),
        )
        .await;
    }

    /// Mark `group` as owned by the pool `owner` (`<namespace>/<name>`).
    pub async fn set_owner(&self, group: &str, owner: &str) {
        self.post(
            "/sim/groups/description",
            json!({"project": GCE_PROJECT, "zone": GCE_ZONE, "name": group,
                   "description": format!("Nomad CI clients {OWNER_TAG}={owner}")}),
        )
        .await;
    }

    /// The group as the API shows it (`group`) and all its managed instances.
    pub async fn raw_group(&self, name: &str) -> (Value, Vec<Value>) {
        let all = self.get("/sim/groups").await;
        let g = all["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|g| g["group"]["name"] == name)
            .unwrap_or_else(|| panic!("no group {name} in gce-sim: {all}"))
            .clone();
        let mi = g["managed_instances"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (g["group"].clone(), mi)
    }

    /// The group in the harness's cloud-neutral shape: `desired` is
    /// `targetSize`, `min` 0 (a MIG has none), instances by VM id with
    /// `currentAction/instanceStatus` as their lifecycle (from gce-sim's
    /// compact read of the group's VMs).
    pub async fn group(&self, name: &str) -> Group {
        let v = self.get(&vms_query(name)).await;
        Group {
            desired: v["target_size"].as_i64().unwrap_or(0) as i32,
            min: 0,
            instances: v["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .map(vm_as_managed)
                .map(|i| Instance {
                    id: vm_id(&i),
                    lifecycle: format!(
                        "{}/{}",
                        i["currentAction"].as_str().unwrap_or(""),
                        i["instanceStatus"].as_str().unwrap_or("")
                    ),
                    protected: false,
                })
                .collect(),
        }
    }

    /// Make the VM `vm_id` of `group` look `age_s` seconds old (its
    /// `creationTimestamp`), as a VM made that long ago.
    pub async fn backdate(&self, group: &str, vm_id: &str, age_s: f64) {
        let (_, managed) = self.raw_group(group).await;
        let name = (managed.iter())
            .find(|i| i["id"] == vm_id)
            .and_then(|i| i["name"].as_str())
            .unwrap_or_else(|| panic!("no VM {vm_id} in {group}"))
            .to_string();
        self.post(
            "/sim/instances",
            json!({"project": GCE_PROJECT, "zone": GCE_ZONE, "group": group,
                   "name": name, "age_s": age_s}),
        )
        .await;
    }

    /// What a person does to roll a group onto a new template: make the
    /// template `template` (gce-sim's control surface: it has no
    /// templates' contents), then `setInstanceTemplate` through the
    /// Compute API with the service account's key, waiting for its
    /// Operation. Answers the template's URL.
    pub async fn set_instance_template(&self, group: &str, template: &str) -> String {
        let made = self
            .post(
                "/sim/instance_templates",
                json!({"project": GCE_PROJECT, "name": template}),
            )
            .await;
        let url = made["self_link"].as_str().expect("self_link").to_string();
        let token = self_signed_jwt(&self.key_json);
        let base = format!(
            "{}/compute/v1/projects/{GCE_PROJECT}/zones/{GCE_ZONE}",
            self.url
        );
        let call = |req: reqwest::RequestBuilder| async {
            let r = req.bearer_auth(&token).send().await.expect("Compute call");
            let status = r.status();
            let v: Value = r.json().await.expect("JSON answer");
            assert!(status.is_success(), "{status}: {v}");
            v
        };
        let mut op = call(
            self.http
                .post(format!(
                    "{base}/instanceGroupManagers/{group}/setInstanceTemplate"
                ))
                .json(&json!({"instanceTemplate": url})),
        )
        .await;
        for _ in 0..50 {
            if op["status"] == "DONE" {
                assert!(
                    op.get("error").is_none(),
                    "setInstanceTemplate failed: {op}"
                );
                return url;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let name = op["name"].as_str().expect("operation name").to_string();
            op = call(self.http.get(format!("{base}/operations/{name}"))).await;
        }
        panic!("setInstanceTemplate never DONE: {op}");
    }

    /// Add a fault rule (gce-sim README, "A fault rule").
    pub async fn fault(&self, rule: Value) {
        self.post("/sim/faults", rule).await;
    }

    pub async fn clear_faults(&self) {
        self.control(reqwest::Method::DELETE, "/sim/faults", None)
            .await;
    }

    /// Every Compute call so far (method, path, decoded query, body, status).
    pub async fn requests(&self) -> Vec<Value> {
        self.get("/sim/requests").await["requests"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// The VM id of a managed instance (empty while it has none).
fn vm_id(i: &Value) -> String {
    i["id"].as_str().unwrap_or("").to_string()
}

/// A fresh RSA key as a service-account key file (Google's `key.json`
/// fields) and the control body that registers its public half.
pub fn service_account_key(project: &str, account: &str) -> (String, Value) {
    let dir = std::env::temp_dir().join(format!(
        "npo-sa-{account}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    openssl(
        &dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "key.pem",
        ],
    );
    openssl(
        &dir,
        &[
            "rsa",
            "-in",
            "key.pem",
            "-RSAPublicKey_out",
            "-out",
            "pub.pem",
        ],
    );
    let private = std::fs::read_to_string(dir.join("key.pem")).unwrap();
    let public = std::fs::read_to_string(dir.join("pub.pem")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let email = format!("{account}@{project}.iam.gserviceaccount.com");
    let key_id: String = (0..20)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let key = json!({
        "type": "service_account",
        "project_id": project,
        "private_key_id": key_id,
        "private_key": private,
        "client_email": email,
        "client_id": format!("{}", rand::random::<u64>()),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": format!(
            "https://www.googleapis.com/robot/v1/metadata/x509/{}",
            email.replace('@', "%40")
        ),
        "universe_domain": "googleapis.com",
    });
    let register =
        json!({"client_email": email, "private_key_id": key_id, "public_key_pem": public});
    (serde_json::to_string_pretty(&key).unwrap(), register)
}

/// A self-signed JWT for the key in `key_json` (a service-account key
/// file), as google-cloud-auth makes one (AIP-4111: header `{alg, typ,
/// kid}`, claims `{iss, sub, scope, iat, exp}`), signed with the openssl
/// CLI the harness already makes its keys with.
pub fn self_signed_jwt(key_json: &str) -> String {
    let key: Value = serde_json::from_str(key_json).expect("key.json");
    let email = key["client_email"].as_str().expect("client_email");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let b64 = |v: &[u8]| {
        gce_sim::state::base64_url(v)
            .trim_end_matches('=')
            .to_string()
    };
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": key["private_key_id"]});
    let claims = json!({"iss": email, "sub": email, "iat": now - 10, "exp": now + 3590,
                        "scope": "https://www.googleapis.com/auth/cloud-platform"});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let dir = std::env::temp_dir().join(format!(
        "npo-jwt-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("key.pem"), key["private_key"].as_str().unwrap()).unwrap();
    std::fs::write(dir.join("input"), &input).unwrap();
    openssl(
        &dir,
        &[
            "dgst", "-sha256", "-sign", "key.pem", "-out", "sig", "input",
        ],
    );
    let sig = std::fs::read(dir.join("sig")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    format!("{input}.{}", b64(&sig))
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl on PATH");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `gce` Secret of `namespace`: the service-account key as `key.json`,
/// labelled for that use as deploy/gce.md says.
pub async fn create_gce_secret(client: &kube::Client, namespace: &str, key_json: &str) {
    create_secret(
        client,
        namespace,
        GCE_SECRET,
        "gcp-credentials",
        json!({"key.json": key_json}),
    )
    .await;
}

/// Whether a managed instance's VM runs a Nomad client: it exists and
/// runs, and no action is ending it (a deleted, abandoned or recreated VM's
/// client stops, as the AWS bridge treats Terminating and Detaching).
fn runs_client(i: &Value) -> bool {
    !vm_id(i).is_empty()
        && i["instanceStatus"] == "RUNNING"
        && !matches!(
            i["currentAction"].as_str(),
            Some("DELETING" | "ABANDONING" | "RECREATING")
        )
}

/// The query of gce-sim's compact read of one test group's VMs.
fn vms_query(group: &str) -> String {
    format!("/sim/groups/vms?project={GCE_PROJECT}&zone={GCE_ZONE}&name={group}")
}

/// A VM as gce-sim's compact read (`GET /sim/groups/vms`) shows it, in the
/// managed-instance field names `runs_client` reads.
fn vm_as_managed(v: &Value) -> Value {
    json!({"name": v["name"], "id": v["id"], "instanceStatus": v["instance_status"],
           "currentAction": v["current_action"]})
}

/// One read of the group's VMs: `None` when the group is unchanged since
/// the read that returned `etag` (gce-sim answered 304), or could not be
/// read; otherwise the VMs (as managed instances) and the new tag.
async fn read_vms(
    http: &reqwest::Client,
    cloud_url: &str,
    group: &str,
    etag: Option<&str>,
) -> Option<(Vec<Value>, String)> {
    let mut req = http.get(format!("{cloud_url}{}", vms_query(group)));
    if let Some(tag) = etag {
        req = req.header(reqwest::header::IF_NONE_MATCH, tag);
    }
    let resp = req.send().await.ok()?;
    if resp.status() != reqwest::StatusCode::OK {
        return None;
    }
    let tag = resp
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let v: Value = resp.json().await.ok()?;
    let vms = v["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(vm_as_managed)
        .collect();
    Some((vms, tag))
}

/// As `sim::Bridge` for moto: a VM that starts running registers a client
/// in `node_pool` with Nomad's GCE fingerprint (`unique.platform.gce.id`
/// the VM id, `unique.platform.gce.hostname` its FQDN, `platform.gce.zone`);
/// a VM that is being deleted, abandoned or recreated, or is gone, stops
/// its client (which later turns down). It polls gce-sim's compact read
/// with the last `ETag`, so an unchanged group costs a 304 and no body
/// (it used to read `GET /sim/groups`, every group's full list: 2.4 MB
/// with five 1,000-VM groups, ten times a second).
pub fn gce_bridge(
    cloud_url: String,
    group: String,
    sim_url: String,
    node_pool: String,
    meta: Value,
) -> Bridge {
    let boot_failures = crate::sim::BootFailures::default();
    let failing = boot_failures.clone();
    let task = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut registered: HashSet<String> = HashSet::new();
        let mut killed: HashSet<String> = HashSet::new();
        let mut etag: Option<String> = None;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let Some((all, tag)) = read_vms(&http, &cloud_url, &group, etag.as_deref()).await
            else {
                continue;
            };
            let vms: BTreeMap<String, &Value> = all
                .iter()
                .filter(|i| runs_client(i))
                .map(|i| (vm_id(i), i))
                .collect();
            for (id, i) in &vms {
                if registered.insert(id.clone()) && !failing.take() {
                    let name = i["name"].as_str().unwrap_or_default();
                    let body = json!({"count": 1, "node_pool": node_pool, "node_class": "linux",
                        "cloud": "gce", "instance_ids": [id], "availability_zone": GCE_ZONE,
                        "attributes": {
                            "unique.platform.gce.hostname":
                                format!("{name}.c.{GCE_PROJECT}.internal"),
                            "platform.gce.zone": GCE_ZONE,
                        },
                        "meta": meta});
                    let _ = http
                        .post(format!("{sim_url}/sim/nodes"))
                        .json(&body)
                        .send()
                        .await;
                }
            }
            for id in registered.iter() {
                if !vms.contains_key(id) && killed.insert(id.clone()) {
                    let _ = http
                        .post(format!("{sim_url}/sim/nodes/{id}/kill"))
                        .send()
                        .await;
                }
            }
            etag = Some(tag);
        }
    });
    Bridge::from_task(task, boot_failures)
}
