//! The agent's reconcile rule for one server: given what the controller
//! wants and what the server is doing, what to do next.

use crate::state::{Intent, ServerState};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileAction {
    /// Spawn the server's process.
    Spawn,
    /// Run the stop command or send the stop signal, then kill after the timeout.
    StopGracefully,
    /// Kill the whole process group now.
    KillGroup,
    Nothing,
}

/// Decides the next step for one server. `new_generation` is true when the
/// intent was (re)issued since the agent last acted on it: a failed server is
/// only started again when the operator asks again, not on every poll.
pub fn reconcile_server(
    intent: Intent,
    state: ServerState,
    new_generation: bool,
) -> ReconcileAction {
    use ServerState::*;
    match (intent, state) {
        (Intent::Run, Stopped) => ReconcileAction::Spawn,
        (Intent::Run, Failed) if new_generation => ReconcileAction::Spawn,
        // A stopping server (`Run, Stopping`) finishes its stop first; once
        // stopped, the arm above spawns it again.
        (Intent::Stop, Starting | Running | Ready) => ReconcileAction::StopGracefully,
        (Intent::Kill, Starting | Running | Ready | Stopping) => ReconcileAction::KillGroup,
        _ => ReconcileAction::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServerState::*;

    #[test]
    fn run_starts_a_stopped_server_only() {
        assert_eq!(
            reconcile_server(Intent::Run, Stopped, false),
            ReconcileAction::Spawn
        );
        for state in [Starting, Running, Ready, Stopping] {
            assert_eq!(
                reconcile_server(Intent::Run, state, true),
                ReconcileAction::Nothing
            );
        }
    }

    #[test]
    fn a_failed_server_waits_for_a_new_request() {
        assert_eq!(
            reconcile_server(Intent::Run, Failed, false),
            ReconcileAction::Nothing
        );
        assert_eq!(
            reconcile_server(Intent::Run, Failed, true),
            ReconcileAction::Spawn
        );
    }

    #[test]
    fn stop_is_graceful_and_kill_is_not() {
        assert_eq!(
            reconcile_server(Intent::Stop, Ready, false),
            ReconcileAction::StopGracefully
        );
        assert_eq!(
            reconcile_server(Intent::Stop, Stopping, false),
            ReconcileAction::Nothing
        );
        assert_eq!(
            reconcile_server(Intent::Kill, Stopping, false),
            ReconcileAction::KillGroup
        );
        assert_eq!(
            reconcile_server(Intent::Kill, Ready, false),
            ReconcileAction::KillGroup
        );
        for state in [Stopped, Failed] {
            assert_eq!(
                reconcile_server(Intent::Stop, state, true),
                ReconcileAction::Nothing
            );
            assert_eq!(
                reconcile_server(Intent::Kill, state, true),
                ReconcileAction::Nothing
            );
        }
    }

    #[test]
    fn hold_never_starts_or_stops_anything() {
        for state in [Stopped, Starting, Running, Ready, Stopping, Failed] {
            for new_generation in [false, true] {
                assert_eq!(
                    reconcile_server(Intent::Hold, state, new_generation),
                    ReconcileAction::Nothing,
                    "{state:?}"
                );
            }
        }
    }
}
