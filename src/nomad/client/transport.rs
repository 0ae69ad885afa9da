//! The connections to one Nomad agent, shared by every client (every pool)
//! that reaches it the same way: one HTTP connection pool per address, TLS
//! settings and connect timeout, and one connection budget per agent (see
//! `budget`). A pool per client would keep idle connections per pool, and
//! Nomad counts those against the same per-IP limit. The token is not part
//! of the transport: each client sends its own with every request.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, Weak};

use super::budget::{self, Budget, IDLE_CONNECTIONS};
use super::config::configure_tls;
use super::*;

pub(super) struct Transport {
    pub(super) http: reqwest::Client,
    /// The address to send to (its host may be the TLS server name).
    pub(super) base: Url,
    pub(super) budget: Arc<Budget>,
}

/// Everything a transport is built from. Key material is compared whole,
/// never by a hash, so two pools never share a client identity by chance.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    address: String,
    ca_pem: Option<Vec<u8>>,
    client_cert_pem: Option<Vec<u8>>,
    client_key_pem: Option<Vec<u8>>,
    server_name: Option<String>,
    insecure_skip_verify: bool,
    connect_timeout: Duration,
}

fn registry() -> &'static Mutex<HashMap<Key, Weak<Transport>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<Key, Weak<Transport>>>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

/// The transport for `address` with these settings: an existing one, or a
/// new one.
pub(super) fn transport(
    address: &str,
    tls: &NomadTlsConfig,
    timeouts: &Timeouts,
) -> Result<Arc<Transport>, NomadError> {
    let key = Key {
        address: address.trim().to_owned(),
        ca_pem: tls.ca_pem.clone(),
        client_cert_pem: tls.client_cert_pem.clone(),
        client_key_pem: tls.client_key_pem.clone(),
        server_name: tls.server_name.clone(),
        insecure_skip_verify: tls.insecure_skip_verify,
        connect_timeout: timeouts.connect,
    };
    let mut transports = registry().lock().expect("transport registry lock");
    transports.retain(|_, t| t.strong_count() > 0);
    if let Some(t) = transports.get(&key).and_then(Weak::upgrade) {
        return Ok(t);
    }
    let t = Arc::new(build(address, tls, timeouts)?);
    transports.insert(key, Arc::downgrade(&t));
    Ok(t)
}

fn build(
    address: &str,
    tls: &NomadTlsConfig,
    timeouts: &Timeouts,
) -> Result<Transport, NomadError> {
    let mut base = parse_address(address)?;
    // The agent's connection limit is per client IP, whatever name the
    // certificate is checked against: the budget follows the address.
    let target = format!(
        "{}:{}",
        base.host_str().unwrap_or_default(),
        base.port_or_known_default().unwrap_or_default()
    );
    let builder = reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .user_agent(concat!("nomad-pool-operator/", env!("CARGO_PKG_VERSION")))
        // Nomad counts idle keep-alive connections against its limit too;
        // the budget leaves room for this many (see `budget`).
        .pool_max_idle_per_host(IDLE_CONNECTIONS)
        // Nomad never redirects, and following one would hand the
        // X-Nomad-Token header (not one reqwest strips) to another host.
        .redirect(reqwest::redirect::Policy::none());
    let builder = configure_tls(builder, tls, &mut base)?;
    let http = builder
        .build()
        .map_err(|e| NomadError::InvalidTls(error_chain(&e)))?;
    Ok(Transport {
        http,
        base,
        budget: budget::for_target(&target),
    })
}
