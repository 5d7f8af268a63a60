//! Exit codes and how an error becomes one, so scripts can tell "the
//! operation failed" from "you typed it wrong" from "the controller is away".

use dure_api::ClientError;
use std::fmt;

/// The process exit codes of `dure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It worked.
    Success = 0,
    /// The operation failed, or the API refused a valid command (404, 409, ...).
    Failed = 1,
    /// The command line or a value in it is wrong (clap uses 2 as well).
    Usage = 2,
    /// The controller cannot be reached, or refused the token.
    Unreachable = 3,
    /// Ctrl-C while waiting (128 + SIGINT, as shells report it).
    Interrupted = 130,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A usage error found after clap's own parsing (a value that needs other
/// values to judge, a missing token for the agent, ...): exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Something that ran and ended badly (an operation failed, a server ended
/// failed): exit code 1. The message has already been said in full.
#[derive(Debug)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

/// Not an error but an answer given by the exit code, as diff(1) exits 1
/// when the inputs differ: the line is printed without `error:`, and the
/// exit code is 1.
#[derive(Debug)]
pub struct Answer(pub String);

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Answer {}

/// An error already rewritten for the operator (for example "cannot reach
/// the controller at ..."), carrying the exit code of what it replaced.
#[derive(Debug)]
pub struct Explained {
    pub message: String,
    pub exit: Exit,
}

impl fmt::Display for Explained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Explained {}

/// Returns the exit code for an error, looking through its whole chain so
/// context added on the way up does not hide what happened.
pub fn exit_for(error: &anyhow::Error) -> Exit {
    for cause in error.chain() {
        if let Some(explained) = cause.downcast_ref::<Explained>() {
            return explained.exit;
        }
        if cause.is::<UsageError>() {
            return Exit::Usage;
        }
        if let Some(client) = cause.downcast_ref::<ClientError>() {
            return exit_for_client(client);
        }
    }
    Exit::Failed
}

/// Returns the exit code for an API client error.
pub fn exit_for_client(error: &ClientError) -> Exit {
    if error.is_connection_or_auth() {
        return Exit::Unreachable;
    }
    match error {
        // The API checks what the CLI could not (names, cross-document
        // rules); a refusal of the request itself is still a usage error.
        ClientError::Api { status: 400, .. } => Exit::Usage,
        ClientError::Api { code, .. } if code == "invalid" || code == "too_large" => Exit::Usage,
        _ => Exit::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn api(status: u16, code: &str) -> ClientError {
        ClientError::Api {
            status,
            code: code.into(),
            message: "m".into(),
        }
    }

    #[test]
    fn client_errors_map_to_codes() {
        let unreachable = ClientError::Unreachable {
            url: "http://127.0.0.1:1/v1/nodes".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(exit_for_client(&unreachable), Exit::Unreachable);
        let auth = ClientError::Auth {
            status: 401,
            message: "bad token".into(),
        };
        assert_eq!(exit_for_client(&auth), Exit::Unreachable);
        assert_eq!(exit_for_client(&api(400, "invalid")), Exit::Usage);
        assert_eq!(exit_for_client(&api(413, "too_large")), Exit::Usage);
        assert_eq!(exit_for_client(&api(404, "not_found")), Exit::Failed);
        assert_eq!(exit_for_client(&api(409, "conflict")), Exit::Failed);
        assert_eq!(exit_for_client(&api(500, "internal")), Exit::Failed);
        let decode = ClientError::Decode {
            url: "u".into(),
            reason: "r".into(),
        };
        assert_eq!(exit_for_client(&decode), Exit::Failed);
    }

    #[test]
    fn context_does_not_hide_the_cause() {
        let error = anyhow::Error::new(api(404, "not_found")).context("while showing `x`");
        assert_eq!(exit_for(&error), Exit::Failed);
        let error: anyhow::Result<()> = Err(anyhow::Error::new(ClientError::Auth {
            status: 403,
            message: "no".into(),
        }));
        let error = error.context("listing nodes").unwrap_err();
        assert_eq!(exit_for(&error), Exit::Unreachable);
        let error = anyhow::Error::new(UsageError("bad".into())).context("x");
        assert_eq!(exit_for(&error), Exit::Usage);
        assert_eq!(
            exit_for(&anyhow::Error::new(Failure("f".into()))),
            Exit::Failed
        );
        assert_eq!(exit_for(&anyhow::anyhow!("other")), Exit::Failed);
        assert_eq!(
            exit_for(&anyhow::Error::new(Answer("differs".into()))),
            Exit::Failed
        );
        let explained = Explained {
            message: "cannot reach".into(),
            exit: Exit::Unreachable,
        };
        assert_eq!(exit_for(&anyhow::Error::new(explained)), Exit::Unreachable);
        assert_eq!(Exit::Unreachable.code(), 3);
    }
}
