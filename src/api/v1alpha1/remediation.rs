//! `remediation`: replacing clients that are broken rather than retiring
//! healthy ones. A client Nomad reports `down` (or `disconnected`) for
//! longer than a grace period while its VM is still in service gets a new
//! VM (reason `Unhealthy`), and a down node whose VM has left the group is
//! purged from Nomad, and an in-service VM no Nomad client registered on
//! within a timeout gets a new VM (reason `Unregistered`). Each is off until
//! its field is set.
//!
//! Terminating a broken client's VM is the one case where the pool ends a VM
//! without proving that every allocation on it stopped: Nomad has already
//! replaced a down client's work elsewhere (its allocations are `lost`), and
//! setting `unhealthyAfter` is the spec's explicit permission. A
//! `disconnected` client's allocations are `unknown` and may still run
//! behind a partition, so by default such a client is only replaced once
//! Nomad marks it down (`replaceDisconnected` opts in earlier).
//!
//! `maxUnhealthy` keeps an outage from turning into a mass deletion, as
//! Cluster API's MachineHealthCheck does: while more clients of the pool
//! are unhealthy than it allows, nothing is remediated.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::GO_DURATION_RULE;

/// The Nomad node Meta key that keeps a client out of every voluntary
/// retirement when set to `true` (in the client's `meta` block, or with
/// `nomad node meta apply`). Not part of `remediation`: a broken client is
/// still replaced, and naming a client in `spec.retire` still retires it.
pub const DO_NOT_RETIRE_META: &str = "nomadpool.dev/do-not-retire";

/// `maxUnhealthy` when unset: Karpenter's node repair also stops above a
/// fifth of a node pool unhealthy, and a cluster-wide failure (a Nomad
/// server outage, a network partition) shows as far more than that.
pub const DEFAULT_MAX_UNHEALTHY: &str = "20%";

/// Replacing unhealthy clients and purging nodes whose VM is gone.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.unhealthyAfter) || has(self.purgeDownAfter) || has(self.unregisteredAfter)").message("remediation must set unhealthyAfter (replace clients that stay down), unregisteredAfter (replace VMs whose client never registered) or purgeDownAfter (purge nodes whose VM is gone)"))]
#[x_kube(validation = Rule::new("!has(self.replaceDisconnected) || !self.replaceDisconnected || has(self.unhealthyAfter)").message("remediation.replaceDisconnected needs remediation.unhealthyAfter: it says when a disconnected client is replaced"))]
pub struct RemediationPolicy {
    /// How long a client must stay `down` (or `disconnected`, see
    /// `replaceDisconnected`) while its VM is in service before its VM is
    /// terminated and the group launches a new one (a Go duration such as
    /// `10m`). Counted on the controller's clock from when it first saw the
    /// client unhealthy; a controller restart starts the count again (late,
    /// never early). Unset: unhealthy clients are left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(GO_DURATION_RULE).message("remediation.unhealthyAfter must be a positive Go duration such as 10m"))]
    pub unhealthy_after: Option<String>,

    /// Most clients of the pool that may be unhealthy (down or disconnected
    /// on an in-service VM, VMs past `unregisteredAfter` without a client,
    /// or being replaced) for remediation to go on: a
    /// count, or a percentage of the group's desired capacity (rounded
    /// down, at least 1). Above it nothing new is remediated and the pool's
    /// conditions say why. Default `20%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("type(self) == int ? self >= 1 : self.matches('^([1-9][0-9]?|100)%$')").message("remediation.maxUnhealthy must be a count of at least 1 or a percentage from 1% to 100%"))]
    pub max_unhealthy: Option<IntOrString>,

    /// Also replace a client that stays `disconnected` for `unhealthyAfter`.
    /// Its allocations are `unknown` and may still be running behind a
    /// partition: terminating the VM stops them (the Event says how many).
    /// Default `false`: a disconnected client counts as unhealthy but is
    /// only replaced once Nomad marks it `down` (its `disconnect` window
    /// passed and its work was replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_disconnected: Option<bool>,

    /// How long an in-service VM of the group may run without any Nomad
    /// node reporting it before it is terminated and the group launches a
    /// new one (reason `Unregistered`; a Go duration such as `15m`: longer
    /// than the slowest boot and agent start of the group's image). A VM
    /// some node reports (in this pool or not, in any status) is never
    /// replaced for this: the pool asks Nomad for every node of the cluster
    /// on that VM first, and again right before the terminate call. Counted
    /// on the controller's clock from when it first saw the VM without a
    /// client (late after a restart, never early). Unset: such VMs are only
    /// reported (`Ready` False, `VMsWithoutClient`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(GO_DURATION_RULE).message("remediation.unregisteredAfter must be a positive Go duration such as 15m"))]
    pub unregistered_after: Option<String>,

    /// Purge a Nomad node of the pool that is `down` and whose VM is no
    /// longer in the group (terminated outside the pool) once it has been
    /// down this long (a Go duration such as `1h`). A node whose VM is not
    /// known is never purged. Unset: such nodes stay until Nomad's own
    /// garbage collection (`node_gc_threshold`, 24h by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(GO_DURATION_RULE).message("remediation.purgeDownAfter must be a positive Go duration such as 1h"))]
    pub purge_down_after: Option<String>,
}

impl RemediationPolicy {
    /// `maxUnhealthy`, defaulted.
    pub fn max_unhealthy(&self) -> IntOrString {
        self.max_unhealthy
            .clone()
            .unwrap_or_else(|| IntOrString::String(DEFAULT_MAX_UNHEALTHY.into()))
    }

    /// `replaceDisconnected`, defaulted.
    pub fn replaces_disconnected(&self) -> bool {
        self.replace_disconnected.unwrap_or(false)
    }
}
