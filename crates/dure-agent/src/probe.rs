//! Readiness probes: one check of a server's `ready.check` against its
//! port on 127.0.0.1, answering ready or a short reason why not
//! (`connection refused`, `http 503`, `timed out after 1s`).
//!
//! The HTTP check is a minimal HTTP/1.0 `GET` over a fresh TCP connection:
//! no connection pool, proxy settings or redirects to get in the way of the
//! one question asked — does this port answer 2xx right now.

use dure_core::{DurationSpec, ReadyCheck, ServerSpec};
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs `spec`'s readiness check once, bounded by `spec.ready.timeout`.
/// `Err` carries a short lowercase reason.
pub async fn probe(spec: &ServerSpec) -> Result<(), String> {
    let timeout = spec.ready.timeout.0;
    let check = match &spec.ready.check {
        ReadyCheck::None => return Ok(()),
        ReadyCheck::Tcp { port } => Check::Tcp(port_number(spec, port)?),
        ReadyCheck::Http { port, path } => Check::Http(port_number(spec, port)?, path),
    };
    match tokio::time::timeout(timeout, check.run()).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {}", DurationSpec(timeout))),
    }
}

enum Check<'a> {
    Tcp(u16),
    Http(u16, &'a str),
}

impl Check<'_> {
    async fn run(self) -> Result<(), String> {
        match self {
            Check::Tcp(port) => connect(port).await.map(drop),
            Check::Http(port, path) => http_get(port, path).await,
        }
    }
}

fn port_number(spec: &ServerSpec, name: &str) -> Result<u16, String> {
    spec.ports
        .get(name)
        .copied()
        .ok_or_else(|| format!("port `{name}` is not defined"))
}

async fn connect(port: u16) -> Result<TcpStream, String> {
    TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| describe(&e))
}

async fn http_get(port: u16, path: &str) -> Result<(), String> {
    let mut stream = connect(port).await?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: dure-agent\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| describe(&e))?;
    let status = read_status(&mut stream).await?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("http {status}"))
    }
}

/// Reads just enough of the answer to get the status code.
async fn read_status(stream: &mut TcpStream) -> Result<u16, String> {
    const MAX_STATUS_LINE: usize = 1024;
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < MAX_STATUS_LINE {
        let n = stream.read(&mut buf).await.map_err(|e| describe(&e))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    parse_status_line(&head).ok_or_else(|| {
        if head.is_empty() {
            "connection closed without an answer".to_string()
        } else {
            "invalid http answer".to_string()
        }
    })
}

/// `HTTP/1.1 204 No Content` → 204.
fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// A short lowercase reason for a network error: "Connection refused (os
/// error 111)" becomes "connection refused".
fn describe(error: &io::Error) -> String {
    let text = error.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "network error".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn spec(check: &str, port: u16, timeout_ms: u64) -> ServerSpec {
        let mut spec: ServerSpec =
            serde_json::from_str(r#"{"name":"s","node":"n","argv":["x"]}"#).unwrap();
        spec.ready.check = check.parse().unwrap();
        spec.ready.timeout = DurationSpec::from_millis(timeout_ms);
        spec.ports.insert("http".into(), port);
        spec
    }

    /// A port with nothing listening on it.
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    /// Answers every connection with `answer`, then closes it.
    async fn answering(answer: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        port
    }

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/1.0 503\r\n"), Some(503));
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 2000 x"), None);
    }

    #[test]
    fn describes_errors_briefly() {
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(describe(&refused), "connection refused");
    }

    #[tokio::test]
    async fn none_is_always_ready() {
        assert_eq!(probe(&spec("none", 1, 100)).await, Ok(()));
    }

    #[tokio::test]
    async fn tcp_and_http_against_a_closed_port_are_refused() {
        let port = closed_port().await;
        assert_eq!(
            probe(&spec("tcp:http", port, 1000)).await,
            Err("connection refused".into())
        );
        assert_eq!(
            probe(&spec("http:/", port, 1000)).await,
            Err("connection refused".into())
        );
    }

    #[tokio::test]
    async fn http_wants_2xx() {
        let ok = answering("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        assert_eq!(probe(&spec("http:/health", ok, 2000)).await, Ok(()));
        assert_eq!(probe(&spec("tcp:http", ok, 2000)).await, Ok(()));
        let unavailable = answering("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        assert_eq!(
            probe(&spec("http:/health", unavailable, 2000)).await,
            Err("http 503".into())
        );
        let garbage = answering("hello\n").await;
        assert_eq!(
            probe(&spec("http:/", garbage, 2000)).await,
            Err("invalid http answer".into())
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let result = probe(&spec("http:/", port, 200)).await;
        assert_eq!(result, Err("timed out after 200ms".into()));
        drop(listener);
    }

    #[tokio::test]
    async fn an_undefined_port_is_named() {
        let mut spec = spec("tcp:admin", 1, 100);
        spec.ports.clear();
        assert_eq!(
            probe(&spec).await,
            Err("port `admin` is not defined".into())
        );
    }
}
