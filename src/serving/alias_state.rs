//! Why one alias is or is not serving its registry version: the one state
//! that `GET /admin/status`, readiness, gRPC health and the metrics read.

/// What the reconciler last did with one `model@alias`.
///
/// The alias's slot is kept apart from its state: whatever the state, the
/// slot holds the version that served before (if any) until a new one is
/// loaded, validated and warm, so a state other than `Serving` never means
/// requests stop being answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasState {
    /// Fetching `version` from the registry and loading it.
    Loading { version: u64 },
    /// Checking `version`'s signature against the version it replaces.
    Validating { version: u64 },
    /// Running a warm-up inference on `version`.
    Warming { version: u64 },
    /// The slot serves `version`, the registry's version of the alias.
    Serving { version: u64 },
    /// The slot serves `version`, the registry's version of the alias, from
    /// the copy loaded in memory, but its files changed or vanished on disk
    /// since (the alias's `drift` in the status says how). Still ready.
    Drifted { version: u64 },
    /// `version` cannot serve the alias (it does not load, its signature is
    /// incompatible, it is over the memory limit, its warm-up failed). It is
    /// not tried again until the alias moves (or an operator allows it).
    Refused { version: u64, reason: String },
    /// The registry could not hand `version` over; tried again every poll.
    RegistryUnreachable { version: u64, reason: String },
    /// The alias points at `version` whose registration has not finished
    /// (MLflow: not READY); followed once it is, at a later poll.
    Waiting { version: u64, reason: String },
    /// `version` is registered for the alias but not held in its slot
    /// (`--memory-limit`, a model not named by `--preload`): a request
    /// loads it if it is not loaded, and it may be evicted when room is
    /// needed. Ready: a load on demand answers it.
    OnDemand { version: u64 },
}

impl AliasState {
    /// Every state's name, as [`AliasState::name`] gives it.
    pub const NAMES: [&'static str; 9] = [
        "loading",
        "validating",
        "warming",
        "serving",
        "drifted",
        "refused",
        "registry_unreachable",
        "waiting",
        "on_demand",
    ];

    /// The name `GET /admin/status` and the metrics show.
    pub fn name(&self) -> &'static str {
        match self {
            AliasState::Loading { .. } => "loading",
            AliasState::Validating { .. } => "validating",
            AliasState::Warming { .. } => "warming",
            AliasState::Serving { .. } => "serving",
            AliasState::Drifted { .. } => "drifted",
            AliasState::Refused { .. } => "refused",
            AliasState::RegistryUnreachable { .. } => "registry_unreachable",
            AliasState::Waiting { .. } => "waiting",
            AliasState::OnDemand { .. } => "on_demand",
        }
    }

    /// The version the state is about: the one on its way in, serving,
    /// refused, or waited for.
    pub fn version(&self) -> u64 {
        match self {
            AliasState::Loading { version }
            | AliasState::Validating { version }
            | AliasState::Warming { version }
            | AliasState::Serving { version }
            | AliasState::Drifted { version }
            | AliasState::Refused { version, .. }
            | AliasState::RegistryUnreachable { version, .. }
            | AliasState::Waiting { version, .. }
            | AliasState::OnDemand { version } => *version,
        }
    }

    /// Why the alias does not serve its registry version; None while it
    /// does or is on its way to.
    pub fn reason(&self) -> Option<&str> {
        match self {
            AliasState::Refused { reason, .. }
            | AliasState::RegistryUnreachable { reason, .. }
            | AliasState::Waiting { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Held up by the registry rather than by the version: the reconciler
    /// tries again by itself at every poll, so once the server has been
    /// ready this never makes it unready.
    pub fn waits_on_registry(&self) -> bool {
        matches!(
            self,
            AliasState::RegistryUnreachable { .. } | AliasState::Waiting { .. }
        )
    }

    /// Whether `target` was refused: not tried again until the alias moves.
    pub fn refused(&self, target: u64) -> bool {
        matches!(self, AliasState::Refused { version, .. } if *version == target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_states_that_do_not_serve_the_target_give_a_reason() {
        let why = || "version 2 was refused: bad".to_string();
        let states = [
            AliasState::Loading { version: 2 },
            AliasState::Validating { version: 2 },
            AliasState::Warming { version: 2 },
            AliasState::Serving { version: 2 },
            AliasState::Drifted { version: 2 },
            AliasState::Refused {
                version: 2,
                reason: why(),
            },
            AliasState::RegistryUnreachable {
                version: 2,
                reason: why(),
            },
            AliasState::Waiting {
                version: 2,
                reason: why(),
            },
            AliasState::OnDemand { version: 2 },
        ];
        for (state, name) in states.iter().zip(AliasState::NAMES) {
            assert_eq!(state.name(), name);
            assert_eq!(state.version(), 2);
            let gives_reason = matches!(name, "refused" | "registry_unreachable" | "waiting");
            assert_eq!(state.reason().is_some(), gives_reason, "{name}");
        }
        assert!(states[5].refused(2) && !states[5].refused(3));
        assert!(!states[3].refused(2) && !states[4].refused(2));
        assert!(states[6].waits_on_registry() && states[7].waits_on_registry());
        assert!(!states[5].waits_on_registry() && !states[4].waits_on_registry());
        assert!(!states[8].refused(2) && !states[8].waits_on_registry());
    }
}
