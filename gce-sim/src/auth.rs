//! Service-account authentication, as Google's front end does it for a
//! self-signed JWT (AIP-4111): the credential google-cloud-auth's
//! `service_account` builder sends. It signs `{iss, sub, scope, iat, exp}`
//! (or `aud` instead of `scope`) with the key's RSA private key, header
//! `{alg: RS256, typ: JWT, kid: <private_key_id>}`, and sends it as
//! `Authorization: Bearer <jwt>` without any token exchange.
//!
//! Off until a key is registered through `/sim/service_accounts` (the
//! reference's anonymous mode, §4.2 and §5.1.1, for contract tests); from
//! then on every Compute call needs a token signed by a registered key, as
//! real Compute needs one always. What Google answers without one: `401`
//! with `reason: required` ("Login Required."), with a bad one: `401` with
//! `reason: authError` ("Invalid Credentials"), both `UNAUTHENTICATED` with
//! a `WWW-Authenticate: Bearer realm="https://accounts.google.com/"` header;
//! a valid token without a Compute scope: `403 insufficientPermissions`.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use crate::http::{Resp, json};
use crate::wire::{ErrorBody, ErrorItem, ErrorStatus};

/// Scopes that grant the Compute calls the fake serves.
const COMPUTE_SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/compute",
];

/// The audience a self-signed JWT names when it carries no scope: the
/// service's own endpoint (AIP-4111).
const COMPUTE_AUDIENCE: &str = "https://compute.googleapis.com/";

/// Longest accepted `exp - iat`: an hour (AIP-4111), plus the clock-skew
/// allowance google-cloud-auth adds on both ends (it issues `iat = now -
/// 10 s`, `exp = now + 3610 s`) and Google's verifiers tolerate.
const MAX_LIFETIME_S: i64 = 3600 + 60;
const SKEW_S: i64 = 60;

/// A key registered for a service account (its public half).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountKey {
    pub client_email: String,
    pub private_key_id: String,
    /// PKCS#1 `RSA PUBLIC KEY` PEM (`openssl rsa -RSAPublicKey_out`).
    pub public_key_pem: String,
}

/// Registered keys by `private_key_id`.
#[derive(Debug, Default)]
pub struct Accounts {
    keys: BTreeMap<String, (AccountKey, Vec<u8>)>,
}

/// Why a request is not authenticated or not authorized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    #[error("token has no Compute scope")]
    Scope,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    sub: Option<String>,
    aud: Option<String>,
    scope: Option<String>,
    iat: i64,
    exp: i64,
}

impl Accounts {
    /// Register a key; its PEM must be an RSA public key.
    pub fn add(&mut self, key: AccountKey) -> Result<(), String> {
        let der = pem_der(&key.public_key_pem, "RSA PUBLIC KEY")
            .ok_or("public_key_pem is not an RSA PUBLIC KEY PEM")?;
        if key.client_email.is_empty() || key.private_key_id.is_empty() {
            return Err("client_email and private_key_id are required".into());
        }
        self.keys.insert(key.private_key_id.clone(), (key, der));
        Ok(())
    }

    pub fn list(&self) -> Vec<AccountKey> {
        self.keys.values().map(|(k, _)| k.clone()).collect()
    }

    pub fn enforced(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Checks an `Authorization` header value (None: absent).
    pub fn check(&self, header: Option<&str>) -> Result<(), AuthError> {
        let token = header
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let invalid = AuthError::Invalid;
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a JWT"));
        };
        let header: Header = decode_json(h).ok_or(invalid("header"))?;
        if header.alg != "RS256" {
            return Err(invalid("alg"));
        }
        let kid = header.kid.ok_or(invalid("no kid"))?;
        let (account, der) = self.keys.get(&kid).ok_or(invalid("unknown key"))?;
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| invalid("signature"))?;
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
            .verify(format!("{h}.{c}").as_bytes(), &sig)
            .map_err(|_| invalid("signature"))?;
        let claims: Claims = decode_json(c).ok_or(invalid("claims"))?;
        if claims.iss != account.client_email
            || claims.sub.as_deref().is_some_and(|s| s != claims.iss)
        {
            return Err(invalid("issuer"));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if claims.iat > now + SKEW_S
            || claims.exp <= now - SKEW_S
            || claims.exp - claims.iat > MAX_LIFETIME_S
        {
            return Err(invalid("expired or too long"));
        }
        match (claims.aud.as_deref(), claims.scope.as_deref()) {
            (Some(COMPUTE_AUDIENCE), None) => Ok(()),
            (None, Some(scope)) if scope.split(' ').any(|s| COMPUTE_SCOPES.contains(&s)) => Ok(()),
            (None, Some(_)) => Err(AuthError::Scope),
            _ => Err(invalid("audience")),
        }
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

fn pem_der(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = pem.trim().strip_prefix(&begin)?.strip_suffix(&end)?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(b64).ok()
}

const SEE: &str = "Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";

/// Google's answer to a request that failed `check`.
pub fn response(e: &AuthError, with_status: bool) -> Resp {
    let (code, message, item, reason, www) = match e {
        AuthError::Missing => (
            401,
            format!("Request is missing required authentication credential. {SEE}"),
            "Login Required.".to_string(),
            "required",
            "Bearer realm=\"https://accounts.google.com/\"",
        ),
        AuthError::Invalid(_) => (
            401,
            format!("Request had invalid authentication credentials. {SEE}"),
            "Invalid Credentials".to_string(),
            "authError",
            "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
        ),
        AuthError::Scope => (
            403,
            "Request had insufficient authentication scopes.".to_string(),
            "Insufficient Permission".to_string(),
            "insufficientPermissions",
            "Bearer realm=\"https://accounts.google.com/\", error=\"insufficient_scope\"",
        ),
    };
    let status = if code == 401 {
        "UNAUTHENTICATED"
    } else {
        "PERMISSION_DENIED"
    };
    let body = ErrorBody {
        error: ErrorStatus {
            code,
            message,
            errors: vec![ErrorItem {
                message: item,
                domain: Some("global".into()),
                reason: reason.into(),
                location: (code == 401).then(|| "Authorization".into()),
                location_type: (code == 401).then(|| "header".into()),
            }],
            status: with_status.then(|| status.into()),
        },
    };
    let mut r = json(StatusCode::from_u16(code).expect("valid code"), &body);
    r.headers_mut()
        .insert("www-authenticate", www.parse().expect("ASCII header"));
    r
}
