//! Where the client verbs find the controller and their token, the API
//! client built from them, and how connection and token failures are
//! explained to the operator.

use crate::cli::{env_value, CaArg, ClientArgs, OutputFormat, TokenArgs};
use crate::exit::{exit_for_client, Exit, Explained, UsageError};
use dure_api::{Client, ClientError, ClientTls, CA_FILE};
use std::path::{Path, PathBuf};

/// The name of the admin token file the controller writes in its data dir.
pub const TOKEN_FILE: &str = "admin.token";

/// Returns the data directory: the flag (or `DURE_DATA`, read by clap),
/// else `$DURE_HOME`, else `./.dure`.
pub fn data_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(dir) = flag {
        return dir.to_path_buf();
    }
    match std::env::var_os("DURE_HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home),
        _ => PathBuf::from(".dure"),
    }
}

/// Where the token in use came from; said again when the controller refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token` or `DURE_TOKEN`.
    Given,
    /// `--token-file` or `DURE_TOKEN_FILE`: read from this file.
    GivenFile(PathBuf),
    /// Read from this file.
    File(PathBuf),
    /// None could be found; requests go without one so that an unreachable
    /// controller is still reported as such, which is the likelier problem.
    Missing { path: PathBuf, reason: String },
}

/// Returns the token given by a flag or a variable, in this order:
/// `--token`, `--token-file`, `DURE_TOKEN`, `DURE_TOKEN_FILE` (both
/// variables set is refused: which one is meant is unclear). A token file
/// that cannot be read or holds nothing is a usage error (exit 2).
pub fn given_token(args: &TokenArgs) -> Result<Option<(String, TokenSource)>, UsageError> {
    if let Some(token) = args.token.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some((token.to_string(), TokenSource::Given)));
    }
    if let Some(path) = &args.token_file {
        return read_token_file(path).map(Some);
    }
    match (env_value("DURE_TOKEN"), env_value("DURE_TOKEN_FILE")) {
        (Some(_), Some(_)) => Err(UsageError(
            "both DURE_TOKEN and DURE_TOKEN_FILE are set: unset one (DURE_TOKEN_FILE keeps the token out of the environment)".into(),
        )),
        (Some(token), None) => Ok(Some((token, TokenSource::Given))),
        (None, Some(path)) => read_token_file(Path::new(&path)).map(Some),
        (None, None) => Ok(None),
    }
}

/// Reads a token file named by `--token-file` or `DURE_TOKEN_FILE`.
fn read_token_file(path: &Path) -> Result<(String, TokenSource), UsageError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        UsageError(format!(
            "cannot read the token file {}: {} (check --token-file or DURE_TOKEN_FILE)",
            path.display(),
            e.to_string().to_lowercase()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(UsageError(format!(
            "the token file {} is empty: it must hold the token (the controller writes its own to admin.token in its data directory)",
            path.display()
        )));
    }
    Ok((
        token.to_string(),
        TokenSource::GivenFile(path.to_path_buf()),
    ))
}

/// Returns the token and where it came from: the one given, else the
/// admin token file in `data`.
pub fn resolve_token(args: &TokenArgs, data: &Path) -> Result<(String, TokenSource), UsageError> {
    if let Some(given) = given_token(args)? {
        return Ok(given);
    }
    Ok(admin_token(data))
}

/// Reads `<data>/admin.token`; a missing or empty file is said when the
/// controller refuses the request.
fn admin_token(data: &Path) -> (String, TokenSource) {
    let path = data.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => (text.trim().to_string(), TokenSource::File(path)),
        Ok(_) => (
            String::new(),
            TokenSource::Missing {
                path,
                reason: "the file is empty".into(),
            },
        ),
        Err(error) => (
            String::new(),
            TokenSource::Missing {
                path,
                reason: error.to_string().to_lowercase(),
            },
        ),
    }
}

/// A controller address as a URL: a bare `host:port` is HTTPS.
pub fn controller_url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("https://{addr}")
    }
}

/// What an HTTPS client of `url` trusts: the CA file given (`--ca` or
/// `DURE_CA`), else `ca.pem` in `data` when it is there. A file given but
/// unusable is a usage error; none at all leaves the client trusting no
/// one, so the handshake fails saying that no CA was given (and an
/// unreachable controller is still reported as such). Plain `http://`
/// needs none.
pub fn client_tls(url: &str, ca: &CaArg, data: &Path) -> Result<Option<ClientTls>, UsageError> {
    if !url.starts_with("https://") {
        return Ok(None);
    }
    let (path, given) = match ca.given() {
        Some(path) => (path, true),
        None => (data.join(CA_FILE), false),
    };
    if !given && !path.exists() {
        return Ok(None);
    }
    ClientTls::from_ca_file(&path)
        .map(Some)
        .map_err(|e| UsageError(e.to_string()))
}

/// Everything a client verb needs: the API client and the output format.
pub struct Context {
    pub client: Client,
    pub output: OutputFormat,
    /// The data directory named by `--data` or `DURE_DATA`, if any.
    pub data: Option<PathBuf>,
    token_source: TokenSource,
}

impl Context {
    pub fn new(args: &ClientArgs, output: OutputFormat) -> Result<Context, UsageError> {
        let given_data = args.data.given();
        let data = data_dir(given_data.as_deref());
        let (token, token_source) = resolve_token(&args.token, &data)?;
        let url = controller_url(&args.addr());
        let tls = client_tls(&url, &args.ca, &data)?;
        Ok(Context {
            client: Client::with_tls(&url, &token, tls.as_ref()),
            output,
            data: given_data,
            token_source,
        })
    }

    pub fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }

    /// Rewrites a connection or token failure anywhere in `error`'s chain
    /// into one sentence that says what to check; other errors pass as they are.
    pub fn explain(&self, error: anyhow::Error) -> anyhow::Error {
        let Some(client_error) = error.chain().find_map(|c| c.downcast_ref::<ClientError>()) else {
            return error;
        };
        let message =
            explain_client_error(client_error, self.client.base_url(), &self.token_source);
        anyhow::Error::new(Explained {
            message,
            exit: exit_for_client(client_error),
        })
    }

    /// Rewrites an unreachable controller, for a verb that changes the
    /// configuration, into what it means: no configuration changes now,
    /// while the servers themselves keep running.
    pub fn explain_config_unreachable(&self, error: anyhow::Error) -> anyhow::Error {
        let unreachable = error.chain().any(|c| {
            matches!(
                c.downcast_ref::<ClientError>(),
                Some(ClientError::Unreachable { .. })
            )
        });
        if !unreachable {
            return error;
        }
        anyhow::Error::new(Explained {
            message: config_unreachable(self.client.base_url()),
            exit: Exit::Unreachable,
        })
    }
}

/// What an unreachable controller means for configuration changes.
pub fn config_unreachable(base: &str) -> String {
    format!(
        "configuration changes are unavailable while the controller at {base} is unreachable; servers keep running (is it running? set --addr or DURE_ADDR)"
    )
}

/// Returns the operator-facing sentence for a client error.
pub fn explain_client_error(error: &ClientError, base: &str, token: &TokenSource) -> String {
    match error {
        ClientError::Unreachable { reason, .. } => format!(
            "cannot reach the controller at {base}: {} (is it running? set --addr or DURE_ADDR)",
            short_reason(reason)
        ),
        ClientError::Untrusted { reason, .. } => {
            format!("cannot connect securely to the controller at {base}: {reason}")
        }
        ClientError::Auth { status, message } if *status == 403 => format!(
            "the controller at {base} refused the request: {message} (http {status}); use a token with that role (`dure token create --role ROLE`)"
        ),
        ClientError::Auth { status, message } => {
            let hint = match token {
                TokenSource::Given => "check --token or DURE_TOKEN".to_string(),
                TokenSource::GivenFile(path) => format!(
                    "the token was read from {} (--token-file or DURE_TOKEN_FILE); check that file",
                    path.display()
                ),
                TokenSource::File(path) => format!(
                    "the token was read from {}; set --token or DURE_TOKEN, or --data to this controller's data directory",
                    path.display()
                ),
                TokenSource::Missing { path, reason } => format!(
                    "no token was given and {} could not be read ({reason}); set --token or DURE_TOKEN, or --data to the controller's data directory",
                    path.display()
                ),
            };
            format!(
                "the controller at {base} refused the request: {message} (http {status}); {hint}"
            )
        }
        ClientError::Api { message, .. } => message.clone(),
        ClientError::Decode { .. } => error.to_string(),
    }
}

/// Keeps the innermost cause of a transport error ("connection refused
/// (os error 111)"); the outer layers only repeat the URL.
fn short_reason(reason: &str) -> String {
    let inner = reason.rsplit(": ").next().unwrap_or(reason);
    let mut chars = inner.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(token: Option<&str>, file: Option<&Path>) -> TokenArgs {
        TokenArgs {
            token: token.map(str::to_string),
            token_file: file.map(Path::to_path_buf),
        }
    }

    #[test]
    fn token_comes_from_flag_then_token_file_then_admin_token() {
        let dir = tempfile::tempdir().unwrap();
        let (token, source) = resolve_token(&args(Some("t1"), None), dir.path()).unwrap();
        assert_eq!((token.as_str(), source), ("t1", TokenSource::Given));
        let file = dir.path().join("tok");
        std::fs::write(&file, "  t2\n").unwrap();
        let (token, source) = resolve_token(&args(None, Some(&file)), dir.path()).unwrap();
        assert_eq!(
            (token.as_str(), source),
            ("t2", TokenSource::GivenFile(file.clone()))
        );
        std::fs::write(&file, " \n").unwrap();
        let err = resolve_token(&args(None, Some(&file)), dir.path()).unwrap_err();
        assert!(err.0.contains("is empty"), "{err}");
        let missing = dir.path().join("nope");
        let err = resolve_token(&args(None, Some(&missing)), dir.path()).unwrap_err();
        assert!(err.0.starts_with("cannot read the token file"), "{err}");
        assert!(err.0.contains("no such file"), "{err}");
        let (token, source) = admin_token(dir.path());
        assert_eq!(token, "");
        match source {
            TokenSource::Missing { path, reason } => {
                assert_eq!(path, dir.path().join("admin.token"));
                assert!(reason.contains("no such file"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(dir.path().join("admin.token"), "secret\n").unwrap();
        let (token, source) = admin_token(dir.path());
        assert_eq!(token, "secret");
        assert_eq!(source, TokenSource::File(dir.path().join("admin.token")));
    }

    #[test]
    fn unreachable_names_the_address_and_what_to_do() {
        let error = ClientError::Unreachable {
            url: "http://127.0.0.1:9/v1/nodes".into(),
            reason: "error sending request for url (http://127.0.0.1:9/v1/nodes): client error (Connect): tcp connect error: Connection refused (os error 111)".into(),
        };
        let text = explain_client_error(&error, "http://127.0.0.1:9", &TokenSource::Given);
        assert_eq!(
            text,
            "cannot reach the controller at http://127.0.0.1:9: connection refused (os error 111) (is it running? set --addr or DURE_ADDR)"
        );
    }

    #[test]
    fn refused_token_says_where_it_came_from() {
        let error = ClientError::Auth {
            status: 401,
            message: "missing bearer token".into(),
        };
        let source = TokenSource::Missing {
            path: PathBuf::from("/d/admin.token"),
            reason: "no such file or directory (os error 2)".into(),
        };
        let text = explain_client_error(&error, "http://h:1", &source);
        assert!(text.contains("/d/admin.token could not be read"), "{text}");
        assert!(text.contains("http 401"), "{text}");
    }
}
