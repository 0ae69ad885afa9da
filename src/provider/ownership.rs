//! Which pool may drive a cloud group: the one the group's own tag names.
//!
//! A pool's spec names a group by name, and anyone who may create a pool may
//! write any name there. The spec therefore proves nothing about who owns the
//! group; the group itself must say it. Its owner (whoever may tag it in the
//! cloud account) sets `nomadpool.dev/pool = <namespace>/<name>` on it, and
//! only that pool cordons, drains, terminates or resizes for it. This also
//! keeps two pools that name one group from fighting over its size: the one
//! the tag does not name does nothing.

use std::fmt;

/// The tag, on the group itself, naming the one pool that may drive it.
pub const OWNER_TAG: &str = "nomadpool.dev/pool";

/// Why a pool may not act on a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnershipRefusal {
    /// The group carries no ownership tag: nobody has said which pool owns it.
    NotTagged { group: String, pool: String },
    /// The tag names another pool (or is malformed, which names no pool).
    OwnedByAnotherPool {
        group: String,
        pool: String,
        owner: String,
    },
}

impl OwnershipRefusal {
    /// The condition and Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            OwnershipRefusal::NotTagged { .. } => "GroupNotTagged",
            OwnershipRefusal::OwnedByAnotherPool { .. } => "GroupOwnedByAnotherPool",
        }
    }
}

impl fmt::Display for OwnershipRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OwnershipRefusal::NotTagged { group, pool } => write!(
                f,
                "{group} has no tag {OWNER_TAG}; nothing is done to it until its owner tags it {OWNER_TAG}={pool}"
            ),
            OwnershipRefusal::OwnedByAnotherPool { group, pool, owner } => write!(
                f,
                "{group} is tagged {OWNER_TAG}={owner:?}, so only pool {owner:?} may drive it; nothing is done to it until its owner tags it {OWNER_TAG}={pool}"
            ),
        }
    }
}

/// Whether the pool `pool_key` (`<namespace>/<name>`) may act on `group`,
/// whose ownership tag has the value `tag`. The comparison is exact: a value
/// that only looks like the pool's key (other case, spaces) is someone
/// else's, since namespaces and names are case-sensitive and space-free.
pub fn check(group: &str, tag: Option<&str>, pool_key: &str) -> Result<(), OwnershipRefusal> {
    match tag {
        Some(owner) if owner == pool_key => Ok(()),
        Some(owner) => Err(OwnershipRefusal::OwnedByAnotherPool {
            group: group.to_owned(),
            pool: pool_key.to_owned(),
            owner: owner.to_owned(),
        }),
        None => Err(OwnershipRefusal::NotTagged {
            group: group.to_owned(),
            pool: pool_key.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pool_the_tag_names_may_act() {
        assert_eq!(check("asg/ci", Some("team-b/ci"), "team-b/ci"), Ok(()));
        let other = check("asg/ci", Some("team-b/ci"), "team-a/ci").unwrap_err();
        assert_eq!(other.reason(), "GroupOwnedByAnotherPool");
        let text = other.to_string();
        assert!(text.contains("\"team-b/ci\""), "names the owner: {text}");
        assert!(
            text.contains("nomadpool.dev/pool=team-a/ci"),
            "says what to tag: {text}"
        );
    }

    #[test]
    fn an_untagged_group_belongs_to_no_pool() {
        let refusal = check("asg/ci", None, "team-a/ci").unwrap_err();
        assert_eq!(refusal.reason(), "GroupNotTagged");
        assert!(
            refusal
                .to_string()
                .contains("has no tag nomadpool.dev/pool")
        );
    }

    #[test]
    fn near_misses_are_someone_else() {
        for tag in ["", "team-a/ci ", "Team-A/ci", "team-a", "ci", "team-a/ci/x"] {
            assert!(
                matches!(
                    check("asg/ci", Some(tag), "team-a/ci"),
                    Err(OwnershipRefusal::OwnedByAnotherPool { .. })
                ),
                "{tag:?}"
            );
        }
    }
}
