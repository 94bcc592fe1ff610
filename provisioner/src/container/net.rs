//! Container networking with iproute2's `ip` and `tc`: a host bridge, one veth pair per
//! running container (host side on the bridge, peer moved into the container's network
//! namespace and renamed `eth0`) and the panel's addresses; the port's guards and rate limits
//! are [`crate::hostnet`]'s.
//!
//! Why the commands rather than rtnetlink: each call happens once per start/stop (never on a hot
//! path), iproute2 is on every host, its error messages are what admins already know, and it
//! keeps tokio out of the synchronous lifecycle code; the inside of the namespace is configured
//! by `ct-init` before it pivots away from the host's binaries.

use super::{run, ContainerError};
use std::fs;
use std::process::Command;
use vessel_core::NetworkSpec;

fn ip() -> Command {
    Command::new("ip")
}

/// Several `ip` commands in one process (`ip -batch -`): one fork/exec on the start path.
fn batch(cmds: &str) -> Result<(), ContainerError> {
    use std::io::Write;
    let mut child = ip()
        .args(["-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| ContainerError::Io { what: "ip -batch".into(), source })?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(cmds.as_bytes())
        .map_err(|source| ContainerError::Io { what: "ip -batch".into(), source })?;
    let out = child.wait_with_output().map_err(|source| ContainerError::Io { what: "ip -batch".into(), source })?;
    if !out.status.success() {
        return Err(ContainerError::Command {
            cmd: format!("ip -batch: {}", cmds.trim().replace('\n', "; ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// The interfaces of the network namespace we run in, with (rx, tx) bytes. Read from
/// `/proc/thread-self/net/dev`, which follows the calling thread's namespace (`/proc/self`
/// is the main thread's, and a test may move only its own thread); `/sys/class/net` shows the
/// namespace sysfs was mounted in, which is not ours when the daemon was only moved into a
/// network namespace (`nsenter --net`).
fn interfaces() -> Vec<(String, u64, u64)> {
    let text = fs::read_to_string("/proc/thread-self/net/dev").unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest.split_whitespace().filter_map(|v| v.parse().ok()).collect();
            Some((name.trim().to_string(), *f.first()?, *f.get(8)?))
        })
        .collect()
}

pub fn link_exists(name: &str) -> bool {
    interfaces().iter().any(|(n, _, _)| n == name)
}

/// Creates the bridge if missing and brings it up (idempotent). True if it was created.
pub fn ensure_bridge(bridge: &str) -> Result<bool, ContainerError> {
    let created = !link_exists(bridge);
    if created {
        // Another create may race us to it: "File exists" is success.
        if let Err(e) = run(ip().args(["link", "add", "name", bridge, "type", "bridge"])) {
            if !link_exists(bridge) {
                return Err(e);
            }
        }
    }
    if !is_up(bridge) {
        run(ip().args(["link", "set", bridge, "up"]))?;
    }
    Ok(created)
}

/// Is the link administratively up? (`ip -o link show`: its flags list holds `UP`.)
fn is_up(name: &str) -> bool {
    ip().args(["-o", "link", "show", "dev", name])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .and_then(|out| out.split_once('<').and_then(|(_, r)| r.split_once('>')).map(|(flags, _)| flags.split(',').any(|f| f == "UP")))
        .unwrap_or(false)
}

/// Brings `lo` up in the current network namespace with one ioctl (no `ip` process on the
/// start path of a container without addresses).
fn loopback_up() -> Result<(), ContainerError> {
    // SAFETY: a plain datagram socket used only for the two interface ioctls below, closed
    // by OwnedFd; `ifreq` is zero-initialised and its name is NUL-terminated.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(ContainerError::Io { what: "socket for lo".into(), source: std::io::Error::last_os_error() });
        }
        let _guard = <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(ContainerError::Io { what: "SIOCGIFFLAGS lo".into(), source: std::io::Error::last_os_error() });
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(ContainerError::Io { what: "SIOCSIFFLAGS lo".into(), source: std::io::Error::last_os_error() });
        }
    }
    Ok(())
}

/// Puts the gateways of `net` on the bridge, so the host is the containers' router.
pub fn ensure_gateways(bridge: &str, net: &NetworkSpec) -> Result<(), ContainerError> {
    if let Some(v4) = &net.ipv4 {
        run(ip().args(["addr", "replace", &format!("{}/{}", v4.gateway, v4.prefix_len), "dev", bridge]))?;
    }
    if let Some(v6) = &net.ipv6 {
        run(ip().args(["-6", "addr", "replace", &format!("{}/{}", v6.gateway, v6.prefix_len), "dev", bridge, "nodad"]))?;
    }
    Ok(())
}

/// IPv4 and IPv6 forwarding on, in the calling thread's network namespace (the host's):
/// the containers' traffic is routed through the host. (With IPv6 forwarding on, the host
/// itself no longer takes router advertisements unless its uplink has `accept_ra=2`: a
/// container host's own addresses are configured statically.)
pub fn enable_forwarding() -> Result<(), ContainerError> {
    for f in ["/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"] {
        if fs::read_to_string(f).map(|s| s.trim() == "1").unwrap_or(false) {
            continue;
        }
        fs::write(f, "1").map_err(|source| ContainerError::Io { what: format!("write {f}"), source })?;
    }
    Ok(())
}

/// Creates the pair with the peer already inside the namespace of `pid` with the MAC the
/// host will accept from it, host side on the bridge.
pub fn create_veth(host: &str, peer: &str, pid: u32, bridge: &str, mac: crate::hostnet::MacAddr) -> Result<(), ContainerError> {
    delete_link(host);
    batch(&format!("link add {host} type veth peer name {peer} address {mac} netns {pid}\nlink set {host} master {bridge} up\n"))
}

/// Deletes a link if present (its veth peer goes with it).
pub fn delete_link(name: &str) {
    if link_exists(name) {
        let _ = run(ip().args(["link", "del", name]));
    }
}

/// Interfaces whose master is `bridge` and whose name starts with `prefix` (orphan sweep).
pub fn ports_of(bridge: &str, prefix: &str) -> Vec<String> {
    if !link_exists(bridge) {
        return Vec::new();
    }
    let out = match ip().args(["-o", "link", "show", "master", bridge]).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => return Vec::new(),
    };
    // "12: vz1a2b@if11: <BROADCAST,...> ..."
    out.lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .filter(|n| !n.is_empty() && n.starts_with(prefix))
        .collect()
}

/// The bridge, if nothing is attached to it any more (used by tests and `ct` cleanup).
pub fn remove_bridge_if_unused(bridge: &str) {
    if link_exists(bridge) && ports_of(bridge, "").is_empty() {
        delete_link(bridge);
    }
}

/// (rx, tx) bytes seen by the container, from its host-side veth counters (the host
/// side's tx is what the container received).
pub fn counters(host: &str) -> (u64, u64) {
    interfaces().into_iter().find(|(n, _, _)| n == host).map(|(_, rx, tx)| (tx, rx)).unwrap_or((0, 0))
}

/// Inside the container's namespace (called by `ct-init` before it pivots): name the peer
/// `eth0`, address it and route through the gateway. Rate limits and anti-spoofing are the
/// host's (see [`crate::hostnet`]): root inside may own this namespace and undo anything here.
pub fn configure_inside(peer: &str, net: &NetworkSpec) -> Result<(), ContainerError> {
    loopback_up()?;
    // /sys/class/net still shows the host's namespace here: ask `ip` instead.
    if peer.is_empty() || run(ip().args(["link", "show", "dev", peer])).is_err() {
        return Ok(());
    }
    let mut cmds = format!("link set {peer} name eth0\nlink set eth0 up\n");
    if let Some(v4) = &net.ipv4 {
        cmds += &format!("addr add {}/{} dev eth0\nroute add default via {}\n", v4.address, v4.prefix_len, v4.gateway);
    }
    if let Some(v6) = &net.ipv6 {
        cmds += &format!("addr add {}/{} dev eth0 nodad\nroute add default via {}\n", v6.address, v6.prefix_len, v6.gateway);
    }
    batch(&cmds)
}
