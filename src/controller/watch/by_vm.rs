//! The pool's nodes by VM, for the decisions that need every node of one VM.

use std::collections::HashMap;
use std::sync::Arc;

/// The node view's instance map (node ID to instance ID) turned around.
///
/// Rebuilt only when the view's map is a new one: the view replaces it when
/// a node registers, changes its VM or is compacted away, not with each
/// drain or allocation change. A scan of the whole map per decision was
/// 2.4 % of the operator's CPU at 5,000 clients (BENCHMARKS.md, fourteenth
/// pass), and grows with the pool.
#[derive(Default)]
pub struct NodesByVm {
    /// The map this index was built from: holding it keeps the view from
    /// changing it in place (`Arc::make_mut` copies a shared map), so the
    /// same pointer means the same content.
    from: Option<Arc<HashMap<String, String>>>,
    by_vm: HashMap<String, Vec<String>>,
}

impl NodesByVm {
    /// Make the index answer for `map`.
    pub fn refresh(&mut self, map: &Arc<HashMap<String, String>>) {
        if self.from.as_ref().is_some_and(|f| Arc::ptr_eq(f, map)) {
            return;
        }
        self.by_vm.clear();
        for (node, vm) in map.iter() {
            self.by_vm.entry(vm.clone()).or_default().push(node.clone());
        }
        for nodes in self.by_vm.values_mut() {
            nodes.sort_unstable();
        }
        self.from = Some(map.clone());
    }

    /// The IDs of the nodes that report `instance`, in ID order; nodes that
    /// left may still be among them until the view compacts its map.
    pub fn on(&self, instance: &str) -> &[String] {
        self.by_vm.get(instance).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Arc<HashMap<String, String>> {
        let m = pairs.iter().map(|(n, i)| (n.to_string(), i.to_string()));
        Arc::new(m.collect())
    }

    #[test]
    fn answers_every_node_of_a_vm_in_id_order() {
        let mut idx = NodesByVm::default();
        idx.refresh(&map(&[("n3", "i-a"), ("n1", "i-a"), ("n2", "i-b")]));
        assert_eq!(idx.on("i-a"), ["n1", "n3"]);
        assert_eq!(idx.on("i-b"), ["n2"]);
        assert!(idx.on("i-c").is_empty());
    }

    #[test]
    fn a_new_map_is_read_again_and_the_same_one_is_not() {
        let mut idx = NodesByVm::default();
        let mut first = map(&[("n1", "i-a")]);
        idx.refresh(&first);
        // The view's change: a copy, since the index holds the map too.
        Arc::make_mut(&mut first).insert("n2".into(), "i-a".into());
        idx.refresh(&first);
        assert_eq!(idx.on("i-a"), ["n1", "n2"]);
        let again = first.clone();
        idx.by_vm.clear();
        idx.refresh(&again);
        assert!(idx.on("i-a").is_empty(), "same map: not rebuilt");
    }
}
