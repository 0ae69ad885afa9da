//! VMs as the control surface sees them: one VM may run several Nomad
//! clients (a second agent, or a client that re-registered under a new node
//! ID after its data directory was wiped), and killing the VM takes every
//! one of them down. Nomad itself knows nothing of VMs: each client reports
//! its instance in its attributes, and two clients may report the same one.

use super::*;

impl Cluster {
    /// The nodes a control-surface key names: a node ID names that node; an
    /// instance ID names every node that reports the instance, oldest first.
    pub fn nodes_on_vm(&self, key: &str) -> Vec<String> {
        if self.nodes.contains_key(key) {
            return vec![key.to_string()];
        }
        let mut on_vm: Vec<(u64, String)> = (self.nodes_by_vm.get(key).into_iter().flatten())
            .filter_map(|id| self.nodes.get(id))
            .map(|r| (r.node.create_index, r.node.id.clone()))
            .collect();
        on_vm.sort();
        on_vm.into_iter().map(|(_, id)| id).collect()
    }

    /// `kill`, `disconnect` and `reconnect` act on the whole VM, so on every
    /// node it runs; `restart` brings back the newest client of the VM (a
    /// client superseded by a re-registration does not come back), and
    /// `reregister` replaces it. The nodes acted on, oldest first.
    pub fn vm_action(&mut self, key: &str, action: &str) -> Result<Vec<String>, StateError> {
        let mut ids = self.nodes_on_vm(key);
        if ids.is_empty() {
            return Err(StateError::NodeNotFound);
        }
        if matches!(action, "restart" | "reregister") {
            ids.drain(..ids.len() - 1);
        }
        let mut acted = Vec::new();
        for id in ids {
            match action {
                "kill" => self.kill_node(&id)?,
                "restart" => self.restart_node(&id)?,
                "disconnect" => self.disconnect_node(&id)?,
                "reconnect" => self.reconnect_node(&id)?,
                "reregister" => {
                    acted.push(id.clone());
                    acted.push(self.reregister_node(&id)?);
                    continue;
                }
                _ => {
                    return Err(StateError::UnknownVmAction {
                        action: action.into(),
                    });
                }
            }
            acted.push(id);
        }
        Ok(acted)
    }

    /// The client's data directory is wiped and its agent restarted: it
    /// registers as a new node (new ID, same name, VM and attributes, ready
    /// and eligible), and the old node never hears from its agent again, so
    /// it turns `down` after TTL + grace like any silent client. The old
    /// agent's tasks end with it; that is not a safety violation (nothing
    /// terminated the VM). The new node's ID.
    pub fn reregister_node(&mut self, node_id: &str) -> Result<String, StateError> {
        let (ttl, grace) = (self.cfg.heartbeat_ttl_ns, self.cfg.heartbeat_grace_ns);
        let now = self.now;
        let rec = self
            .nodes
            .get_mut(node_id)
            .ok_or(StateError::NodeNotFound)?;
        let attrs = rec.node.attributes.clone();
        let spec = NodeSpec {
            name: Some(rec.node.name.clone()),
            node_pool: Some(rec.node.node_pool.clone()),
            node_class: Some(rec.node.node_class.clone()),
            datacenter: Some(rec.node.datacenter.clone()),
            meta: rec.node.meta.clone(),
            availability_zone: attrs
                .get("platform.aws.placement.availability-zone")
                .cloned(),
            cloud: Some(
                if attrs.contains_key("unique.platform.aws.instance-id") {
                    "aws"
                } else if attrs.contains_key("unique.platform.gce.id") {
                    "gce"
                } else {
                    "none"
                }
                .into(),
            ),
            instance_id: rec.instance_id.clone(),
            attributes: Some(attrs),
            slots: Some(rec.slots),
        };
        if rec.alive {
            rec.alive = false;
            rec.hb_gen += 1;
            let gen_ = rec.hb_gen;
            if rec.node.status != "down" {
                self.timer(now + ttl + grace, Timer::Heartbeat(node_id.into(), gen_));
            }
        }
        let (id, _) = self.register_node(&spec);
        self.schedule_pending();
        Ok(id)
    }
}
