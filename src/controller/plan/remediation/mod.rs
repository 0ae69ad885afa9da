//! Replacing broken clients (`remediation` in the spec): the cap every
//! remediation reason shares (`cap`).

mod cap;

// Used by the remediation step (next commit) and by `Unregistered`.
#[allow(unused_imports)]
pub(super) use cap::{RemediationCap, in_flight, max_unhealthy};
