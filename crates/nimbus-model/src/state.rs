use serde::{Deserialize, Serialize};

/// Deployment state of a function. Every state change goes through
/// [`FunctionState::transition`], which is the one place that decides which changes
/// are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum FunctionState {
    /// Created; the code package is being stored.
    Pending,
    /// Ready to invoke.
    Active,
    /// New code or configuration is being processed; other updates wait.
    Updating,
    /// Disabled; nothing sets this state yet, but the transitions are defined.
    Inactive,
    /// The last deployment failed, and `state_reason` contains the reason.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("function state cannot change from {from:?} to {to:?}")]
pub struct InvalidTransition {
    pub from: FunctionState,
    pub to: FunctionState,
}

impl FunctionState {
    pub fn can_transition(self, to: FunctionState) -> bool {
        use FunctionState::*;
        matches!(
            (self, to),
            (Pending, Active)
                | (Pending, Failed)
                | (Active, Updating)
                | (Active, Inactive)
                | (Updating, Active)
                | (Updating, Failed)
                | (Inactive, Active)
                | (Inactive, Updating)
                | (Failed, Active)
                | (Failed, Updating)
        )
    }

    pub fn transition(self, to: FunctionState) -> Result<FunctionState, InvalidTransition> {
        if self.can_transition(to) {
            Ok(to)
        } else {
            Err(InvalidTransition { from: self, to })
        }
    }

    /// Returns the spelling stored in the database, as in the control-plane schema.
    pub fn as_db_str(self) -> &'static str {
        match self {
            FunctionState::Pending => "PENDING",
            FunctionState::Active => "ACTIVE",
            FunctionState::Updating => "UPDATING",
            FunctionState::Inactive => "INACTIVE",
            FunctionState::Failed => "FAILED",
        }
    }

    pub fn from_db_str(value: &str) -> Option<FunctionState> {
        Some(match value {
            "PENDING" => FunctionState::Pending,
            "ACTIVE" => FunctionState::Active,
            "UPDATING" => FunctionState::Updating,
            "INACTIVE" => FunctionState::Inactive,
            "FAILED" => FunctionState::Failed,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::FunctionState::*;
    use super::*;

    const ALL: [FunctionState; 5] = [Pending, Active, Updating, Inactive, Failed];

    #[test]
    fn allowed_transitions() {
        let allowed = [
            (Pending, Active),
            (Pending, Failed),
            (Active, Updating),
            (Active, Inactive),
            (Updating, Active),
            (Updating, Failed),
            (Inactive, Active),
            (Inactive, Updating),
            (Failed, Active),
            (Failed, Updating),
        ];
        for from in ALL {
            for to in ALL {
                let expected = allowed.contains(&(from, to));
                assert_eq!(from.can_transition(to), expected, "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn invalid_transition_error() {
        assert_eq!(
            Pending.transition(Updating),
            Err(InvalidTransition {
                from: Pending,
                to: Updating
            })
        );
        assert_eq!(
            Updating.transition(Updating).unwrap_err().to_string(),
            "function state cannot change from Updating to Updating"
        );
        assert_eq!(Active.transition(Updating), Ok(Updating));
    }

    #[test]
    fn db_spelling_round_trip() {
        for state in ALL {
            assert_eq!(FunctionState::from_db_str(state.as_db_str()), Some(state));
        }
        assert_eq!(FunctionState::from_db_str("active"), None);
    }
}
