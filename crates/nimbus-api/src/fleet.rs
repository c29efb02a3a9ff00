//! The worker hosts of the server and placement over them: a warm slot on an active
//! host is reused first, otherwise the scheduler's placement picks the host for a
//! new slot. Each host heartbeats every second, and its state comes from the
//! `worker_hosts` table, so an operator drains a host of a running server with
//! `nimbus admin worker set-state`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;

use nimbus_scheduler::placement::{select_placement, PlacementRequest};
use nimbus_store::ControlStore;
use nimbus_worker::{
    HostId, HostState, HostView, InvokeRequest, InvokeResult, PrewarmError, ProvisionedCounts, ProvisionedTarget,
    WorkerError, WorkerHost, HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT,
};

/// Parses a host state as the `worker_hosts` table and the CLI spell it.
pub fn parse_host_state(value: &str) -> Option<HostState> {
    match value.to_ascii_uppercase().as_str() {
        "ACTIVE" => Some(HostState::Active),
        "DRAINING" => Some(HostState::Draining),
        "MAINTENANCE" => Some(HostState::Maintenance),
        _ => None,
    }
}

pub fn host_state_name(state: HostState) -> &'static str {
    match state {
        HostState::Active => "ACTIVE",
        HostState::Draining => "DRAINING",
        HostState::Maintenance => "MAINTENANCE",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotKind {
    Provisioned,
    OnDemand,
}

/// The host that placement chose for an invocation.
pub struct Placement {
    pub host: Arc<dyn WorkerHost>,
    /// True when a warm slot on the host is reused, false for a cold start.
    pub warm: bool,
}

/// An invocation that a host has taken: its slot is claimed, and `run` runs it.
pub struct StartedInvocation {
    pub host: HostId,
    pub warm: bool,
    pub run: BoxFuture<'static, Result<InvokeResult, WorkerError>>,
}

pub struct Fleet {
    hosts: Vec<Arc<dyn WorkerHost>>,
    /// Serializes placement with the claim of the slot on the chosen host, so two
    /// concurrent cold starts see each other's slots.
    placing: Mutex<()>,
}

impl Fleet {
    pub fn new(hosts: Vec<Arc<dyn WorkerHost>>) -> Fleet {
        Fleet {
            hosts,
            placing: Mutex::new(()),
        }
    }

    /// Places an invocation and claims its slot on the chosen host. A cold start
    /// goes ahead only when `admit_cold_start` returns true, otherwise it is rejected
    /// with [`WorkerError::BurstLimitExceeded`].
    pub fn start_invoke(
        &self,
        request: InvokeRequest,
        admit_cold_start: impl FnOnce() -> Result<(), WorkerError>,
    ) -> Result<StartedInvocation, WorkerError> {
        let _placing = self.placing.lock().unwrap_or_else(PoisonError::into_inner);
        let placement = self.place(&request)?;
        if !placement.warm {
            admit_cold_start()?;
        }
        Ok(StartedInvocation {
            host: placement.host.id(),
            warm: placement.warm,
            run: placement.host.invoke(request),
        })
    }

    pub fn hosts(&self) -> &[Arc<dyn WorkerHost>] {
        &self.hosts
    }

    /// Returns the hosts' views for placement. A host that missed heartbeats for
    /// [`HEARTBEAT_TIMEOUT`] counts as in maintenance.
    pub fn views(&self) -> Vec<HostView> {
        self.hosts
            .iter()
            .map(|host| {
                let mut view = host.view();
                if host.last_heartbeat().elapsed() > HEARTBEAT_TIMEOUT {
                    view.state = HostState::Maintenance;
                }
                view
            })
            .collect()
    }

    /// Checks that at least one host offers the runtime.
    pub fn check_runtime(&self, runtime: &str) -> Result<(), WorkerError> {
        let mut last_error = None;
        for host in &self.hosts {
            match host.check_runtime(runtime) {
                Ok(()) => return Ok(()),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| WorkerError::NoFeasibleHost("the server has no worker hosts".to_string())))
    }

    /// Picks the host for an invocation: the active host with the most warm slots
    /// for it, or for a cold start the host that placement selects.
    pub fn place(&self, request: &InvokeRequest) -> Result<Placement, WorkerError> {
        let views = self.views();
        // Draining and stale hosts get no new invocations, not even on warm slots.
        let active: Vec<&Arc<dyn WorkerHost>> = self
            .hosts
            .iter()
            .zip(&views)
            .filter(|(_, view)| view.state == HostState::Active)
            .map(|(host, _)| host)
            .collect();
        let warmest = active
            .iter()
            .map(|host| (host.warm_slots(request), host))
            .filter(|(warm, _)| *warm > 0)
            .max_by_key(|(warm, host)| (*warm, std::cmp::Reverse(host.id())));
        if let Some((_, host)) = warmest {
            return Ok(Placement {
                host: Arc::clone(host),
                warm: true,
            });
        }
        let placement_request = placement_request(request);
        let Some(id) = select_placement(&views, &placement_request) else {
            return Err(WorkerError::NoFeasibleHost(
                self.describe_infeasible(&views, &placement_request),
            ));
        };
        let host = self.host(id).expect("placement returns one of the given hosts");
        Ok(Placement { host, warm: false })
    }

    fn host(&self, id: HostId) -> Option<Arc<dyn WorkerHost>> {
        self.hosts.iter().find(|h| h.id() == id).cloned()
    }

    /// Sums a target's provisioned slots over the hosts.
    pub fn provisioned_counts(&self, target: &ProvisionedTarget) -> ProvisionedCounts {
        let mut total = ProvisionedCounts::default();
        for host in &self.hosts {
            let counts = host.provisioned_counts(target);
            total.initializing += counts.initializing;
            total.idle += counts.idle;
            total.busy += counts.busy;
        }
        total
    }

    pub fn retire_provisioned(&self, target: &ProvisionedTarget) -> usize {
        self.hosts.iter().map(|h| h.retire_provisioned(target)).sum()
    }

    pub fn retain_provisioned(&self, configured: &HashSet<ProvisionedTarget>) -> usize {
        self.hosts.iter().map(|h| h.retain_provisioned(configured)).sum()
    }

    /// Keeps at most `requested` provisioned slots of a target over all hosts, the
    /// hosts earlier in the list keeping theirs first, and returns how many more to
    /// start with [`Fleet::prewarm`].
    pub fn plan_provisioned(&self, target: &ProvisionedTarget, requested: u32) -> usize {
        // NOTE: a draining host keeps its provisioned slots, and they keep counting
        // toward `requested`, but no invocation reaches them until the host is active.
        let mut remaining = requested;
        for host in &self.hosts {
            let counts = host.provisioned_counts(target);
            let existing = (counts.initializing + counts.allocated()) as u32;
            let kept = existing.min(remaining);
            remaining -= kept;
            host.plan_provisioned(target, kept);
        }
        remaining as usize
    }

    /// Starts `count` provisioned slots, each on the host that placement selects.
    /// Returns the number that became ready, or the first failure.
    pub fn prewarm(
        &self,
        request: &InvokeRequest,
        count: usize,
    ) -> impl std::future::Future<Output = Result<usize, PrewarmError>> + Send + 'static {
        self.prewarm_slots(request, count, SlotKind::Provisioned)
    }

    /// Starts `count` on-demand slots ahead of invocations, each on the host that
    /// placement selects. Returns the number that became ready, or the first failure.
    pub fn prewarm_on_demand(
        &self,
        request: &InvokeRequest,
        count: usize,
    ) -> impl std::future::Future<Output = Result<usize, PrewarmError>> + Send + 'static {
        self.prewarm_slots(request, count, SlotKind::OnDemand)
    }

    fn prewarm_slots(
        &self,
        request: &InvokeRequest,
        count: usize,
        kind: SlotKind,
    ) -> impl std::future::Future<Output = Result<usize, PrewarmError>> + Send + 'static {
        // Placement and the hosts' reservations happen together, as for invocations.
        let _placing = self.placing.lock().unwrap_or_else(PoisonError::into_inner);
        let placement_request = placement_request(request);
        let mut views = self.views();
        let mut per_host: HashMap<HostId, usize> = HashMap::new();
        let mut unplaced = 0;
        for _ in 0..count {
            let Some(id) = select_placement(&views, &placement_request) else {
                unplaced += 1;
                continue;
            };
            *per_host.entry(id).or_default() += 1;
            // Counts the new slot in the view, so the next one spreads by the same rules.
            let view = views
                .iter_mut()
                .find(|v| v.id == id)
                .expect("placement returns a given host");
            view.free_slots -= 1;
            view.free_memory_mb = view.free_memory_mb.saturating_sub(placement_request.memory_mb);
            view.functions
                .entry(placement_request.function.clone())
                .or_default()
                .slots += 1;
        }
        let starts: Vec<_> = per_host
            .into_iter()
            .filter_map(|(id, n)| {
                let host = self.host(id)?;
                Some(match kind {
                    SlotKind::Provisioned => host.prewarm(request, n),
                    SlotKind::OnDemand => host.prewarm_on_demand(request, n),
                })
            })
            .collect();
        let description = self.describe_infeasible(&views, &placement_request);
        async move {
            let mut ready = 0;
            let mut first_error = None;
            for outcome in futures::future::join_all(starts).await {
                match outcome {
                    Ok(n) => ready += n,
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
            if unplaced > 0 && first_error.is_none() {
                first_error = Some(PrewarmError::Worker(WorkerError::NoFeasibleHost(description)));
            }
            match first_error {
                Some(error) => Err(error),
                None => Ok(ready),
            }
        }
    }

    pub fn slot_counts(&self) -> (usize, usize) {
        self.hosts
            .iter()
            .map(|h| h.slot_counts())
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    /// Starts the heartbeat loop: every [`HEARTBEAT_INTERVAL`] each host heartbeats,
    /// writes its id, zone and heartbeat to the store and takes its desired state
    /// from there.
    pub fn start_heartbeats(self: &Arc<Self>, store: Arc<dyn ControlStore>) {
        let fleet = Arc::clone(self);
        tokio::spawn(async move {
            let mut failures: u64 = 0;
            loop {
                for host in &fleet.hosts {
                    host.heartbeat();
                    let now_ms = crate::invoke::now_ms();
                    match store
                        .heartbeat_worker_host(host.id().0, host.availability_zone(), now_ms)
                        .await
                    {
                        Ok(desired) => match parse_host_state(&desired) {
                            Some(state) => host.set_state(state),
                            None => {
                                tracing::warn!(host = %host.id(), desired, "invalid desired state in the worker_hosts table; keeping the current state")
                            }
                        },
                        Err(error) => {
                            failures += 1;
                            // Logs the first failure and then one in 60, about one a minute.
                            if failures % 60 == 1 {
                                tracing::error!(host = %host.id(), %error, failures, "recording a worker heartbeat failed");
                            }
                        }
                    }
                }
                tokio::time::sleep(HEARTBEAT_INTERVAL).await;
            }
        });
    }

    /// Says why no host is feasible, host by host.
    fn describe_infeasible(&self, views: &[HostView], request: &PlacementRequest) -> String {
        if views.is_empty() {
            return "the server has no worker hosts".to_string();
        }
        let reasons: Vec<String> = views
            .iter()
            .zip(&self.hosts)
            .map(|(view, host)| {
                let reason = if view.state != HostState::Active {
                    format!("is {}", host_state_name(view.state).to_ascii_lowercase())
                } else if !view.runtimes.contains(&request.runtime) {
                    format!("does not offer {}", request.runtime)
                } else if view.free_slots == 0 {
                    format!("has all {} execution slots busy", host.total_slots())
                } else if view.free_memory_mb < request.memory_mb {
                    format!(
                        "has {} MB of memory free, {} MB needed",
                        view.free_memory_mb, request.memory_mb
                    )
                } else {
                    "is feasible".to_string()
                };
                format!("{} {reason}", view.id)
            })
            .collect();
        reasons.join(", ")
    }
}

/// Builds the placement request of an invocation. Functions are keyed by id, as in
/// [`WorkerHost::view`].
fn placement_request(request: &InvokeRequest) -> PlacementRequest {
    PlacementRequest {
        function: request.function_id.to_string(),
        version: request.version.clone(),
        package: request.code.sha256.clone(),
        runtime: request.settings.runtime.clone(),
        memory_mb: u64::from(request.settings.memory_size),
    }
}
