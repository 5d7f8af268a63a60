//! `dure demo-app`: a tiny HTTP/1.1 server for demos and tests. `/` answers
//! its name, `/health` answers `ok`, `/slow?ms=N` answers its name after N
//! milliseconds (any method; a request that takes a while, for tests of
//! draining); SIGTERM or SIGINT closes it gracefully with exit code 0:
//! requests in flight finish. No framework: it must start in milliseconds and never
//! be the interesting part of a demo.

use crate::cli::DemoAppArgs;
use crate::signal::Shutdown;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The largest request head read; anything longer is refused.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests in flight may take to finish after a stop signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `/slow` waits, and the largest request body it reads.
const MAX_SLOW: Duration = Duration::from_secs(30);
const MAX_BODY: usize = 64 * 1024;

/// Prints a line to stdout, ignoring a closed stdout: the app must keep
/// serving even when nobody reads its log.
fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

pub async fn run(args: DemoAppArgs) -> anyhow::Result<()> {
    let mut shutdown = Shutdown::install()?;
    let addr = SocketAddr::new(args.bind, args.port);
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "port {} on {} is already in use: stop what listens there or choose another --port",
                args.port,
                args.bind
            )
        } else {
            anyhow::anyhow!("cannot listen on {addr}: {e}")
        }
    })?;
    let local = listener.local_addr()?;
    let name = args.name;
    say(&format!(
        "{name} listening on http://{local} (pid {})",
        std::process::id()
    ));
    let mut connections = JoinSet::new();
    let signal = loop {
        tokio::select! {
            signal = shutdown.wait() => break signal,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, name.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of
                    // spinning on the same error.
                    say(&format!("{name} accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    };
    say(&format!("{name} got {signal}; closing"));
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    say(&format!("{name} stopped"));
    Ok(())
}

/// Answers one request on `stream`, then closes it.
async fn serve(mut stream: TcpStream, name: String) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            head.extend_from_slice(&buf[..n]);
            if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() > MAX_HEAD {
                return Ok(true);
            }
        }
    })
    .await;
    if !matches!(read, Ok(Ok(true))) {
        return;
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    if let Some(delay) = slow_delay(&text) {
        // The body is read whole first: closing with unread bytes would
        // reset the connection instead of answering.
        let end = text.find("\r\n\r\n").map_or(head.len(), |at| at + 4);
        let mut unread = content_length(&text)
            .min(MAX_BODY)
            .saturating_sub(head.len() - end);
        while unread > 0 {
            match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => unread = unread.saturating_sub(n),
                _ => return,
            }
        }
        tokio::time::sleep(delay).await;
    }
    let response = respond(&text, &name, std::process::id());
    let _ = stream.write_all(&response).await;
    let _ = stream.shutdown().await;
}

/// How long `/slow?ms=N` waits before answering (at most [`MAX_SLOW`]);
/// `None` for any other request.
fn slow_delay(head: &str) -> Option<Duration> {
    let target = head.lines().next()?.split_whitespace().nth(1)?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    (path == "/slow").then(|| {
        let ms = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("ms="))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        Duration::from_millis(ms).min(MAX_SLOW)
    })
}

/// The request's `Content-Length`, 0 when it gives none.
fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Returns the full HTTP response to a request head.
pub fn respond(head: &str, name: &str, pid: u32) -> Vec<u8> {
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let (status, body) = if head.len() > MAX_HEAD {
        (
            "431 Request Header Fields Too Large",
            "request head too large\n".to_string(),
        )
    } else if path == "/slow" {
        ("200 OK", format!("{name}\n"))
    } else if method != "GET" && method != "HEAD" {
        (
            "405 Method Not Allowed",
            "only GET and HEAD are served\n".to_string(),
        )
    } else {
        match path {
            "/" => ("200 OK", format!("{name}\n")),
            "/health" => ("200 OK", "ok\n".to_string()),
            _ => ("404 Not Found", "not found\n".to_string()),
        }
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nx-demo-name: {name}\r\nx-demo-pid: {pid}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(head: &str) -> String {
        String::from_utf8(respond(head, "demo-1", 7)).unwrap()
    }

    #[test]
    fn routes() {
        let root = text("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(root.starts_with("HTTP/1.1 200 OK\r\n"), "{root}");
        assert!(root.ends_with("\r\n\r\ndemo-1\n"), "{root}");
        assert!(root.contains("content-length: 7\r\n"), "{root}");
        assert!(root.contains("x-demo-pid: 7\r\n"), "{root}");
        let health = text("GET /health?probe=1 HTTP/1.1\r\n\r\n");
        assert!(health.starts_with("HTTP/1.1 200 OK") && health.ends_with("\r\n\r\nok\n"));
        assert!(text("GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
        assert!(text("POST / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
        let head = text("HEAD / HTTP/1.1\r\n\r\n");
        assert!(
            head.ends_with("\r\n\r\n") && head.contains("content-length: 7"),
            "{head}"
        );
        assert!(text("garbage").starts_with("HTTP/1.1 405 "));
        let slow = text("POST /slow?ms=20 HTTP/1.1\r\nContent-Length: 3\r\n\r\n");
        assert!(slow.ends_with("\r\n\r\ndemo-1\n"), "{slow}");
    }

    #[test]
    fn slow_requests_say_how_long_and_how_much_body() {
        let head = "POST /slow?a=1&ms=250 HTTP/1.1\r\ncontent-length: 12\r\n\r\n";
        assert_eq!(slow_delay(head), Some(Duration::from_millis(250)));
        assert_eq!(content_length(head), 12);
        assert_eq!(
            slow_delay("GET /slow HTTP/1.1\r\n\r\n"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            slow_delay("GET /slow?ms=999999999 HTTP/1.1\r\n\r\n"),
            Some(MAX_SLOW)
        );
        assert_eq!(slow_delay("GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(content_length("GET / HTTP/1.1\r\n\r\n"), 0);
    }
}
