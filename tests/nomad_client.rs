//! The operator's Nomad client against Nomad's documented JSON and against a
//! small in-test HTTP server.
//!
//! The wire types in `src/nomad/types.rs` deliberately duplicate the
//! simulator's encoding (`nomad-sim`) instead of sharing it: both are tested
//! against the same docs fixtures, so each checks the other and neither can
//! drift from Nomad's format unnoticed.
//!
//! The rooms: `docs` (fixtures decode), `http` (a fake Nomad scripted per
//! test), `tls` (server name and destination).

#[path = "nomad_client/docs.rs"]
mod docs;
#[path = "nomad_client/http.rs"]
mod http;
#[path = "nomad_client/tls.rs"]
mod tls;

use serde_json::Value;

const NODE_ID: &str = "1ac61e33-a465-2ace-f63f-cffa1285e7eb";
const TOKEN: &str = "0f1e2d3c-secret-token";

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/nomad/{name}",
        std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}
