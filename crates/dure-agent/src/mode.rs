//! Whether the agent follows the controller (MANAGED) or runs its servers
//! from the local copy because the controller cannot be reached
//! (INDEPENDENT), and the state of the local copy on disk. Written by the
//! controller link, read by the status endpoint.

use dure_api::AgentMode;
use std::sync::{Mutex, MutexGuard};

/// A snapshot of the agent's mode and local copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ModeView {
    pub(crate) mode: AgentMode,
    /// While independent: since when, in ms since the Unix epoch.
    pub(crate) independent_since_ms: Option<u64>,
    /// Index of the usable local copy on disk.
    pub(crate) local_copy_index: Option<u64>,
    /// Why the local copy was refused or could not be saved.
    pub(crate) local_copy_error: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Mode(Mutex<ModeView>);

impl Mode {
    /// Starts MANAGED, with what was found of the local copy at start.
    pub(crate) fn new(local_copy_index: Option<u64>, local_copy_error: Option<String>) -> Mode {
        Mode(Mutex::new(ModeView {
            local_copy_index,
            local_copy_error,
            ..ModeView::default()
        }))
    }

    fn lock(&self) -> MutexGuard<'_, ModeView> {
        // Plain data: a panic elsewhere cannot leave it inconsistent.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn view(&self) -> ModeView {
        self.lock().clone()
    }

    pub(crate) fn is_independent(&self) -> bool {
        self.lock().mode == AgentMode::Independent
    }

    /// Switches to INDEPENDENT; false when it already was.
    pub(crate) fn enter_independent(&self, now_ms: u64) -> bool {
        let mut view = self.lock();
        if view.mode == AgentMode::Independent {
            return false;
        }
        view.mode = AgentMode::Independent;
        view.independent_since_ms = Some(now_ms);
        true
    }

    /// Switches back to MANAGED; returns since when it was independent.
    pub(crate) fn leave_independent(&self) -> Option<u64> {
        let mut view = self.lock();
        view.mode = AgentMode::Managed;
        view.independent_since_ms.take()
    }

    /// A new local copy was written: the old error no longer applies.
    pub(crate) fn local_copy_saved(&self, index: u64) {
        let mut view = self.lock();
        view.local_copy_index = Some(index);
        view.local_copy_error = None;
    }

    pub(crate) fn local_copy_failed(&self, message: String) {
        self.lock().local_copy_error = Some(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enters_once_and_leaves_with_the_start_time() {
        let mode = Mode::new(Some(4), Some("refused".into()));
        assert!(!mode.is_independent());
        assert!(mode.enter_independent(10));
        assert!(!mode.enter_independent(20), "already independent");
        assert_eq!(mode.view().independent_since_ms, Some(10));
        assert_eq!(mode.leave_independent(), Some(10));
        assert_eq!(mode.view().mode, AgentMode::Managed);
        assert_eq!(mode.view().independent_since_ms, None);
        mode.local_copy_saved(7);
        assert_eq!(
            (mode.view().local_copy_index, mode.view().local_copy_error),
            (Some(7), None)
        );
    }
}
