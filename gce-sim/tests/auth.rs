//! Contract tests for authentication: once a service-account key is
//! registered, every Compute call needs a self-signed JWT (AIP-4111, what
//! google-cloud-auth's service-account credentials send) signed by it, and
//! is answered as Google's front end answers: `401 required` without one,
//! `401 authError` with a bad, foreign or expired one, `403
//! insufficientPermissions` without a Compute scope. The key pair is made
//! with the openssl CLI, as the test harness makes service-account keys.

mod common;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use serde_json::{Value, json};

const EMAIL: &str = "npo@proj.iam.gserviceaccount.com";

/// (PKCS#8 DER private key, PKCS#1 public key PEM), from openssl.
fn keypair(tag: &str) -> (Vec<u8>, String) {
    let dir = std::env::temp_dir().join(format!("gce-sim-auth-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("openssl on PATH");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "key.pem",
    ]);
    run(&[
        "rsa",
        "-in",
        "key.pem",
        "-RSAPublicKey_out",
        "-out",
        "pub.pem",
    ]);
    let pem = std::fs::read_to_string(dir.join("key.pem")).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(b64).unwrap();
    let public = std::fs::read_to_string(dir.join("pub.pem")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (der, public)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A JWT over `header` and `claims`, signed RS256 with `der`.
fn jwt(der: &[u8], header: Value, claims: Value) -> String {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let signing = format!("{}.{}", enc(&header), enc(&claims));
    let key = RsaKeyPair::from_pkcs8(der).unwrap();
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signing.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{signing}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// The claims google-cloud-auth sends by default (scope cloud-platform,
/// iat now - 10 s, exp now + 3610 s).
fn sdk_claims() -> Value {
    json!({"iss": EMAIL, "sub": EMAIL,
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "iat": now() - 10, "exp": now() + 3610})
}

fn header(kid: &str) -> Value {
    json!({"alg": "RS256", "typ": "JWT", "kid": kid})
}

async fn get_with(t: &T, token: Option<&str>) -> reqwest::Response {
    let mut req = t.http.get(t.u(&format!("{Z}/instanceGroupManagers/pool")));
    if let Some(tok) = token {
        req = req.bearer_auth(tok);
    }
    req.send().await.unwrap()
}

async fn register(t: &T, public: &str) {
    t.ctl(
        "/sim/service_accounts",
        json!({"client_email": EMAIL, "private_key_id": "k1", "public_key_pem": public}),
    )
    .await;
}

#[tokio::test]
async fn without_a_registered_key_no_credentials_are_needed() {
    let t = start().await;
    t.zonal("pool", 1).await;
    assert_eq!(get_with(&t, None).await.status(), 200);
}

#[tokio::test]
async fn a_missing_token_is_googles_401_login_required() {
    let t = start().await;
    t.zonal("pool", 1).await;
    let (_, public) = keypair("missing");
    register(&t, &public).await;
    let r = get_with(&t, None).await;
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"https://accounts.google.com/\""
    );
    let (status, body) = err(r).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"error": {"code": 401,
            "message": "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
            "errors": [{"message": "Login Required.", "domain": "global", "reason": "required",
                "location": "Authorization", "locationType": "header"}],
            "status": "UNAUTHENTICATED"}})
    );
    // Logged, with its answer, and nothing else happened.
    let log = t.requests().await;
    assert_eq!(log.last().unwrap()["status"], 401);
}

#[tokio::test]
async fn a_token_signed_by_the_registered_key_is_accepted_and_bad_ones_are_not() {
    let t = start().await;
    t.zonal("pool", 1).await;
    let (der, public) = keypair("good");
    let (other, _) = keypair("other");
    register(&t, &public).await;
    let good = jwt(&der, header("k1"), sdk_claims());
    assert_eq!(get_with(&t, Some(&good)).await.status(), 200);
    // The audience form (no scope) is the other self-signed JWT (AIP-4111).
    let mut aud = sdk_claims();
    aud.as_object_mut().unwrap().remove("scope");
    aud["aud"] = json!("https://compute.googleapis.com/");
    assert_eq!(
        get_with(&t, Some(&jwt(&der, header("k1"), aud)))
            .await
            .status(),
        200
    );
    let mut expired = sdk_claims();
    expired["iat"] = json!(now() - 7200);
    expired["exp"] = json!(now() - 3600);
    let mut too_long = sdk_claims();
    too_long["exp"] = json!(now() + 86_400);
    let mut stranger = sdk_claims();
    stranger["iss"] = json!("someone@else.iam.gserviceaccount.com");
    for (what, token) in [
        ("another key", jwt(&other, header("k1"), sdk_claims())),
        ("an unknown kid", jwt(&der, header("k2"), sdk_claims())),
        ("an expired token", jwt(&der, header("k1"), expired)),
        ("a day-long token", jwt(&der, header("k1"), too_long)),
        ("another issuer", jwt(&der, header("k1"), stranger)),
        ("garbage", "not.a.jwt".to_string()),
    ] {
        let (status, body) = err(get_with(&t, Some(&token)).await).await;
        assert_eq!(status, 401, "{what}");
        assert_eq!(body["error"]["errors"][0]["reason"], "authError", "{what}");
        assert_eq!(
            body["error"]["errors"][0]["message"], "Invalid Credentials",
            "{what}"
        );
    }
    let mut storage = sdk_claims();
    storage["scope"] = json!("https://www.googleapis.com/auth/devstorage.read_only");
    let (status, body) = err(get_with(&t, Some(&jwt(&der, header("k1"), storage))).await).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["error"]["errors"][0]["reason"],
        "insufficientPermissions"
    );
}
