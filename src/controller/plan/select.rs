//! Choosing which clients to retire next: the disruption budget, the
//! clients `spec.retire` names, the scale-in selection policies, and the
//! dry-run preview of them.

use super::budgets::{self, Evaluation};
use super::*;

/// The most clients that may be in flight at once.
pub fn budget(max_unavailable: &IntOrString, pool_size: u32) -> u32 {
    match max_unavailable {
        IntOrString::Int(n) => (*n).max(1) as u32,
        IntOrString::String(s) => {
            let pct: u32 = s.trim_end_matches('%').parse().unwrap_or(10).min(100);
            // Rounded down like a Deployment's maxUnavailable, but never 0: a
            // zero budget would stall a small pool forever; `paused` says that.
            (pool_size * pct / 100).max(1)
        }
    }
}

/// The pool's size as the budgets count it (every client not down), and
/// what `disruption.maxUnavailable` allows of it. The selection and the
/// status the budgets report must use the same two figures.
pub(super) fn pool_allowance(view: &PoolView<'_>) -> (u32, u32) {
    let pool_size = (view.nodes.iter())
        .filter(|n| n.status != NodeStatus::Down)
        .count() as u32;
    let allowed = budget(&view.spec.disruption.max_unavailable, pool_size);
    (pool_size, allowed)
}

/// What the selection steps share while they start retirements.
pub(super) struct Selection {
    /// The most clients that may be out of service at once: what
    /// `maxUnavailable` and the budgets that apply now allow.
    budget: u32,
    /// Voluntary retirements the budgets' rates still let start in this
    /// plan; `None`: no rate applies.
    starts_left: Option<u32>,
    /// The budgets at `now`, for the blockers' words.
    limits: Evaluation,
    /// Decrements committed in status that the group's desired capacity
    /// does not reflect yet, counting those started in this plan.
    pub(super) pending: u32,
    /// Clients tracked or chosen in this plan: none is chosen twice.
    taken: BTreeSet<String>,
    /// `false` while `disruption.paused`.
    start_allowed: bool,
}

impl Selection {
    /// The budget and the pool's target size for this plan, with the
    /// blockers that limit them (`next` is the status after steps 1 and 2).
    pub(super) fn new(view: &PoolView<'_>, next: &[RetiringNode], plan: &mut Plan) -> Self {
        let spec = view.spec;
        let (pool_size, pool_allowed) = pool_allowance(view);
        let pending = pending_decrements(next, view);
        plan.desired_nodes = spec
            .replicas
            .map(|r| r.max(0) as u32)
            .unwrap_or(view.group.desired_capacity.saturating_sub(pending));
        plan.blockers
            .extend(capacity::blockers(view, pool_size, plan.desired_nodes));
        if spec.disruption.paused && wants_more(view, next, pending) {
            plan.blockers.push(Blocker::Paused);
        }
        let limits = limits(view, pool_size, pool_allowed, plan);
        Selection {
            budget: limits.allowed,
            starts_left: limits.starts_left,
            limits,
            pending,
            taken: next.iter().map(|r| r.node_id.clone()).collect(),
            start_allowed: !spec.disruption.paused,
        }
    }

    /// Start the retirements `spec.retire` names, within the budget.
    pub(super) fn named(
        &mut self,
        view: &PoolView<'_>,
        next: &mut Vec<RetiringNode>,
        plan: &mut Plan,
    ) {
        let dry_run = view.spec.disruption.dry_run;
        for target in &view.spec.retire {
            if retired::is_done(target, view, &plan.retired_nodes) {
                plan.done_targets.push(target_label(target));
                continue;
            }
            let Some(node) = view.nodes.iter().find(|n| target_matches(target, n)) else {
                plan.blockers
                    .push(Blocker::UnknownRetireTarget(target_label(target)));
                continue;
            };
            if self.taken.contains(&node.id)
                || node.status == NodeStatus::Down
                || identity::on_shared_vm(view, node)
            {
                continue;
            }
            if !self.start_allowed {
                continue;
            }
            // Clients out of service, whoever took them out, against the budget.
            if !unavailable::is_out(node) && unavailable::count(view, next) >= self.budget {
                plan.blockers.push(self.exhausted(view, next));
                break;
            }
            if self.starts_left == Some(0) {
                plan.blockers.push(self.rate_limited(view));
                break;
            }
            let decrement = !target.replace;
            let reason = if target.replace {
                RetireReason::Replace
            } else {
                RetireReason::Requested
            };
            if let Err(refusal) = check_preflight(
                view.group,
                node,
                if decrement { self.pending } else { 0 },
                decrement,
            ) {
                plan.blockers
                    .push(Blocker::Preflight(format!("{}: {refusal}", node.name)));
                continue;
            }
            self.taken.insert(node.id.clone());
            self.started();
            if dry_run {
                plan.preview.push(preview(node, reason, view.load));
                continue;
            }
            if decrement {
                self.pending += 1;
            }
            next.push(select(view, node, reason, decrement, plan));
        }
    }

    /// Start scale-ins of up to `vms_over` clients, the group being that many
    /// VMs above `replicas`, within the budget and the selection policy.
    pub(super) fn scale_in(
        &mut self,
        view: &PoolView<'_>,
        vms_over: u32,
        replicas: u32,
        next: &mut Vec<RetiringNode>,
        plan: &mut Plan,
    ) {
        let dry_run = view.spec.disruption.dry_run;
        let mut excess = identity::scale_in_excess(view, next, vms_over, replicas);
        // A dry run previews, and selects nothing: what it previewed counts.
        let previewed = if dry_run {
            // A replacement (remediation) takes no VM away from the group.
            (plan.preview.iter())
                .filter(|p| !p.reason.is_remediation())
                .count() as u32
        } else {
            0
        };
        excess = excess.saturating_sub(previewed);
        if excess == 0 || !self.start_allowed {
            return;
        }
        let room = self
            .budget
            .saturating_sub(unavailable::count(view, next) + previewed);
        if room == 0 {
            plan.blockers.push(self.exhausted(view, next));
            return;
        }
        let room = match self.starts_left {
            Some(0) => {
                plan.blockers.push(self.rate_limited(view));
                return;
            }
            Some(left) => room.min(left),
            None => room,
        };
        let Some(load) = view.load else {
            plan.needs_load = true;
            return;
        };
        let chosen = choose(
            view,
            load,
            &self.taken,
            excess.min(room),
            self.pending,
            plan,
        );
        for node in chosen {
            self.taken.insert(node.id.clone());
            self.started();
            if dry_run {
                plan.preview
                    .push(preview(node, RetireReason::ScaleIn, view.load));
            } else {
                next.push(select(view, node, RetireReason::ScaleIn, true, plan));
            }
        }
    }
}

impl Selection {
    /// Start replacements of expired and drifted clients (see `renew`)
    /// with what the budget and the rates leave after the steps before.
    pub(super) fn renew(
        &mut self,
        view: &PoolView<'_>,
        next: &mut Vec<RetiringNode>,
        plan: &mut Plan,
    ) {
        super::renew::wake(view, plan);
        if !self.start_allowed {
            return;
        }
        let due = super::renew::candidates(view, &self.taken);
        let dry_run = view.spec.disruption.dry_run;
        // What a dry run previewed before counts, as in `scale_in`.
        let mut previewed = if dry_run {
            plan.preview.len() as u32
        } else {
            0
        };
        for stale in due {
            let node = stale.node;
            if unavailable::count(view, next) + previewed >= self.budget {
                if !plan.blockers.iter().any(is_budget_blocker) {
                    plan.blockers.push(self.exhausted(view, next));
                }
                break;
            }
            if self.starts_left == Some(0) {
                if !(plan.blockers.iter()).any(|b| matches!(b, Blocker::RateLimited(_))) {
                    plan.blockers.push(self.rate_limited(view));
                }
                break;
            }
            // Replaced, not shrunk: the group launches the successor.
            if let Err(refusal) = check_preflight(view.group, node, 0, false) {
                plan.blockers
                    .push(Blocker::Preflight(format!("{}: {refusal}", node.name)));
                continue;
            }
            self.taken.insert(node.id.clone());
            self.started();
            if dry_run {
                previewed += 1;
                plan.preview.push(preview(node, stale.reason, view.load));
                continue;
            }
            plan.event(Some(&node.name), stale.reason.as_str(), stale.why.clone());
            let mut entry = select(view, node, stale.reason, false, plan);
            entry.message = Some(stale.why);
            next.push(entry);
        }
    }

    /// A voluntary retirement starts (or would, in a dry run): one start
    /// less for the rates.
    fn started(&mut self) {
        self.starts_left = self.starts_left.map(|l| l.saturating_sub(1));
    }

    /// The budget is used up: in `maxUnavailable`'s words, or in the words
    /// of the disruption budget that set it.
    fn exhausted(&self, view: &PoolView<'_>, next: &[RetiringNode]) -> Blocker {
        let in_flight = unavailable::count(view, next);
        if self.limits.applying.is_none() && self.limits.errors.is_empty() {
            return Blocker::BudgetExhausted {
                in_flight,
                budget: self.budget,
            };
        }
        let budgets = &view.spec.disruption.budgets;
        Blocker::DisruptionBudget {
            in_flight,
            message: budgets::blocker_message(&self.limits, budgets, in_flight, false),
        }
    }

    fn rate_limited(&self, view: &PoolView<'_>) -> Blocker {
        let budgets = &view.spec.disruption.budgets;
        Blocker::RateLimited(budgets::blocker_message(&self.limits, budgets, 0, true))
    }
}

fn is_budget_blocker(b: &Blocker) -> bool {
    matches!(
        b,
        Blocker::BudgetExhausted { .. } | Blocker::DisruptionBudget { .. }
    )
}

/// What `maxUnavailable` and `disruption.budgets` allow now, and the
/// budgets that do not parse (`status.disruption` is made once the plan
/// is complete: see `budgets::after_plan`).
fn limits(view: &PoolView<'_>, pool_size: u32, pool_allowed: u32, plan: &mut Plan) -> Evaluation {
    let list = &view.spec.disruption.budgets;
    // Only rates count starts; a scale-in of thousands need not sort its
    // retirements on every plan for nothing.
    let starts = if list.iter().any(|b| b.rate.is_some()) {
        budgets::starts(view.recent_starts, view.tracked)
    } else {
        Vec::new()
    };
    let limits = budgets::evaluate(list, pool_allowed, pool_size, view.now, &starts);
    plan.blockers
        .extend((limits.errors.iter()).map(|e| Blocker::InvalidBudget(e.to_string())));
    limits
}

/// Whether the spec asks for retirements beyond those in flight.
pub(super) fn wants_more(view: &PoolView<'_>, next: &[RetiringNode], pending: u32) -> bool {
    let excess = view.spec.replicas.is_some_and(|r| {
        let r = r.max(0) as u32;
        let vms = view.group.desired_capacity.saturating_sub(pending);
        super::identity::scale_in_excess(view, next, vms.saturating_sub(r), r) > 0
    });
    let named = view.spec.retire.iter().any(|t| {
        view.nodes
            .iter()
            .any(|n| target_matches(t, n) && !next.iter().any(|r| r.node_id == n.id))
    });
    excess || named
}

pub(super) fn check_preflight(
    group: &GroupState,
    node: &NodeFacts,
    in_flight_decrements: u32,
    decrement: bool,
) -> Result<(), String> {
    let Some(instance) = node.instance_id.as_deref() else {
        return Err("its instance ID is not known yet (node attributes not read)".into());
    };
    preflight_with(group, instance, in_flight_decrements, decrement).map_err(|r| r.to_string())
}

pub(super) fn preview(
    node: &NodeFacts,
    reason: RetireReason,
    load: Option<&HashMap<String, u32>>,
) -> PlannedRetirement {
    PlannedRetirement {
        node_id: node.id.clone(),
        node_name: node.name.clone(),
        reason,
        allocations: load.and_then(|l| l.get(&node.id)).copied().unwrap_or(0) as i32,
        instance_id: None,
    }
}

pub(super) fn select(
    view: &PoolView<'_>,
    node: &NodeFacts,
    reason: RetireReason,
    decrement: bool,
    plan: &mut Plan,
) -> RetiringNode {
    plan.event(
        Some(&node.name),
        "Selected",
        format!(
            "node {} ({}) selected for retirement ({reason})",
            node.name,
            node.instance_id.as_deref().unwrap_or("instance unknown")
        ),
    );
    let mut entry = RetiringNode {
        node_id: node.id.clone(),
        node_name: node.name.clone(),
        instance_id: node.instance_id.clone(),
        phase: RetirePhase::Selected,
        since: ts(view.now),
        selected_at: Some(ts(view.now)),
        reason,
        decrement,
        // Selection only takes eligible clients, except explicitly named ones;
        // a client someone else cordoned must stay cordoned if we back out.
        cordoned_by_pool: node.eligible,
        drain_started_at: None,
        drain_deadline: None,
        allocations_left: view
            .load
            .and_then(|l| l.get(&node.id))
            .copied()
            .unwrap_or(0) as i32,
        blocking_jobs: vec![],
        message: None,
    };
    if reason == RetireReason::Unhealthy {
        // Nothing is drained off a broken client (`remediation`): it is
        // only cordoned, from `Selected`.
        plan.actions.push(Action::Cordon {
            node_id: node.id.clone(),
        });
    } else {
        // Nomad marks a client ineligible the moment its drain is set
        // (nomad-api.md §2.4), so the drain is the cordon: it goes out
        // with the first record, `Cordoned`, which says what cancelling
        // must give back (`cordoned_by_pool`). A `Selected` record and an
        // eligibility call before it cost every client one status write
        // (the API server's dearest request), one Nomad call and one
        // reconcile before its drain.
        entry.phase = RetirePhase::Cordoned;
        plan.actions.push(super::advance::drain(&entry));
    }
    entry
}

/// Pick up to `want` clients for a scale-in, in the spec's order, skipping any
/// the cloud would refuse to remove.
pub(super) fn choose<'a>(
    view: &PoolView<'a>,
    load: &HashMap<String, u32>,
    taken: &BTreeSet<String>,
    want: u32,
    mut pending: u32,
    plan: &mut Plan,
) -> Vec<&'a NodeFacts> {
    let policy = view.spec.disruption.selection_policy;
    let shared = super::identity::shared_vms(view);
    let (mut eligible, opted_out): (Vec<&NodeFacts>, Vec<&NodeFacts>) = view
        .nodes
        .iter()
        .filter(|n| {
            n.status == NodeStatus::Ready
                && n.eligible
                && !n.draining
                && !taken.contains(&n.id)
                && !(n.instance_id.as_deref()).is_some_and(|i| shared.contains(i))
        })
        .partition(|n| may_choose(n));
    let busy = |n: &NodeFacts| load.get(&n.id).copied().unwrap_or(0);
    match policy {
        // Each client's load looked up once, not at every comparison: this
        // sort, its lookups included, was 1.9 % of the operator's CPU at
        // 5,000 clients (BENCHMARKS.md, nineteenth pass). Stable, as before.
        SelectionPolicy::LeastBusy => eligible.sort_by_cached_key(|n| (busy(n), n.create_index)),
        SelectionPolicy::Empty => {
            eligible.retain(|n| busy(n) == 0);
            eligible.sort_by_key(|n| n.create_index);
        }
        SelectionPolicy::Oldest => eligible.sort_by_key(|n| n.create_index),
        SelectionPolicy::Newest => eligible.sort_by_key(|n| std::cmp::Reverse(n.create_index)),
    }
    if policy == SelectionPolicy::Empty && eligible.is_empty() {
        plan.blockers.push(Blocker::NoEmptyNodes);
    }
    let mut chosen = Vec::new();
    let mut refusals = Vec::new();
    for node in eligible {
        if chosen.len() as u32 >= want {
            break;
        }
        match check_preflight(view.group, node, pending, true) {
            Ok(()) => {
                pending += 1;
                chosen.push(node);
            }
            Err(why) => refusals.push(format!("{}: {why}", node.name)),
        }
    }
    if (chosen.len() as u32) < want && !refusals.is_empty() {
        refusals.truncate(3);
        plan.blockers.push(Blocker::Preflight(refusals.join("; ")));
    }
    if (chosen.len() as u32) < want && !opted_out.is_empty() {
        plan.blockers.push(Blocker::DoNotRetire {
            short: want - chosen.len() as u32,
            opted_out: opted_out.len() as u32,
        });
    }
    chosen
}

/// Whether a retirement the pool starts on its own (a scale-in, or any
/// other voluntary reason the pool chooses clients for) may take `n`:
/// every voluntary chooser asks this one question. A client whose Meta
/// sets `nomadpool.dev/do-not-retire=true` is never chosen, as Karpenter's
/// `karpenter.sh/do-not-disrupt` keeps a node out of voluntary
/// disruption. A person naming it (`spec.retire`, a hand-made retirement)
/// is not the pool choosing: that goes ahead. Nor does it keep a broken
/// client from being replaced (`remediation` is not voluntary).
pub(super) fn may_choose(n: &NodeFacts) -> bool {
    !n.do_not_retire
}
