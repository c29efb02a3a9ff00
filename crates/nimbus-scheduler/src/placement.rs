//! Placement: picks the worker host for a new execution slot.
//!
//! A host is feasible when it is `Active`, offers the request's runtime, has at least the
//! requested memory free and has a free slot. Each feasible host gets a score:
//!
//! | term | score |
//! |---|---|
//! | code package cached on the host | +100 |
//! | each warm slot of the requested function version | +50 |
//! | free memory | +30 × (1 − memory utilization) |
//! | each slot of the function (any version, any live state) | −10 |
//! | host in an underrepresented availability zone | +20 |
//!
//! An availability zone is underrepresented when it has fewer of the function's slots
//! than the mean over the zones that contain at least one feasible host. Slots on every
//! host of a zone count, feasible or not. The highest score wins, and a tie goes to the
//! lowest host id, so the result does not depend on the order of the hosts.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

pub const CACHED_PACKAGE_SCORE: f64 = 100.0;
pub const WARM_SLOT_SCORE: f64 = 50.0;
pub const FREE_MEMORY_SCORE: f64 = 30.0;
pub const FUNCTION_SLOT_PENALTY: f64 = 10.0;
pub const UNDERREPRESENTED_ZONE_SCORE: f64 = 20.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostId(pub u32);

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host-{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HostState {
    /// Accepts new slots.
    Active,
    /// Finishes its slots and accepts no new ones.
    Draining,
    /// Out of service.
    Maintenance,
}

/// Slots of one function on one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionOnHost {
    /// Slots of any version in any state but `Terminated`.
    pub slots: u32,
    /// Warm (idle) slots per version.
    pub warm_by_version: HashMap<String, u32>,
}

/// One worker host's capacity and contents, as input to placement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostView {
    pub id: HostId,
    pub availability_zone: String,
    pub state: HostState,
    pub total_memory_mb: u64,
    pub free_memory_mb: u64,
    pub free_slots: u32,
    /// Runtime identifiers the host can run, such as `python3.12`.
    pub runtimes: Vec<String>,
    /// Code packages (by sha256) in the host's local cache.
    pub cached_packages: HashSet<String>,
    /// Slots per function name.
    pub functions: HashMap<String, FunctionOnHost>,
}

impl HostView {
    /// Creates an empty, active host.
    pub fn new(id: HostId, availability_zone: &str, memory_mb: u64, slots: u32, runtimes: &[&str]) -> HostView {
        HostView {
            id,
            availability_zone: availability_zone.to_string(),
            state: HostState::Active,
            total_memory_mb: memory_mb,
            free_memory_mb: memory_mb,
            free_slots: slots,
            runtimes: runtimes.iter().map(|r| r.to_string()).collect(),
            cached_packages: HashSet::new(),
            functions: HashMap::new(),
        }
    }

    /// Checks the hard constraints for a new slot of `request`.
    pub fn is_feasible(&self, request: &PlacementRequest) -> bool {
        self.state == HostState::Active
            && self.free_memory_mb >= request.memory_mb
            && self.free_slots > 0
            && self.runtimes.iter().any(|r| *r == request.runtime)
    }

    /// Used memory as a fraction of total memory; 1 for a host without memory.
    pub fn memory_utilization(&self) -> f64 {
        if self.total_memory_mb == 0 {
            return 1.0;
        }
        let used = self.total_memory_mb.saturating_sub(self.free_memory_mb);
        used as f64 / self.total_memory_mb as f64
    }

    pub fn function_slots(&self, function: &str) -> u32 {
        self.functions.get(function).map_or(0, |f| f.slots)
    }

    pub fn warm_slots(&self, function: &str, version: &str) -> u32 {
        self.functions
            .get(function)
            .and_then(|f| f.warm_by_version.get(version))
            .copied()
            .unwrap_or(0)
    }
}

/// A request for one new slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementRequest {
    pub function: String,
    /// `$LATEST` or a version number.
    pub version: String,
    /// sha256 of the code package.
    pub package: String,
    pub runtime: String,
    pub memory_mb: u64,
}

/// The score of one feasible host, term by term.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScoreBreakdown {
    pub cached_package: f64,
    pub warm_slots: f64,
    pub free_memory: f64,
    /// Zero or negative.
    pub function_slots: f64,
    pub zone_balance: f64,
}

impl ScoreBreakdown {
    pub fn total(&self) -> f64 {
        self.cached_package + self.warm_slots + self.free_memory + self.function_slots + self.zone_balance
    }
}

/// Scores the feasible hosts, in the order of `hosts`; infeasible hosts are left out.
pub fn score_hosts(hosts: &[HostView], request: &PlacementRequest) -> Vec<(HostId, ScoreBreakdown)> {
    let feasible: Vec<&HostView> = hosts.iter().filter(|h| h.is_feasible(request)).collect();
    let underrepresented = underrepresented_zones(hosts, &feasible, &request.function);
    feasible
        .into_iter()
        .map(|host| (host.id, score_host(host, request, &underrepresented)))
        .collect()
}

/// Returns the best feasible host for a new slot of `request`, or `None` when no host
/// is feasible and capacity must grow first.
pub fn select_placement(hosts: &[HostView], request: &PlacementRequest) -> Option<HostId> {
    score_hosts(hosts, request)
        .into_iter()
        .max_by(|(a_id, a), (b_id, b)| {
            // `max_by` keeps the last of equal elements, so on equal scores the
            // lower id must compare greater.
            a.total()
                .partial_cmp(&b.total())
                .unwrap_or(Ordering::Equal)
                .then(b_id.cmp(a_id))
        })
        .map(|(id, _)| id)
}

fn score_host(host: &HostView, request: &PlacementRequest, underrepresented: &HashSet<&str>) -> ScoreBreakdown {
    let cached_package = if host.cached_packages.contains(&request.package) {
        CACHED_PACKAGE_SCORE
    } else {
        0.0
    };
    let zone_balance = if underrepresented.contains(host.availability_zone.as_str()) {
        UNDERREPRESENTED_ZONE_SCORE
    } else {
        0.0
    };
    ScoreBreakdown {
        cached_package,
        warm_slots: WARM_SLOT_SCORE * f64::from(host.warm_slots(&request.function, &request.version)),
        free_memory: FREE_MEMORY_SCORE * (1.0 - host.memory_utilization()),
        function_slots: -FUNCTION_SLOT_PENALTY * f64::from(host.function_slots(&request.function)),
        zone_balance,
    }
}

/// Returns the zones with fewer of the function's slots than the mean over the zones
/// that contain a feasible host. Only zones with a feasible host can be returned.
fn underrepresented_zones<'a>(hosts: &'a [HostView], feasible: &[&'a HostView], function: &str) -> HashSet<&'a str> {
    let mut slots_per_zone: HashMap<&str, u64> = feasible
        .iter()
        .map(|host| (host.availability_zone.as_str(), 0))
        .collect();
    if slots_per_zone.is_empty() {
        return HashSet::new();
    }
    for host in hosts {
        if let Some(slots) = slots_per_zone.get_mut(host.availability_zone.as_str()) {
            *slots += u64::from(host.function_slots(function));
        }
    }
    let mean = slots_per_zone.values().sum::<u64>() as f64 / slots_per_zone.len() as f64;
    slots_per_zone
        .into_iter()
        .filter(|&(_, slots)| (slots as f64) < mean)
        .map(|(zone, _)| zone)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNTIME: &str = "python3.12";

    fn request(memory_mb: u64) -> PlacementRequest {
        PlacementRequest {
            function: "thumbnail".to_string(),
            version: "3".to_string(),
            package: "sha-thumbnail-3".to_string(),
            runtime: RUNTIME.to_string(),
            memory_mb,
        }
    }

    fn host(id: u32, zone: &str) -> HostView {
        HostView::new(HostId(id), zone, 8192, 16, &[RUNTIME])
    }

    fn with_function_slots(mut host: HostView, function: &str, slots: u32) -> HostView {
        host.functions.entry(function.to_string()).or_default().slots += slots;
        host
    }

    fn with_warm_slots(mut host: HostView, version: &str, warm: u32) -> HostView {
        let entry = host.functions.entry("thumbnail".to_string()).or_default();
        entry.slots += warm;
        *entry.warm_by_version.entry(version.to_string()).or_default() += warm;
        host
    }

    fn breakdown(hosts: &[HostView], id: u32) -> ScoreBreakdown {
        score_hosts(hosts, &request(512))
            .into_iter()
            .find(|(host_id, _)| *host_id == HostId(id))
            .map(|(_, score)| score)
            .expect("host is feasible")
    }

    #[test]
    fn score_terms_one_per_case() {
        struct Case {
            name: &'static str,
            hosts: Vec<HostView>,
            expected: ScoreBreakdown,
        }
        let empty_host_memory = FREE_MEMORY_SCORE;
        let mut cached = host(1, "az-a");
        cached.cached_packages.insert("sha-thumbnail-3".to_string());
        let mut half_used = host(1, "az-a");
        half_used.free_memory_mb = 4096;
        let cases = vec![
            Case {
                name: "empty host scores only free memory",
                hosts: vec![host(1, "az-a")],
                expected: ScoreBreakdown {
                    free_memory: empty_host_memory,
                    ..Default::default()
                },
            },
            Case {
                name: "cached package adds 100",
                hosts: vec![cached],
                expected: ScoreBreakdown {
                    cached_package: 100.0,
                    free_memory: empty_host_memory,
                    ..Default::default()
                },
            },
            Case {
                name: "two warm slots of the version add 100 and cost 20",
                hosts: vec![with_warm_slots(host(1, "az-a"), "3", 2)],
                expected: ScoreBreakdown {
                    warm_slots: 100.0,
                    free_memory: empty_host_memory,
                    function_slots: -20.0,
                    ..Default::default()
                },
            },
            Case {
                name: "warm slots of another version add nothing",
                hosts: vec![with_warm_slots(host(1, "az-a"), "2", 2)],
                expected: ScoreBreakdown {
                    free_memory: empty_host_memory,
                    function_slots: -20.0,
                    ..Default::default()
                },
            },
            Case {
                name: "half memory used scores 15",
                hosts: vec![half_used],
                expected: ScoreBreakdown {
                    free_memory: 15.0,
                    ..Default::default()
                },
            },
            Case {
                name: "three slots of the function cost 30",
                hosts: vec![with_function_slots(host(1, "az-a"), "thumbnail", 3)],
                expected: ScoreBreakdown {
                    free_memory: empty_host_memory,
                    function_slots: -30.0,
                    ..Default::default()
                },
            },
            Case {
                name: "slots of other functions cost nothing",
                hosts: vec![with_function_slots(host(1, "az-a"), "resize", 3)],
                expected: ScoreBreakdown {
                    free_memory: empty_host_memory,
                    ..Default::default()
                },
            },
            Case {
                name: "zone without the function's slots adds 20",
                hosts: vec![host(1, "az-a"), with_function_slots(host(2, "az-b"), "thumbnail", 2)],
                expected: ScoreBreakdown {
                    free_memory: empty_host_memory,
                    zone_balance: 20.0,
                    ..Default::default()
                },
            },
        ];
        for case in cases {
            assert_eq!(breakdown(&case.hosts, 1), case.expected, "{}", case.name);
        }
    }

    #[test]
    fn zone_balance_uses_mean_over_feasible_zones() {
        // az-a has 1 slot, az-b 3 slots, and az-c only a draining host with 10 slots.
        // The mean is over az-a and az-b only, because az-c has no feasible host.
        // So the mean is 2, and only az-a is underrepresented.
        let mut draining = with_function_slots(host(3, "az-c"), "thumbnail", 10);
        draining.state = HostState::Draining;
        let hosts = vec![
            with_function_slots(host(1, "az-a"), "thumbnail", 1),
            with_function_slots(host(2, "az-b"), "thumbnail", 3),
            draining,
        ];
        assert_eq!(breakdown(&hosts, 1).zone_balance, UNDERREPRESENTED_ZONE_SCORE);
        assert_eq!(breakdown(&hosts, 2).zone_balance, 0.0);
    }

    #[test]
    fn zone_balance_counts_infeasible_hosts_of_feasible_zones() {
        // az-a has a full host with 4 slots of the function, so az-a has 4 slots and
        // az-b has 0. So az-b is underrepresented.
        let mut full = with_function_slots(host(1, "az-a"), "thumbnail", 4);
        full.free_slots = 0;
        let hosts = vec![full, host(2, "az-a"), host(3, "az-b")];
        assert_eq!(breakdown(&hosts, 2).zone_balance, 0.0);
        assert_eq!(breakdown(&hosts, 3).zone_balance, UNDERREPRESENTED_ZONE_SCORE);
    }

    #[test]
    fn zone_balance_absent_when_zones_equal() {
        let hosts = vec![host(1, "az-a"), host(2, "az-b")];
        assert_eq!(breakdown(&hosts, 1).zone_balance, 0.0);
        assert_eq!(breakdown(&hosts, 2).zone_balance, 0.0);
    }

    #[test]
    fn hard_constraints_exclude_hosts() {
        struct Case {
            name: &'static str,
            change: fn(&mut HostView),
        }
        let cases = [
            Case {
                name: "too little free memory",
                change: |h| h.free_memory_mb = 511,
            },
            Case {
                name: "no free slot",
                change: |h| h.free_slots = 0,
            },
            Case {
                name: "draining",
                change: |h| h.state = HostState::Draining,
            },
            Case {
                name: "in maintenance",
                change: |h| h.state = HostState::Maintenance,
            },
            Case {
                name: "runtime not offered",
                change: |h| h.runtimes = vec!["nodejs20.x".to_string()],
            },
        ];
        for case in cases {
            let mut excluded = host(1, "az-a");
            excluded.cached_packages.insert("sha-thumbnail-3".to_string());
            (case.change)(&mut excluded);
            let hosts = vec![excluded, host(2, "az-a")];
            assert_eq!(
                select_placement(&hosts, &request(512)),
                Some(HostId(2)),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn exact_free_memory_is_feasible() {
        let mut exact = host(1, "az-a");
        exact.free_memory_mb = 512;
        assert_eq!(select_placement(&[exact], &request(512)), Some(HostId(1)));
    }

    #[test]
    fn highest_score_wins() {
        let mut cached = host(7, "az-a");
        cached.cached_packages.insert("sha-thumbnail-3".to_string());
        let hosts = vec![host(1, "az-a"), cached, host(3, "az-a")];
        assert_eq!(select_placement(&hosts, &request(512)), Some(HostId(7)));
    }

    #[test]
    fn tie_goes_to_lowest_host_id() {
        let forward = vec![host(5, "az-a"), host(2, "az-a"), host(9, "az-a")];
        let mut reversed = forward.clone();
        reversed.reverse();
        assert_eq!(select_placement(&forward, &request(512)), Some(HostId(2)));
        assert_eq!(select_placement(&reversed, &request(512)), Some(HostId(2)));
    }

    #[test]
    fn no_feasible_host_returns_none() {
        let mut full = host(1, "az-a");
        full.free_slots = 0;
        let mut draining = host(2, "az-b");
        draining.state = HostState::Draining;
        assert_eq!(select_placement(&[full, draining], &request(512)), None);
        assert_eq!(select_placement(&[], &request(512)), None);
    }

    #[test]
    fn spread_penalty_moves_new_slot() {
        // Equal hosts except that host 1 already runs two slots of the function.
        let hosts = vec![with_function_slots(host(1, "az-a"), "thumbnail", 2), host(2, "az-a")];
        assert_eq!(select_placement(&hosts, &request(512)), Some(HostId(2)));
    }
}
