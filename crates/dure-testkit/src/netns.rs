//! Network namespaces for multi-host tests: each namespace stands for a
//! host of its own, plugged into one switch by a veth cable that a test
//! can pull and plug back, or make lossy.
//!
//! A [`TestNet`] with namespaces 1..=N lives in one /26 block of
//! 10.213.0.0/16 (here `B`), one L2 segment:
//!
//! ```text
//!  root namespace           namespace <id>s (the switch)     namespace <id>n1
//!  <id>h0  B+1/26  ═══ veth ═══ <id>p0 ─┐
//!                                        br0 (bridge)
//!                     <id>h1 ─┘ ═══════ veth ═══════════════ eth0  B+2/26
//!                     <id>h2 ─┘ ═══════ veth ═══ namespace <id>n2  eth0  B+3/26
//! ```
//!
//! * The **hub address** is the root namespace's port on the switch, which
//!   nothing cuts: a process of the root namespace listening on it (a
//!   controller) is reached from every namespace whose cable is plugged in.
//! * Namespaces reach each other and the hub through the bridge, switched,
//!   not routed: no namespace forwards, and the root namespace's
//!   forwarding and firewall settings play no part (the bridge is in a
//!   namespace of its own, with no filter rules). Each namespace has only
//!   the block's connected route (no default route), so a process in it
//!   reaches only the test's own addresses, and its own loopback, which no
//!   other namespace shares.
//! * [`TestNet::cut`] sets the switch's port of a namespace's cable down:
//!   the namespace end loses its carrier, packets either way are dropped,
//!   and open connections hang as they would behind a dead switch. The
//!   namespace's addresses and routes stay, so [`TestNet::heal`] only sets
//!   the port up again. [`TestNet::impair`] drops a share of what a
//!   namespace sends (`tc netem`), so every packet between two namespaces,
//!   or a namespace and the hub, crosses one lossy queue.
//!
//! **Names** start with `<id>` = `dt<pid>-<seq>` (hex: the test process id
//! and a per-process counter), so parallel test runs never collide and a
//! leftover of a killed run names its process; every interface name fits
//! the kernel's 15 characters. The block is derived from the same two
//! numbers and moved on while any address or route of the root namespace
//! overlaps it; choosing the id and the block and claiming both (the hub
//! link and its address) happen under a machine-wide lock file
//! (`/run/lock/dure-testnet.lock`).
//!
//! **Clean-up:** dropping a [`TestNet`] deletes every link and namespace it
//! created (also when the test panics, and also after a failed setup).
//! Drop it after every process running inside its namespaces — declare it
//! before the [`crate::Sandbox`] — so no namespace is kept alive by a
//! process. [`leftovers`] lists what is left of a net, for a test to check.

use anyhow::Context as _;
use std::fmt;
use std::fs::File;
use std::future::Future;
use std::io::{Read as _, Seek as _};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The range every test net takes its block from: 10.213.0.0/16.
const RANGE: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 213, 0, 0), 16);
/// Prefix length of one net's block: 64 addresses, 16 links of /30.
const BLOCK_PREFIX: u8 = 26;
/// How many blocks the range holds.
const BLOCKS: u32 = 1 << (BLOCK_PREFIX - RANGE.1);
/// Link 0 is the hub; namespaces use links 1..=15.
pub const MAX_NAMESPACES: usize = 15;
/// The bridge inside the switch namespace.
const BRIDGE: &str = "br0";
/// The kernel's limit on an interface name (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;
/// The interface of a namespace's end of its link.
const NS_IFACE: &str = "eth0";
/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/var/run/netns";
/// How long one `ip` command may take.
const IP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for another test process's allocation to finish.
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a [`TestNet`] could not be built.
#[derive(Debug)]
pub enum NetError {
    /// This machine cannot run namespace tests (not root, no iproute2, no
    /// permission for `ip netns`, no free block): the test should say so
    /// and skip.
    Unavailable(String),
    /// Setting up failed for another reason: the test should fail.
    Failed(anyhow::Error),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Unavailable(reason) => write!(f, "network namespaces unavailable: {reason}"),
            NetError::Failed(error) => write!(f, "cannot set up the test network: {error:#}"),
        }
    }
}

impl std::error::Error for NetError {}

impl From<anyhow::Error> for NetError {
    fn from(error: anyhow::Error) -> Self {
        NetError::Failed(error)
    }
}

/// Namespaces plugged into one switch with the root namespace; see the
/// module docs for the topology. Everything it created is deleted on drop.
#[derive(Debug)]
pub struct TestNet {
    id: String,
    hub: Ipv4Addr,
    /// The switch namespace.
    switch: String,
    namespaces: Vec<Namespace>,
    /// Root namespace ends of the veth pairs created so far (deleting one
    /// deletes its peer), in creation order.
    links: Vec<String>,
    /// Namespaces created so far, in creation order.
    netns: Vec<String>,
}

/// One namespace of a [`TestNet`]: a host with one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    name: String,
    /// The switch's port of its cable.
    link: String,
    addr: Ipv4Addr,
}

impl TestNet {
    /// Builds a net of `count` namespaces (1..=[`MAX_NAMESPACES`]), each
    /// with its link up. [`NetError::Unavailable`] says why this machine
    /// cannot, for the test to print and skip.
    pub fn new(count: usize) -> Result<TestNet, NetError> {
        if count == 0 || count > MAX_NAMESPACES {
            return Err(anyhow::anyhow!(
                "a test net has 1 to {MAX_NAMESPACES} namespaces, not {count}"
            )
            .into());
        }
        // SAFETY: geteuid takes nothing and cannot fail.
        #[allow(unsafe_code)]
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return Err(NetError::Unavailable(format!(
                "not root (euid {euid}); network namespaces and veth links need root"
            )));
        }
        ip(&["-V"])?;
        let lock = MachineLock::acquire()?;
        let (id, block) = allocate()?;
        let hub = block_addr(block, 1);
        let switch = names::switch(&id);
        let mut net = TestNet {
            id,
            hub,
            switch: switch.clone(),
            namespaces: Vec::new(),
            links: Vec::new(),
            netns: Vec::new(),
        };
        // From here on, whatever was created is deleted when `net` drops,
        // also when a later step fails.
        ip(&["netns", "add", &switch])?;
        net.netns.push(switch.clone());
        net.in_switch(&["link", "set", "lo", "up"])?;
        net.in_switch(&["link", "add", BRIDGE, "type", "bridge"])?;
        net.in_switch(&["link", "set", BRIDGE, "up"])?;
        let (hub_link, hub_port) = (names::link(&net.id, 0), names::hub_port(&net.id));
        ip(&[
            "link", "add", &hub_link, "type", "veth", "peer", "name", &hub_port, "netns", &switch,
        ])?;
        net.links.push(hub_link.clone());
        net.plug(&hub_port)?;
        ip(&[
            "addr",
            "add",
            &format!("{hub}/{BLOCK_PREFIX}"),
            "dev",
            &hub_link,
        ])?;
        ip(&["link", "set", &hub_link, "up"])?;
        // The id and the block are claimed: others see the hub link and
        // its address from now on.
        drop(lock);
        for index in 1..=count {
            net.add_namespace(block, index)?;
        }
        Ok(net)
    }

    /// Runs `ip ARGS` inside the switch namespace.
    fn in_switch(&self, args: &[&str]) -> Result<String, NetError> {
        let mut all = vec!["-n", self.switch.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Plugs the switch's end of a cable into the bridge and sets it up.
    fn plug(&self, port: &str) -> Result<(), NetError> {
        self.in_switch(&["link", "set", port, "master", BRIDGE])?;
        self.in_switch(&["link", "set", port, "up"])?;
        Ok(())
    }

    fn add_namespace(&mut self, block: u32, index: usize) -> Result<(), NetError> {
        let name = names::namespace(&self.id, index);
        let link = names::link(&self.id, index);
        let addr = namespace_addr(block, index);
        ip(&["netns", "add", &name])?;
        self.netns.push(name.clone());
        // The pair is made inside the switch, its other end moved to the
        // namespace: deleting the namespace deletes the pair.
        self.in_switch(&[
            "link", "add", &link, "type", "veth", "peer", "name", NS_IFACE, "netns", &name,
        ])?;
        self.plug(&link)?;
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", name.as_str()];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["link", "set", "lo", "up"])?;
        inside(&[
            "addr",
            "add",
            &format!("{addr}/{BLOCK_PREFIX}"),
            "dev",
            NS_IFACE,
        ])?;
        inside(&["link", "set", NS_IFACE, "up"])?;
        self.namespaces.push(Namespace { name, link, addr });
        Ok(())
    }

    /// The prefix of every name this net created (`dt<pid>-<seq>`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The root namespace's address that every namespace reaches and no
    /// cut takes away: where a controller listens.
    pub fn hub_addr(&self) -> Ipv4Addr {
        self.hub
    }

    /// The namespaces, in creation order.
    pub fn namespaces(&self) -> &[Namespace] {
        &self.namespaces
    }

    /// Cuts a namespace's link (the switch's port goes down): nothing
    /// passes either way until [`TestNet::heal`].
    pub fn cut(&self, ns: &Namespace) -> anyhow::Result<()> {
        self.set_link(ns, "down")
    }

    /// Heals a link cut by [`TestNet::cut`].
    pub fn heal(&self, ns: &Namespace) -> anyhow::Result<()> {
        self.set_link(ns, "up")
    }

    fn set_link(&self, ns: &Namespace, state: &str) -> anyhow::Result<()> {
        self.check_member(ns).map_err(|e| anyhow::anyhow!("{e}"))?;
        self.in_switch(&["link", "set", &ns.link, state])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    }

    /// Drops `loss_percent` (0 to 100) of the packets `ns` sends on its
    /// link, each at random (the `statistic` match of `iptables` inside the
    /// namespace: it needs no qdisc module, which not every kernel has); 0
    /// takes the loss away. [`NetError::Unavailable`] when `iptables` is
    /// not installed.
    pub fn impair(&self, ns: &Namespace, loss_percent: f64) -> Result<(), NetError> {
        self.check_member(ns)?;
        if !(0.0..=100.0).contains(&loss_percent) {
            return Err(anyhow::anyhow!("a loss is 0 to 100 percent, not {loss_percent}").into());
        }
        let iptables = |args: &[&str]| {
            let mut all = vec!["netns", "exec", ns.name.as_str(), "iptables", "-w", "5"];
            all.extend_from_slice(args);
            tool("ip", &all).map_err(|e| match e {
                // `ip netns exec` says so when it cannot run the program.
                NetError::Failed(error) if error.to_string().contains("No such file") => {
                    NetError::Unavailable("iptables is not installed".into())
                }
                other => other,
            })
        };
        iptables(&["-F", "OUTPUT"])?;
        if loss_percent > 0.0 {
            let probability = format!("{:.4}", loss_percent / 100.0);
            iptables(&[
                "-A",
                "OUTPUT",
                "-o",
                NS_IFACE,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &probability,
                "-j",
                "DROP",
            ])?;
        }
        Ok(())
    }

    fn check_member(&self, ns: &Namespace) -> Result<(), NetError> {
        if !self.namespaces.contains(ns) {
            return Err(anyhow::anyhow!(
                "namespace `{}` is not part of test net `{}`",
                ns.name,
                self.id
            )
            .into());
        }
        Ok(())
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Links first (a veth pair goes with either end), then the
        // namespaces, newest first.
        for link in self.links.iter().rev() {
            if let Err(error) = ip(&["link", "del", link]) {
                eprintln!("test net `{}`: cannot delete link {link}: {error}", self.id);
            }
        }
        for name in self.netns.iter().rev() {
            if let Err(error) = ip(&["netns", "del", name]) {
                eprintln!(
                    "test net `{}`: cannot delete namespace {name}: {error}",
                    self.id
                );
            }
        }
    }
}

impl Namespace {
    /// The namespace's name (`ip netns`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's address on its link.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The switch's port of the namespace's link (what [`TestNet::cut`]
    /// sets down).
    pub fn link(&self) -> &str {
        &self.link
    }

    /// The program and arguments that run `bin args…` inside this
    /// namespace (`ip netns exec`, which execs `bin` in place: the process
    /// keeps the pid it was spawned with, and its environment).
    pub fn command(&self, bin: &Path, args: &[impl AsRef<str>]) -> (PathBuf, Vec<String>) {
        let mut argv = vec![
            "netns".to_string(),
            "exec".to_string(),
            self.name.clone(),
            bin.to_string_lossy().into_owned(),
        ];
        argv.extend(args.iter().map(|a| a.as_ref().to_string()));
        (PathBuf::from("ip"), argv)
    }

    /// Runs `f` on a thread of its own that has entered this namespace, on
    /// a runtime of that thread: every socket it opens is the namespace's.
    /// That is how a test reaches a process inside while the link is cut
    /// (or the namespace's loopback, at any time). A caller that stops
    /// waiting leaves the thread to finish `f` by itself.
    pub async fn run<T, F, Fut>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let path = Path::new(NETNS_DIR).join(&self.name);
        let file = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("netns {}", self.name))
            .spawn(move || {
                let result = enter_netns(&file).and_then(|()| {
                    drop(file);
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    Ok(runtime.block_on(f()))
                });
                let _ = tx.send(result);
            })?;
        rx.await
            .context("the thread inside the namespace ended without an answer")?
    }
}

/// Moves the calling thread (only it) into the network namespace `file`.
#[allow(unsafe_code)]
fn enter_netns(file: &File) -> anyhow::Result<()> {
    // SAFETY: setns takes a file descriptor that `file` keeps open for the
    // whole call and a flag; it changes only this thread's namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        anyhow::bail!(
            "cannot enter the network namespace: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// What is left of the net whose id is `id`: links in the root namespace
/// and namespaces whose names are its.
pub fn leftovers(id: &str) -> anyhow::Result<Vec<String>> {
    let links = ip(&["-o", "link", "show"]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let netns = ip(&["netns", "list"]).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(parse::link_names(&links)
        .into_iter()
        .chain(parse::netns_names(&netns))
        .filter(|name| names::belongs(name, id))
        .collect())
}

/// Chooses an id no link or namespace of this machine uses and a block no
/// address or route of the root namespace overlaps. Call under the lock.
fn allocate() -> Result<(String, u32), NetError> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let pid = std::process::id();
    let links = ip(&["-o", "link", "show"])?;
    let netns = ip(&["netns", "list"])?;
    let taken_names: Vec<String> = parse::link_names(&links)
        .into_iter()
        .chain(parse::netns_names(&netns))
        .collect();
    let mut chosen = None;
    for _ in 0..names::SEQ_LIMIT {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed) % names::SEQ_LIMIT;
        let id = names::id(pid, seq);
        if names::link(&id, MAX_NAMESPACES).len() > IFNAME_MAX {
            return Err(NetError::Failed(anyhow::anyhow!(
                "test net name `{id}` leaves no room for interface names of {IFNAME_MAX} characters"
            )));
        }
        if !taken_names.iter().any(|n| names::belongs(n, &id)) {
            chosen = Some((id, seq));
            break;
        }
    }
    let Some((id, seq)) = chosen else {
        return Err(NetError::Failed(anyhow::anyhow!(
            "every test net name of process {pid} is in use"
        )));
    };
    let addrs = ip(&["-o", "-4", "addr", "show"])?;
    let routes = ip(&["-4", "route", "show", "table", "all"])?;
    let taken: Vec<(Ipv4Addr, u8)> = parse::addr_cidrs(&addrs)
        .into_iter()
        .chain(parse::route_cidrs(&routes))
        .collect();
    let block = free_block(derived_block(pid, seq), &taken).ok_or_else(|| {
        NetError::Unavailable(format!(
            "no /{BLOCK_PREFIX} of {}/{} is free of this machine's addresses and routes",
            RANGE.0, RANGE.1
        ))
    })?;
    Ok((id, block))
}

/// The first block from `start` on (wrapping) that no CIDR in `taken`
/// overlaps.
fn free_block(start: u32, taken: &[(Ipv4Addr, u8)]) -> Option<u32> {
    (0..BLOCKS).map(|i| (start + i) % BLOCKS).find(|block| {
        let own = (block_addr(*block, 0), BLOCK_PREFIX);
        !taken.iter().any(|cidr| overlaps(own, *cidr))
    })
}

/// The block a run starts looking from: its pid and counter spread over
/// the range by a multiplicative hash.
fn derived_block(pid: u32, seq: u32) -> u32 {
    (pid ^ seq.rotate_left(16)).wrapping_mul(0x9E37_79B1) >> (32 - (BLOCK_PREFIX - RANGE.1))
}

/// Address `offset` of `block`.
fn block_addr(block: u32, offset: u32) -> Ipv4Addr {
    debug_assert!(block < BLOCKS && offset < 1 << (32 - BLOCK_PREFIX));
    Ipv4Addr::from(u32::from(RANGE.0) + (block << (32 - BLOCK_PREFIX)) + offset)
}

/// The address of namespace `index` (1..=[`MAX_NAMESPACES`]): the ones
/// after the hub's.
fn namespace_addr(block: u32, index: usize) -> Ipv4Addr {
    block_addr(block, 1 + u32::try_from(index).unwrap_or(u32::MAX))
}

/// Whether two CIDRs share an address.
fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let shorter = a.1.min(b.1);
    let mask = u32::MAX.checked_shl(32 - u32::from(shorter)).unwrap_or(0);
    u32::from(a.0) & mask == u32::from(b.0) & mask
}

/// The names of a net's links and namespaces.
mod names {
    /// Per-process counter values: four hex digits.
    pub(super) const SEQ_LIMIT: u32 = 0x1_0000;

    /// `dt<pid>-<seq>` in hex: at most 2 + 6 + 1 + 4 = 13 characters
    /// (pids are below 2^22).
    pub(super) fn id(pid: u32, seq: u32) -> String {
        format!("dt{pid:x}-{seq:x}")
    }

    /// The root end of link `index` (0 is the hub).
    pub(super) fn link(id: &str, index: usize) -> String {
        format!("{id}h{index:x}")
    }

    /// The switch's port of the hub link.
    pub(super) fn hub_port(id: &str) -> String {
        format!("{id}p0")
    }

    /// The switch namespace.
    pub(super) fn switch(id: &str) -> String {
        format!("{id}s")
    }

    pub(super) fn namespace(id: &str, index: usize) -> String {
        format!("{id}n{index:x}")
    }

    /// Whether `name` is one of the net `id`'s: the id followed by a role
    /// letter (never a hex digit, so `dt1-1` does not claim `dt1-1a…`).
    pub(super) fn belongs(name: &str, id: &str) -> bool {
        name.strip_prefix(id)
            .and_then(|rest| rest.chars().next())
            .is_some_and(|c| c.is_ascii_alphabetic() && !c.is_ascii_hexdigit())
    }
}

/// Reading `ip` output.
mod parse {
    use std::net::Ipv4Addr;

    /// Interface names of `ip -o link show` (without `@peer`).
    pub(super) fn link_names(output: &str) -> Vec<String> {
        output
            .lines()
            .filter_map(|line| {
                let name = line.split(": ").nth(1)?;
                Some(name.split('@').next()?.trim().to_string())
            })
            .filter(|name| !name.is_empty())
            .collect()
    }

    /// Namespace names of `ip netns list` (`name (id: 3)` or `name`).
    pub(super) fn netns_names(output: &str) -> Vec<String> {
        output
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_string)
            .collect()
    }

    /// The CIDRs of `ip -o -4 addr show` (`… inet 10.0.0.1/24 …`).
    pub(super) fn addr_cidrs(output: &str) -> Vec<(Ipv4Addr, u8)> {
        output
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                words.find(|w| *w == "inet")?;
                cidr(words.next()?)
            })
            .collect()
    }

    /// The destinations of `ip -4 route show table all`, but the default
    /// route: the first word, or the second after a route type.
    pub(super) fn route_cidrs(output: &str) -> Vec<(Ipv4Addr, u8)> {
        const TYPES: [&str; 10] = [
            "unicast",
            "local",
            "broadcast",
            "multicast",
            "anycast",
            "unreachable",
            "prohibit",
            "blackhole",
            "throw",
            "nat",
        ];
        output
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let first = words.next()?;
                let dest = if TYPES.contains(&first) {
                    words.next()?
                } else {
                    first
                };
                cidr(dest)
            })
            .collect()
    }

    /// `a.b.c.d/len` or `a.b.c.d` (a /32).
    fn cidr(text: &str) -> Option<(Ipv4Addr, u8)> {
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, len.parse().ok().filter(|l| *l <= 32)?),
            None => (text, 32),
        };
        Some((addr.parse().ok()?, len))
    }
}

/// Runs `ip ARGS`, bounded by [`IP_TIMEOUT`]; returns its stdout. A
/// failure for want of permission or support is [`NetError::Unavailable`].
fn ip(args: &[&str]) -> Result<String, NetError> {
    tool("ip", args)
}

/// Runs `program ARGS` as [`ip`] does.
fn tool(program: &str, args: &[&str]) -> Result<String, NetError> {
    let shown = format!("{program} {}", args.join(" "));
    let failed = |e: std::io::Error| NetError::Failed(anyhow::anyhow!("`{shown}`: {e}"));
    // Output goes to files: a pipe nobody reads while waiting could fill.
    let mut out = tempfile::tempfile().map_err(failed)?;
    let mut err = tempfile::tempfile().map_err(failed)?;
    let spawned = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().map_err(failed)?)
        .stderr(err.try_clone().map_err(failed)?)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NetError::Unavailable(format!(
                "`{program}` is not installed (not on PATH)"
            )))
        }
        Err(e) => return Err(failed(e)),
    };
    let deadline = Instant::now() + IP_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(failed)? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(NetError::Failed(anyhow::anyhow!(
                "`{shown}` did not finish within {IP_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let read = |file: &mut File| {
        let mut text = String::new();
        file.rewind()
            .and_then(|()| file.read_to_string(&mut text))
            .map(|_| text)
    };
    let stdout = read(&mut out).map_err(failed)?;
    if status.success() {
        return Ok(stdout);
    }
    let stderr = read(&mut err).unwrap_or_default();
    let message = format!("`{shown}` failed ({status}): {}", stderr.trim());
    if [
        "Operation not permitted",
        "Permission denied",
        "Unknown device type",
    ]
    .iter()
    .any(|s| stderr.contains(s))
    {
        Err(NetError::Unavailable(message))
    } else {
        Err(NetError::Failed(anyhow::anyhow!(message)))
    }
}

/// An exclusive lock on a file shared by every test process on the
/// machine, held while a net chooses and claims its names and block.
struct MachineLock {
    _file: File,
}

impl MachineLock {
    fn acquire() -> Result<MachineLock, NetError> {
        let dir = Path::new("/run/lock");
        let dir = if dir.is_dir() {
            dir.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let path = dir.join("dure-testnet.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let deadline = Instant::now() + LOCK_TIMEOUT;
        loop {
            // SAFETY: flock takes a descriptor `file` keeps open and flags.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                // Released when the file is closed.
                return Ok(MachineLock { _file: file });
            }
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(anyhow::anyhow!("cannot lock {}: {error}", path.display()).into());
            }
            if Instant::now() >= deadline {
                return Err(anyhow::anyhow!(
                    "{} stayed locked for {LOCK_TIMEOUT:?}",
                    path.display()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernel_limit_and_name_their_process() {
        // The largest pid the kernel hands out (pid_max is at most 2^22).
        let id = names::id((1 << 22) - 1, names::SEQ_LIMIT - 1);
        assert_eq!(id, "dt3fffff-ffff");
        for index in 0..=MAX_NAMESPACES {
            let link = names::link(&id, index);
            assert!(link.len() <= IFNAME_MAX, "{link}");
            assert!(names::belongs(&link, &id), "{link}");
        }
        assert!(names::hub_port(&id).len() <= IFNAME_MAX);
        assert!(names::belongs(&names::hub_port(&id), &id));
        assert!(names::belongs(&names::switch(&id), &id));
        assert!(names::belongs(&names::namespace(&id, 15), &id));
        assert_eq!(names::id(0x5a01, 2), "dt5a01-2");
        assert_eq!(names::link("dt5a01-2", 1), "dt5a01-2h1");
        assert_eq!(names::namespace("dt5a01-2", 12), "dt5a01-2nc");
    }

    #[test]
    fn names_of_different_runs_never_collide() {
        // Without the separator, pid 0x1a seq 2 and pid 0x1 seq 0xa2 would
        // both be `dt1a2`; without role letters, seq 1 would claim seq 0x1a.
        let a = names::id(0x1a, 2);
        let b = names::id(0x1, 0xa2);
        assert_ne!(a, b);
        assert!(!names::belongs(&names::link(&b, 1), &a));
        let short = names::id(7, 1);
        let long = names::id(7, 0x1a);
        assert!(!names::belongs(&names::link(&long, 1), &short));
        assert!(!names::belongs("eth0", &short));
        assert!(!names::belongs(&short, &short), "the bare id is no name");
    }

    #[test]
    fn addresses_stay_in_the_range_and_hosts_do_not_overlap() {
        let range = (Ipv4Addr::new(10, 213, 0, 0), 16);
        for block in [0, 1, 517, BLOCKS - 1] {
            let own = (block_addr(block, 0), BLOCK_PREFIX);
            assert!(overlaps(own, range) && own.0.octets()[..2] == [10, 213]);
            let hub = block_addr(block, 1);
            let mut seen = vec![hub];
            for index in 1..=MAX_NAMESPACES {
                let addr = namespace_addr(block, index);
                assert!(overlaps((addr, 32), own));
                assert!(!seen.contains(&addr));
                // Neither the block's network nor its broadcast address.
                assert_ne!(addr, block_addr(block, 0));
                assert_ne!(addr, block_addr(block, 63));
                seen.push(addr);
            }
        }
        assert_eq!(block_addr(0, 1), Ipv4Addr::new(10, 213, 0, 1));
        assert_eq!(namespace_addr(5, 2), Ipv4Addr::new(10, 213, 1, 67));
        assert_eq!(block_addr(BLOCKS - 1, 63), Ipv4Addr::new(10, 213, 255, 255));
    }

    #[test]
    fn blocks_are_derived_per_run_and_skip_what_the_machine_uses() {
        let derived: Vec<u32> = (0..64).map(|seq| derived_block(4242, seq)).collect();
        assert!(derived.iter().all(|b| *b < BLOCKS));
        assert_ne!(derived_block(4242, 0), derived_block(4243, 0));
        assert_ne!(derived[0], derived[1]);
        let start = derived[0];
        assert_eq!(free_block(start, &[]), Some(start));
        let used = (block_addr(start, 9), 30);
        assert_eq!(free_block(start, &[used]), Some((start + 1) % BLOCKS));
        let default_route_aside = (Ipv4Addr::new(192, 0, 2, 0), 24);
        assert_eq!(free_block(start, &[default_route_aside]), Some(start));
        assert_eq!(free_block(start, &[(Ipv4Addr::new(10, 0, 0, 0), 8)]), None);
    }

    #[test]
    fn overlap_of_cidrs() {
        let net = |a: [u8; 4], len| (Ipv4Addr::from(a), len);
        assert!(overlaps(net([10, 213, 0, 0], 16), net([10, 213, 4, 5], 32)));
        assert!(overlaps(net([10, 0, 0, 0], 8), net([10, 213, 4, 0], 26)));
        assert!(!overlaps(
            net([10, 213, 0, 0], 26),
            net([10, 213, 0, 64], 26)
        ));
        assert!(overlaps(net([0, 0, 0, 0], 0), net([10, 213, 0, 64], 26)));
    }

    #[test]
    fn reads_ip_output() {
        let links = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue\\    link/loopback\n\
                     7: dt5a01-0h1@if2: <BROADCAST,MULTICAST,UP> mtu 1500\\    link/ether\n";
        assert_eq!(parse::link_names(links), ["lo", "dt5a01-0h1"]);
        assert_eq!(
            parse::netns_names("dt5a01-0n2 (id: 1)\ndt5a01-0n1\n"),
            ["dt5a01-0n2", "dt5a01-0n1"]
        );
        let addrs = "2: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever\n";
        assert_eq!(
            parse::addr_cidrs(addrs),
            [(Ipv4Addr::new(192, 0, 2, 2), 24)]
        );
        let routes = "default via 192.0.2.1 dev eth0\n\
                      192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2\n\
                      local 10.213.4.1 dev dt1-0h0 table local proto kernel scope host\n\
                      broadcast 127.255.255.255 dev lo table local\n";
        assert_eq!(
            parse::route_cidrs(routes),
            [
                (Ipv4Addr::new(192, 0, 2, 0), 24),
                (Ipv4Addr::new(10, 213, 4, 1), 32),
                (Ipv4Addr::new(127, 255, 255, 255), 32)
            ]
        );
    }

    /// A net of one namespace, or `None` (said on stderr) where this
    /// machine cannot build one.
    fn net_or_skip() -> Option<TestNet> {
        match TestNet::new(1) {
            Ok(net) => Some(net),
            Err(NetError::Unavailable(reason)) => {
                eprintln!("skipping: {reason}");
                None
            }
            Err(error) => panic!("{error}"),
        }
    }

    #[test]
    fn a_net_is_deleted_when_dropped_also_by_a_panic() {
        let mut id = None;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let Some(net) = net_or_skip() else { return };
            id = Some(net.id().to_string());
            let made = leftovers(net.id()).unwrap();
            // The hub link, the switch and the namespace.
            assert_eq!(made.len(), 3, "{made:?}");
            panic!("a test fails with the net up");
        }));
        let Some(id) = id else { return };
        assert!(result.is_err());
        assert_eq!(leftovers(&id).unwrap(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_cut_link_passes_nothing_until_healed() {
        let Some(net) = net_or_skip() else { return };
        let ns = net.namespaces()[0].clone();
        let listener = tokio::net::TcpListener::bind((net.hub_addr(), 0))
            .await
            .unwrap();
        let hub = listener.local_addr().unwrap();
        tokio::spawn(async move { while listener.accept().await.is_ok() {} });
        let connects = |ns: Namespace| async move {
            ns.run(move || async move {
                let connect = tokio::net::TcpStream::connect(hub);
                matches!(
                    tokio::time::timeout(Duration::from_secs(1), connect).await,
                    Ok(Ok(_))
                )
            })
            .await
            .unwrap()
        };
        assert!(connects(ns.clone()).await, "the hub is reached");
        // Nothing but the test's own block is routed from a namespace.
        let outside = ns
            .run(|| async { tokio::net::TcpStream::connect("10.214.0.1:9").await })
            .await
            .unwrap();
        assert_eq!(
            outside.map(|_| ()).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::NetworkUnreachable)
        );
        net.cut(&ns).unwrap();
        assert!(!connects(ns.clone()).await, "a cut link passes nothing");
        net.heal(&ns).unwrap();
        crate::eventually("the hub reached again", Duration::from_secs(10), || {
            let ns = ns.clone();
            async move { connects(ns).await.then_some(()) }
        })
        .await
        .unwrap();
    }

    /// Whether a TCP connect from inside `from` to `to` succeeds within 1 s.
    async fn reaches(from: &Namespace, to: std::net::SocketAddr) -> bool {
        from.run(move || async move {
            let connect = tokio::net::TcpStream::connect(to);
            matches!(
                tokio::time::timeout(Duration::from_secs(1), connect).await,
                Ok(Ok(_))
            )
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn namespaces_reach_each_other_a_cut_isolates_one_and_a_loss_drops() {
        let net = match TestNet::new(3) {
            Ok(net) => net,
            Err(NetError::Unavailable(reason)) => {
                eprintln!("skipping: {reason}");
                return;
            }
            Err(error) => panic!("{error}"),
        };
        let [a, b, c] = [0, 1, 2].map(|i| net.namespaces()[i].clone());
        // A listener inside `b`, on its own address.
        let addr = b.addr();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let inside_b = b.clone();
        let listening = async move {
            inside_b
                .run(move || async move {
                    let listener = tokio::net::TcpListener::bind((addr, 0)).await.unwrap();
                    tx.send(listener.local_addr().unwrap()).unwrap();
                    let serve = async { while listener.accept().await.is_ok() {} };
                    // Bounded: the thread ends with the test at the latest.
                    let _ = tokio::time::timeout(Duration::from_secs(60), serve).await;
                })
                .await
        };
        let listening = tokio::spawn(listening);
        let on_b = rx.await.unwrap();
        assert!(reaches(&a, on_b).await, "a reaches b through the switch");
        assert!(reaches(&c, on_b).await, "c reaches b through the switch");
        net.cut(&a).unwrap();
        assert!(!reaches(&a, on_b).await, "a cut namespace reaches nobody");
        assert!(reaches(&c, on_b).await, "the others still reach each other");
        net.heal(&a).unwrap();
        match net.impair(&c, 100.0) {
            Ok(()) => {
                assert!(!reaches(&c, on_b).await, "all of c's packets are dropped");
                net.impair(&c, 0.0).unwrap();
            }
            Err(NetError::Unavailable(reason)) => eprintln!("loss not tried: {reason}"),
            Err(error) => panic!("{error}"),
        }
        for ns in [&a, &c] {
            crate::eventually("b reached again", Duration::from_secs(10), || async {
                reaches(ns, on_b).await.then_some(())
            })
            .await
            .unwrap();
        }
        assert!(net.impair(&c, 101.0).is_err());
        listening.abort();
    }

    #[test]
    fn runs_a_command_inside_a_namespace_by_ip_netns_exec() {
        let ns = Namespace {
            name: "dt1-0n1".into(),
            link: "dt1-0h1".into(),
            addr: Ipv4Addr::new(10, 213, 0, 2),
        };
        let (program, args) = ns.command(Path::new("/bin/dure"), &["agent", "--node", "n1"]);
        assert_eq!(program, Path::new("ip"));
        assert_eq!(
            args,
            [
                "netns",
                "exec",
                "dt1-0n1",
                "/bin/dure",
                "agent",
                "--node",
                "n1"
            ]
        );
    }
}
