//! An attached autoscaler that acts (reference §2): in mode `ON` it keeps
//! the group's `targetSize` at its recommendation, clamped to
//! `minNumReplicas..=maxNumReplicas`; in `ONLY_SCALE_OUT` (older name
//! `ONLY_UP`) it only grows the group; `OFF` only reports. It acts once
//! `coolDownPeriodSec` has passed since `targetSize` last changed.
//!
//! What GCE does when deleteInstances lowers a group below an `ON`
//! autoscaler's minimum is not documented (§6); the fake's choice — the
//! autoscaler scales it back — makes a provider that ignores the attached
//! autoscaler visibly wrong instead of silently succeeding.

use super::{Autoscaler, Key, World};
use crate::clock::secs;

impl Autoscaler {
    /// `recommendedSize`: the configured recommendation, or the group's
    /// current size, within the policy's bounds.
    pub fn recommendation(&self, target_size: i32) -> i32 {
        self.recommended_size
            .unwrap_or(target_size)
            .clamp(self.min_num_replicas, self.max_num_replicas)
    }

    /// The size this autoscaler drives the group to, if it acts at all.
    fn desired(&self, target_size: i32) -> Option<i32> {
        let r = self.recommendation(target_size);
        match self.mode.as_str() {
            "ON" => Some(r),
            "ONLY_SCALE_OUT" | "ONLY_UP" => Some(r.max(target_size)),
            _ => None,
        }
    }
}

impl World {
    /// Resizes every group whose acting autoscaler wants another size and
    /// whose cool-down has passed.
    pub(super) fn autoscale(&mut self) {
        let now = self.now;
        let plans: Vec<(Key, i32)> = self
            .autoscalers
            .values()
            .filter_map(|a| {
                let g = self.groups.get(&a.target)?;
                let want = a.desired(g.target_size)?;
                let cooled = now >= g.changed_ns + secs(f64::from(a.cool_down_period_sec));
                (want != g.target_size && cooled).then(|| (a.target.clone(), want))
            })
            .collect();
        for (key, size) in plans {
            self.apply_resize(&key, size);
        }
    }
}
