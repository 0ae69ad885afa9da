//! `disruption.budgets`: when voluntary retirements may start, and how many
//! an hour. Each budget limits the clients out of service while it applies
//! (always, or during the windows a cron schedule opens) and may cap how
//! many retirements start per period. The limits the API server can check
//! are CEL rules here; a cron expression or time zone that does not parse
//! is only found by the controller, which then blocks voluntary disruption
//! and says why in the pool's conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::GO_DURATION_RULE;

/// A Go duration of at most 31 days: a window or a rate period longer than a
/// month is not what these fields are for, and the bound keeps the
/// controller's look-back over a schedule short.
const WINDOW_DURATION_RULE: &str = "duration(self) <= duration('744h')";

/// A limit on voluntary disruption, always or during the windows of a
/// schedule. While several apply, the most restrictive one counts (and
/// `disruption.maxUnavailable` always applies too).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.schedule) == has(self.duration)").message("disruption.budgets[]: schedule and duration go together (a window opens on the schedule and stays open for the duration); set both or neither"))]
#[x_kube(validation = Rule::new("!has(self.timeZone) || has(self.schedule)").message("disruption.budgets[].timeZone is only used with a schedule"))]
#[x_kube(validation = Rule::new("!has(self.rate) || has(self.schedule) || has(self.rate.per)").message("disruption.budgets[].rate.per is required on a budget without a schedule (a rolling period such as 1h); on a scheduled budget it defaults to each window"))]
pub struct DisruptionBudget {
    /// Most clients out of service at once while this budget applies: a
    /// count (`0` blocks every voluntary retirement) or a percentage of the
    /// pool (rounded down; `0%` blocks too).
    #[schemars(schema_with = "short_int_or_string")]
    #[x_kube(validation = Rule::new("type(self) == int ? self >= 0 : self.matches('^([0-9]|[1-9][0-9]|100)%$')").message("disruption.budgets[].maxUnavailable must be a count of at least 0 or a percentage from 0% to 100%"))]
    pub max_unavailable: IntOrString,

    /// When each window opens: a five-field cron expression (minute, hour,
    /// day of month, month, day of week) read on `timeZone`'s wall clock.
    /// Unset: the budget always applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^\\\\s*\\\\S+(\\\\s+\\\\S+){4}\\\\s*$')").message("disruption.budgets[].schedule must be a five-field cron expression (minute hour day-of-month month day-of-week), such as '0 9 * * 1-5'"))]
    pub schedule: Option<String>,

    /// How long each window stays open, as elapsed time (a Go duration such
    /// as `8h`, at most `744h`): across a daylight-saving change the window
    /// ends an hour earlier or later on the wall clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(GO_DURATION_RULE).message("disruption.budgets[].duration must be a positive Go duration such as 8h or 30m"))]
    #[x_kube(validation = Rule::new(WINDOW_DURATION_RULE).message("disruption.budgets[].duration must be at most 744h (31 days)"))]
    pub duration: Option<String>,

    /// The IANA time zone the schedule is read in (`Europe/Berlin`,
    /// `America/New_York`). Default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9_+./-]+$')").message("disruption.budgets[].timeZone must be an IANA time zone name such as Europe/Berlin"))]
    pub time_zone: Option<String>,

    /// At most this many voluntary retirements started per period while
    /// this budget applies, however many `maxUnavailable` would allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<DisruptionRate>,
}

/// A count or percentage of at most four characters (`100%`): the bound
/// keeps the API server's estimate of the CEL rule's cost, taken for all
/// 20 budgets together, within its limit (unbounded, the CRD is refused).
fn short_int_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "maxLength": 4,
    })
}

/// "At most N retirements started per period."
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DisruptionRate {
    /// Most voluntary retirements started in any one period (1 to 1000).
    #[schemars(range(min = 1, max = 1000))]
    pub retirements: i32,

    /// The period, rolling (a Go duration such as `1h`, at most `744h`):
    /// a retirement may start when fewer than `retirements` started in the
    /// `per` before now. Unset on a scheduled budget: each window is the
    /// period (starts since the window opened count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(GO_DURATION_RULE).message("disruption.budgets[].rate.per must be a positive Go duration such as 1h"))]
    #[x_kube(validation = Rule::new(WINDOW_DURATION_RULE).message("disruption.budgets[].rate.per must be at most 744h (31 days)"))]
    pub per: Option<String>,
}

/// What `disruption.budgets` allow now; present only when budgets are set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DisruptionStatus {
    /// The budget that applies now, as its index in `disruption.budgets`;
    /// unset when `disruption.maxUnavailable` alone is the strictest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<i32>,
    /// Clients that may be out of service now.
    pub allowed: i32,
    /// Voluntary retirements the rates still allow to start now; unset when
    /// no rate applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_allowed: Option<i32>,
    /// When the window of the budget that applies now closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_closes: Option<Time>,
    /// When the next window of a scheduled budget opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window_opens: Option<Time>,
    /// What applies now and what changes next, in words.
    #[serde(default)]
    pub message: String,
    /// When the most recent voluntary retirements started (as many as the
    /// largest rate counts, newest last): the rate still knows them once
    /// their objects are pruned. Written with the status that records each
    /// start, so a restart never forgets one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_starts: Vec<Time>,
}
