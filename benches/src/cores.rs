//! The core-split planner: which cores a cell's server gets, and which cores its
//! load generators get.
//!
//! A cell with N server cores gives the server the first N cores this process may
//! use (cores `0..N-1` on an unrestricted machine) and gives every remaining core
//! (or the cores named by `--client-cores`) to load generator processes, one
//! process per core. Server and client cores are always disjoint: when they cannot
//! be, the planner refuses the cell and says why, instead of letting the two sides
//! share a core silently.
//!
//! Pure arithmetic on core numbers; it never pins, starts or measures anything.

use std::fmt;

/// Which cores a cell's server and load generators run on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CoreSplit {
    /// The server's cores, in order: thread-per-core copy `i` runs on `server[i]`.
    pub server: Vec<usize>,
    /// The load generators' cores: at most one load process per core.
    pub clients: Vec<usize>,
}

impl CoreSplit {
    /// Server cores in this split (the cell's N).
    pub fn server_cores(&self) -> usize {
        self.server.len()
    }

    /// How many load processes drive `conns` connections: one per client core, but
    /// never more processes than connections (each process needs at least one).
    pub fn load_processes(&self, conns: usize) -> usize {
        self.clients.len().min(conns.max(1))
    }

    /// The cores the cell keeps busy: server cores plus the cores of the load
    /// processes it starts for `conns` connections.
    pub fn cores_in_use(&self, conns: usize) -> usize {
        self.server.len() + self.load_processes(conns)
    }
}

impl fmt::Display for CoreSplit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server on core(s) {}, load on core(s) {}", core_list(&self.server), core_list(&self.clients))
    }
}

/// Cores as `0,1,2`.
pub fn core_list(cores: &[usize]) -> String {
    cores.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

/// Why a cell cannot run with disjoint server and client cores here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreRefusal {
    /// `--server-cores 0`.
    #[error("a server needs at least one core")]
    NoServerCores,
    /// Not enough cores for N server cores and at least one client core.
    #[error(
        "{wanted} server core(s) need at least {needed} usable cores ({wanted} for the server, at least 1 for \
         the load generator); this process may use {} ({}). Multi-core cells need a machine with more cores",
        allowed.len(),
        core_list(allowed)
    )]
    TooFewCores {
        /// Server cores asked for.
        wanted: usize,
        /// Cores that would take.
        needed: usize,
        /// The cores this process may use.
        allowed: Vec<usize>,
    },
    /// `--client-cores` names a core the server gets.
    #[error(
        "--client-cores {} overlaps the server's cores {} (a server with {} core(s) gets the first {} usable \
         cores): client and server must not share a core",
        core_list(clients),
        core_list(server),
        server.len(),
        server.len()
    )]
    ClientOverlap {
        /// The client cores asked for.
        clients: Vec<usize>,
        /// The server's cores.
        server: Vec<usize>,
    },
    /// `--client-cores` names a core this process may not use.
    #[error("--client-cores: core {core} is not one this process may use ({})", core_list(allowed))]
    ClientNotAllowed {
        /// The core.
        core: usize,
        /// The cores this process may use.
        allowed: Vec<usize>,
    },
    /// `--client-cores` given but empty, or naming a core twice.
    #[error("--client-cores must name at least one core, each once")]
    BadClientList,
}

/// Plans a cell with `server_cores` server cores on a machine where this process
/// may use `allowed`; `client_cores` overrides the client side (else every
/// remaining core).
///
/// # Errors
/// [`CoreRefusal`] when the server and at least one load generator cannot get
/// disjoint cores.
pub fn plan(allowed: &[usize], server_cores: usize, client_cores: Option<&[usize]>) -> Result<CoreSplit, CoreRefusal> {
    if server_cores == 0 {
        return Err(CoreRefusal::NoServerCores);
    }
    let mut usable = allowed.to_vec();
    usable.sort_unstable();
    usable.dedup();
    let too_few =
        || CoreRefusal::TooFewCores { wanted: server_cores, needed: server_cores + 1, allowed: usable.clone() };
    if usable.len() < server_cores {
        return Err(too_few());
    }
    let server: Vec<usize> = usable[..server_cores].to_vec();
    let clients = match client_cores {
        None => usable[server_cores..].to_vec(),
        Some(asked) => {
            let mut distinct = asked.to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            if asked.is_empty() || distinct.len() != asked.len() {
                return Err(CoreRefusal::BadClientList);
            }
            if let Some(&core) = asked.iter().find(|c| !usable.contains(c)) {
                return Err(CoreRefusal::ClientNotAllowed { core, allowed: usable.clone() });
            }
            if asked.iter().any(|c| server.contains(c)) {
                return Err(CoreRefusal::ClientOverlap { clients: asked.to_vec(), server });
            }
            asked.to_vec()
        }
    };
    if clients.is_empty() {
        return Err(too_few());
    }
    Ok(CoreSplit { server, clients })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_core_on_two_cores_leaves_one_client_core() {
        let split = plan(&[0, 1], 1, None).unwrap();
        assert_eq!(split, CoreSplit { server: vec![0], clients: vec![1] });
        assert_eq!(split.load_processes(100), 1);
        assert_eq!(split.cores_in_use(100), 2);
        assert_eq!(split.to_string(), "server on core(s) 0, load on core(s) 1");
    }

    #[test]
    fn two_server_cores_on_two_cores_are_refused_with_the_reason() {
        let refusal = plan(&[0, 1], 2, None).unwrap_err();
        assert_eq!(refusal, CoreRefusal::TooFewCores { wanted: 2, needed: 3, allowed: vec![0, 1] });
        let text = refusal.to_string();
        assert!(text.contains("need at least 3 usable cores") && text.contains("may use 2 (0,1)"), "{text}");
        assert!(matches!(plan(&[0, 1], 3, None), Err(CoreRefusal::TooFewCores { wanted: 3, .. })));
        assert_eq!(plan(&[0, 1], 0, None), Err(CoreRefusal::NoServerCores));
    }

    #[test]
    fn sixteen_cores_give_the_server_the_first_n_and_the_load_the_rest() {
        let all: Vec<usize> = (0..16).collect();
        for n in [1, 2, 4, 8, 15] {
            let split = plan(&all, n, None).unwrap();
            assert_eq!(split.server, (0..n).collect::<Vec<_>>());
            assert_eq!(split.clients, (n..16).collect::<Vec<_>>());
            assert!(split.server.iter().all(|c| !split.clients.contains(c)), "disjoint at {n}");
        }
        assert!(plan(&all, 16, None).is_err(), "no core left for the load");
        // Fewer connections than client cores: one process per connection.
        let split = plan(&all, 4, None).unwrap();
        assert_eq!(split.load_processes(1), 1);
        assert_eq!(split.load_processes(5), 5);
        assert_eq!(split.load_processes(100), 12);
    }

    #[test]
    fn a_restricted_process_uses_the_cores_it_may_use_in_order() {
        let split = plan(&[7, 3, 5, 4], 2, None).unwrap();
        assert_eq!(split, CoreSplit { server: vec![3, 4], clients: vec![5, 7] });
    }

    #[test]
    fn explicit_client_cores_must_be_allowed_distinct_and_off_the_server() {
        let all: Vec<usize> = (0..8).collect();
        let split = plan(&all, 4, Some(&[6, 7])).unwrap();
        assert_eq!(split, CoreSplit { server: vec![0, 1, 2, 3], clients: vec![6, 7] });
        let overlap = plan(&all, 4, Some(&[3, 4])).unwrap_err();
        assert!(matches!(overlap, CoreRefusal::ClientOverlap { .. }), "{overlap}");
        assert!(overlap.to_string().contains("must not share a core"));
        assert_eq!(plan(&all, 1, Some(&[9])), Err(CoreRefusal::ClientNotAllowed { core: 9, allowed: all.clone() }));
        assert_eq!(plan(&all, 1, Some(&[])), Err(CoreRefusal::BadClientList));
        assert_eq!(plan(&all, 1, Some(&[5, 5])), Err(CoreRefusal::BadClientList));
    }
}
