//! The check made before a server is spawned: every port its spec declares
//! must be free, or the process would start, fail to bind, and — worse —
//! its readiness probe could reach whatever holds the port and call it
//! ready.
//!
//! A port is free when it can be bound on the wildcard address (IPv4 and,
//! where the host has it, IPv6): a listener on any address of that port
//! makes the wildcard bind fail, so the server's own bind address (which
//! the spec does not name) does not matter. The socket is bound with
//! `SO_REUSEADDR`, as servers bind theirs, so connections of an earlier run
//! lingering in `TIME_WAIT` do not count as taken. When a port is taken,
//! the holder is looked up in `/proc/net/tcp{,6}` (the listening socket's
//! inode) and `/proc/<pid>/fd` (which process has that socket open); a
//! holder the agent may not inspect (another user's process) is left
//! unnamed.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

/// A declared port that something else already listens on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("port {port} ({name}) is already in use{}", holder.as_ref().map(|h| format!(" by {h}")).unwrap_or_default())]
pub struct PortInUse {
    /// The port's name in the server's spec (`http`).
    pub name: String,
    pub port: u16,
    /// The process holding it, when `/proc` tells.
    pub holder: Option<Holder>,
}

/// A process that holds a port open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// `/proc/<pid>/comm`: the process name, at most 15 bytes.
    pub command: Option<String>,
}

impl fmt::Display for Holder {
    /// `pid 4242 (python3)`, or `pid 4242` when its name is unreadable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if let Some(command) = &self.command {
            write!(f, " ({command})")?;
        }
        Ok(())
    }
}

/// Checks the declared ports `(name, port)` in order and returns the first
/// one that is taken. Blocking: it binds sockets and may read `/proc`.
pub fn check_free<'a>(
    ports: impl IntoIterator<Item = (&'a String, &'a u16)>,
) -> Result<(), PortInUse> {
    for (name, &port) in ports {
        if is_taken(port) {
            return Err(PortInUse {
                name: name.clone(),
                port,
                holder: holder_of(port),
            });
        }
    }
    Ok(())
}

/// Whether binding `port` on a wildcard address fails because it is in
/// use. Other bind errors (no IPv6 on this host, a privileged port) say
/// nothing about the port being taken and are left to the server itself.
fn is_taken(port: u16) -> bool {
    let wildcards = [
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
    ];
    wildcards.into_iter().any(|addr| {
        // `TcpListener::bind` sets SO_REUSEADDR on Unix; the listener is
        // closed again at once.
        matches!(TcpListener::bind(addr), Err(e) if e.kind() == io::ErrorKind::AddrInUse)
    })
}

/// The process with a listening socket on `port`, when `/proc` tells.
pub fn holder_of(port: u16) -> Option<Holder> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .into_iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let pid = process_with_socket(&inodes)?;
    let command = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|name| name.trim_end().to_string());
    Some(Holder { pid, command })
}

/// The TCP socket state `LISTEN` in `/proc/net/tcp`.
const LISTEN: &str = "0A";

/// Inodes of the listening sockets on `port` in the text of a
/// `/proc/net/tcp` or `/proc/net/tcp6` table. Each line after the header
/// is `sl local_address rem_address st … uid timeout inode …`, with
/// `local_address` as `HEXADDR:HEXPORT`.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?;
            let (_, hex_port) = local.rsplit_once(':')?;
            let listens_here = *state == LISTEN && u16::from_str_radix(hex_port, 16).ok()? == port;
            listens_here.then(|| inode.parse().ok()).flatten()
        })
        .filter(|inode| *inode != 0)
        .collect()
}

/// The first process found with one of the sockets `inodes` among its
/// open files. Processes whose `fd` directory cannot be read are skipped.
fn process_with_socket(inodes: &[u64]) -> Option<u32> {
    let wanted: Vec<String> = inodes
        .iter()
        .map(|inode| format!("socket:[{inode}]"))
        .collect();
    let processes = std::fs::read_dir("/proc").ok()?;
    processes
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                return false;
            };
            fds.filter_map(Result::ok).any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4711 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F91 0100007F:D3B2 01 00000000:00000000 00:00000000 00000000  1000        0 4712 1 0000000000000000 20 4 30 10 -1
   2: 00000000:1F92 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4713 1 0000000000000000 100 0 0 10 0
";

    #[test]
    fn finds_only_listening_sockets_of_the_port() {
        assert_eq!(listening_inodes(TABLE, 8081), [4711]);
        assert_eq!(listening_inodes(TABLE, 8082), [4713]);
        assert_eq!(listening_inodes(TABLE, 8083), Vec::<u64>::new());
        assert_eq!(
            listening_inodes("garbage\nmore garbage", 8081),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn a_held_port_is_named_with_its_holder_and_a_free_one_passes() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let held = listener.local_addr().unwrap().port();
        let mut ports = BTreeMap::new();
        ports.insert("http".to_string(), held);
        let error = check_free(&ports).unwrap_err();
        let me = std::process::id();
        assert_eq!((error.name.as_str(), error.port), ("http", held));
        assert_eq!(error.holder.as_ref().map(|h| h.pid), Some(me));
        assert!(
            error.to_string().starts_with(&format!(
                "port {held} (http) is already in use by pid {me} ("
            )),
            "{error}"
        );

        drop(listener);
        assert_eq!(check_free(&ports), Ok(()));
    }

    #[test]
    fn a_port_with_lingering_connections_but_no_listener_is_free() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (server_side, _) = listener.accept().unwrap();
        // The server side closes first, so its end lingers in TIME_WAIT.
        drop(server_side);
        drop(client);
        drop(listener);
        let mut ports = BTreeMap::new();
        ports.insert("http".to_string(), port);
        assert_eq!(check_free(&ports), Ok(()));
    }

    #[test]
    fn a_holder_without_a_readable_name_is_still_told() {
        let holder = Holder {
            pid: 7,
            command: None,
        };
        let error = PortInUse {
            name: "admin".into(),
            port: 9090,
            holder: Some(holder),
        };
        assert_eq!(
            error.to_string(),
            "port 9090 (admin) is already in use by pid 7"
        );
        let unknown = PortInUse {
            holder: None,
            ..error
        };
        assert_eq!(unknown.to_string(), "port 9090 (admin) is already in use");
    }
}
