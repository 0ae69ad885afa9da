//! VMs made to look older than they are: the fault proxy moves the
//! `launchTime` of chosen instances back in EC2 `DescribeInstances`
//! answers. moto stamps a VM with the moment it created it and offers no
//! way to change that, so a test of `maxNodeAge` would otherwise wait out
//! the age in real time (minutes per run). EC2 never changes an instance's
//! launch time, and the operator reads it once per instance: a test sets
//! the ages before the operator first reads the group, and keeps them.

use std::collections::BTreeMap;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

const ID_OPEN: &str = "<instanceId>";
const ID_CLOSE: &str = "</instanceId>";
const LAUNCH_OPEN: &str = "<launchTime>";
const LAUNCH_CLOSE: &str = "</launchTime>";

/// `xml` (a `DescribeInstances` answer) with the `launchTime` of each
/// instance in `older` moved back by its duration. Each instance item
/// names its `instanceId` before its `launchTime`, so a launch time
/// belongs to the instance ID read last. Anything it cannot read is left
/// as moto wrote it.
pub fn age_launch_times(xml: &str, older: &BTreeMap<String, SignedDuration>) -> String {
    if older.is_empty() {
        return xml.to_owned();
    }
    let mut out = String::with_capacity(xml.len());
    let mut current: Option<&str> = None;
    let mut rest = xml;
    loop {
        let next_id = rest.find(ID_OPEN);
        let next_launch = rest.find(LAUNCH_OPEN);
        match (next_id, next_launch) {
            (Some(i), l) if l.is_none_or(|l| i < l) => {
                let start = i + ID_OPEN.len();
                let Some(len) = rest[start..].find(ID_CLOSE) else {
                    break;
                };
                current = Some(&rest[start..start + len]);
                let end = start + len + ID_CLOSE.len();
                out.push_str(&rest[..end]);
                rest = &rest[end..];
            }
            (_, Some(l)) => {
                let start = l + LAUNCH_OPEN.len();
                let Some(len) = rest[start..].find(LAUNCH_CLOSE) else {
                    break;
                };
                out.push_str(&rest[..start]);
                let value = &rest[start..start + len];
                let by = current.and_then(|id| older.get(id));
                out.push_str(&shifted(value, by).unwrap_or_else(|| value.to_owned()));
                rest = &rest[start + len..];
            }
            _ => break,
        }
    }
    out.push_str(rest);
    out
}

/// `value` (an ISO 8601 time) moved back by `by`, in the same form EC2
/// writes (UTC, milliseconds).
fn shifted(value: &str, by: Option<&SignedDuration>) -> Option<String> {
    let t: Timestamp = value.trim().parse().ok()?;
    let t = t.checked_sub(*by?).ok()?;
    Some(t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_chosen_instances_launch_times_move() {
        let xml = "<reservationSet><item><instancesSet>\
            <item><instanceId>i-a</instanceId><imageId>ami-1</imageId>\
            <launchTime>2026-12-02T19:00:00.000Z</launchTime></item>\
            <item><instanceId>i-b</instanceId>\
            <launchTime>2026-12-02T19:00:05.250Z</launchTime></item>\
            </instancesSet></item></reservationSet>";
        let older = BTreeMap::from([("i-b".to_string(), SignedDuration::from_hours(2))]);
        let aged = age_launch_times(xml, &older);
        assert!(aged.contains("<instanceId>i-a</instanceId><imageId>ami-1</imageId><launchTime>2026-12-02T19:00:00.000Z</launchTime>"), "{aged}");
        assert!(
            aged.contains(
                "<instanceId>i-b</instanceId><launchTime>2026-12-02T17:00:05.250Z</launchTime>"
            ),
            "{aged}"
        );
        assert_eq!(aged.len(), xml.len());
        assert_eq!(age_launch_times(xml, &BTreeMap::new()), xml);
    }
}
