//! Host-side protections of one tenant network port (a container's host-side veth, a KVM
//! machine's TAP): the only place a tenant cannot undo them, since root inside a container
//! owns its network namespace (and a VM its whole kernel).
//!
//! * **Anti-spoofing** (nftables, `bridge` family, a `prerouting` chain for the port, so it
//!   runs before the bridge learns a MAC or the host's neighbour table sees an ARP): frames
//!   from the guest leave only with the assigned MAC as source; IPv4 only from the assigned
//!   address; ARP only with the assigned MAC and address as sender; IPv6 only from the
//!   assigned address or the MAC's EUI-64 link-local one (`::` only for DAD and MLD);
//!   neighbour advertisements only for those addresses; no router advertisements or
//!   redirects; every other EtherType dropped. The port must be a bridge port. (Not the
//!   `netdev` ingress hook: packets the IFB below hands back skip it.) Each port's chain sees
//!   every bridged frame and returns at once for other ports' frames: one comparison per
//!   port per frame, cheap at a host's scale of a few hundred ports.
//! * **Rate limits**: host→guest by a `tbf` qdisc at the root of the port; guest→host by
//!   the same shaper on an IFB device the port's ingress is redirected to (`u32` match-all +
//!   `mirred`), named [`ifb_name`]. A shaper rather than a policer: the kernel here has no
//!   `act_police`, and nftables' byte `limit` lets a full second of the rate through at once.
//!   Both sit on the host side, so `PACKET_QDISC_BYPASS` or deleting qdiscs inside changes
//!   nothing. (The IFB hands packets back to the port's ingress, so the guard still sees them.)
//!
//! * **The customer's firewall** ([`firewall`]): inbound rules on frames leaving through the
//!   port, in a table of its own so a change to it touches nothing else.
//!
//! One nftables table per port, `bridge vessel_<ifname>`, replaced atomically (`nft -f`), so
//! applying twice is the same as once and a rate change is one call.

pub mod firewall;

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum HostNetError {
    #[error("{cmd} failed ({status}): {stderr}")]
    Command { cmd: String, status: String, stderr: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("bad network {0:?}")]
    BadNetwork(String),
    #[error("bad interface name {0:?}")]
    BadName(String),
}

/// An Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A stable, locally administered unicast MAC for an instance (02:xx from its id), so the
    /// host knows the guest's MAC without storing it and it survives restarts.
    pub fn for_instance(id: &vessel_core::InstanceId) -> Self {
        let b = id.0.as_bytes();
        MacAddr([0x02, b[0], b[1], b[2], b[3], b[4]])
    }

    /// The EUI-64 link-local IPv6 address the guest's kernel derives from this MAC.
    pub fn link_local(&self) -> Ipv6Addr {
        let m = self.0;
        Ipv6Addr::from([0xfe, 0x80, 0, 0, 0, 0, 0, 0, m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

/// One tenant port as the host sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// Host-side interface (veth end on the bridge, or TAP).
    pub ifname: String,
    /// The guest's MAC (the only source MAC accepted from it).
    pub mac: MacAddr,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    /// Guest → host/outside ceiling (policed on the host's ingress of the port).
    pub from_guest_mbit: Option<u32>,
    /// Host/outside → guest ceiling (tbf on the host's egress of the port).
    pub to_guest_mbit: Option<u32>,
    /// The pool's network (e.g. `10.8.0.0/24`) when the pool is private: traffic from the
    /// guest's IPv4 address to anywhere outside it leaves masqueraded behind the host's
    /// address (an `ip` table of the port's, next to its bridge table).
    pub masquerade_outside: Option<String>,
    /// The customer's inbound firewall (see [`firewall`]).
    pub firewall: vessel_core::Firewall,
}

/// The IFB device shaping what `ifname` receives from the guest: `ifb` + the last 12
/// characters of the port's name (15 at most; ports are named after their instance's id).
pub fn ifb_name(ifname: &str) -> String {
    let tail = &ifname[ifname.len().saturating_sub(12)..];
    format!("ifb{tail}")
}

/// The nftables table guarding `ifname`.
pub fn table_name(ifname: &str) -> String {
    format!("vessel_{ifname}")
}

fn check_name(ifname: &str) -> Result<(), HostNetError> {
    let ok = !ifname.is_empty() && ifname.len() <= 15 && ifname.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(HostNetError::BadName(ifname.into()))
    }
}

fn hex128(a: Ipv6Addr) -> String {
    format!("0x{:032x}", u128::from(a))
}

/// Bytes per second of `mbit` Mbit/s and the burst allowed on top: 100 ms at the rate, at
/// least 64 KiB (a few full-size frames, so TCP is not starved at small rates).
fn rate_bytes(mbit: u32) -> (u64, u64) {
    let bps = u64::from(mbit) * 125_000;
    (bps, (bps / 10).max(64 * 1024))
}

/// The nftables script for `port` (a pure function, tested below).
pub fn ruleset(port: &Port) -> String {
    let t = table_name(&port.ifname);
    let mac = port.mac;
    let mut r = String::new();
    r += &format!("table bridge {t}\ndelete table bridge {t}\ntable bridge {t} {{\n");
    r += "  chain from_guest {\n    type filter hook prerouting priority -300; policy accept;\n";
    r += &format!("    iifname != \"{}\" accept\n", port.ifname);
    r += &format!("    ether saddr != {mac} drop\n");
    if let Some(v4) = port.ipv4 {
        r += &format!("    ether type arp arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp saddr ether {mac} arp saddr ip {v4} accept\n");
        r += &format!("    ether type ip ip saddr {v4} accept\n");
    }
    let ll = mac.link_local();
    let mut own6 = vec![ll];
    if let Some(v6) = port.ipv6 {
        own6.push(v6);
    }
    let set = |f: &dyn Fn(Ipv6Addr) -> String| own6.iter().map(|a| f(*a)).collect::<Vec<_>>().join(", ");
    r += "    icmpv6 type { nd-router-advert, nd-redirect } drop\n";
    // The target address of a neighbour advertisement: bytes 8..24 of the ICMPv6 header.
    r += &format!("    icmpv6 type nd-neighbor-advert @th,64,128 != {{ {} }} drop\n", set(&hex128));
    r += &format!("    ip6 saddr {{ {} }} accept\n", set(&|a: Ipv6Addr| a.to_string()));
    r += "    ip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld2-listener-report } accept\n";
    r += "    drop\n  }\n}\n";
    r
}

fn run(cmd: &mut Command, input: Option<&str>) -> Result<String, HostNetError> {
    use std::io::Write;
    let desc = format!("{cmd:?}").replace('"', "");
    let mut child = cmd
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| HostNetError::Io { what: desc.clone(), source })?;
    if let Some(text) = input {
        child.stdin.take().expect("piped").write_all(text.as_bytes()).map_err(|source| HostNetError::Io { what: desc.clone(), source })?;
    }
    let out = child.wait_with_output().map_err(|source| HostNetError::Io { what: desc.clone(), source })?;
    if !out.status.success() {
        return Err(HostNetError::Command {
            cmd: desc,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Puts (or replaces) every protection of `port`; idempotent. The interface must exist.
pub fn protect(port: &Port) -> Result<(), HostNetError> {
    check_name(&port.ifname)?;
    run(Command::new("nft").args(["-f", "-"]), Some(&ruleset(port)))?;
    run(Command::new("nft").args(["-f", "-"]), Some(&nat_ruleset(port)?))?;
    firewall::apply(&port.ifname, &port.firewall)?;
    let dev = &port.ifname;
    let mut tc = String::new();
    match port.to_guest_mbit {
        Some(mbit) => tc += &format!("qdisc replace dev {dev} root {}\n", tbf(mbit)),
        None => {
            // No limit: back to the default qdisc (deleting one that is not there is fine).
            let _ = run(Command::new("tc").args(["qdisc", "del", "dev", dev, "root"]), None);
        }
    }
    let ifb = ifb_name(dev);
    match port.from_guest_mbit {
        Some(mbit) => {
            if !link_exists(&ifb) {
                run(Command::new("ip").args(["link", "add", &ifb, "type", "ifb"]), None)?;
            }
            run(Command::new("ip").args(["link", "set", &ifb, "up"]), None)?;
            // The ingress qdisc and its redirect are replaced together with the port's qdisc.
            let _ = run(Command::new("tc").args(["qdisc", "del", "dev", dev, "ingress"]), None);
            tc += &format!("qdisc add dev {dev} handle ffff: ingress\n");
            tc += &format!(
                "filter add dev {dev} parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev {ifb}\n"
            );
            tc += &format!("qdisc replace dev {ifb} root {}\n", tbf(mbit));
        }
        None => {
            let _ = run(Command::new("tc").args(["qdisc", "del", "dev", dev, "ingress"]), None);
            delete_ifb(dev);
        }
    }
    if !tc.is_empty() {
        run(Command::new("tc").args(["-batch", "-"]), Some(&tc))?;
    }
    Ok(())
}

/// `tbf` arguments for `mbit` Mbit/s with [`rate_bytes`]'s burst.
fn tbf(mbit: u32) -> String {
    let (bps, burst) = rate_bytes(mbit);
    format!("tbf rate {}bit burst {burst} latency 50ms", bps * 8)
}

/// In the calling thread's network namespace (see `container::net`'s `interfaces`).
fn link_exists(name: &str) -> bool {
    std::path::Path::new("/proc/thread-self/net/dev").exists()
        && std::fs::read_to_string("/proc/thread-self/net/dev")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(':').next().map(str::trim) == Some(name))
}

fn delete_ifb(ifname: &str) {
    let ifb = ifb_name(ifname);
    if link_exists(&ifb) {
        let _ = run(Command::new("ip").args(["link", "del", &ifb]), None);
    }
}

/// Removes the port's protections (its nftables table and IFB; the port's own qdiscs go with
/// the link). Idempotent: what is not there is success.
pub fn unprotect(ifname: &str) -> Result<(), HostNetError> {
    check_name(ifname)?;
    delete_ifb(ifname);
    firewall::remove(ifname)?;
    let t = table_name(ifname);
    run(
        Command::new("nft").args(["-f", "-"]),
        Some(&format!("table bridge {t}\ndelete table bridge {t}\ntable ip {t}\ndelete table ip {t}\n")),
    )?;
    Ok(())
}

/// The port's `ip` table: empty, or (a private pool) masquerading the guest's IPv4 traffic
/// to anywhere outside its pool's network. Replaced whole, like the bridge table.
pub fn nat_ruleset(port: &Port) -> Result<String, HostNetError> {
    let t = table_name(&port.ifname);
    let mut r = format!("table ip {t}\ndelete table ip {t}\n");
    if let (Some(net), Some(addr)) = (&port.masquerade_outside, port.ipv4) {
        // Only an address/prefix reaches nft (the value is ours, but checked all the same).
        let ok = net.split_once('/').is_some_and(|(a, p)| a.parse::<Ipv4Addr>().is_ok() && p.parse::<u8>().is_ok_and(|p| p <= 32));
        if !ok {
            return Err(HostNetError::BadNetwork(net.clone()));
        }
        r += &format!(
            "table ip {t} {{\n  chain post {{\n    type nat hook postrouting priority srcnat; policy accept;\n    ip saddr {addr} ip daddr != {net} masquerade\n  }}\n}}\n"
        );
    }
    Ok(r)
}

/// Interfaces with a table of ours whose name starts with `prefix` (for orphan sweeps).
pub fn protected(prefix: &str) -> Vec<String> {
    let out = run(Command::new("nft").args(["list", "tables", "bridge"]), None).unwrap_or_default();
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("table bridge vessel_"))
        .filter(|n| n.starts_with(prefix) && !n.starts_with("fw_"))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_is_eui64_of_the_mac() {
        let m = MacAddr([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
        assert_eq!(m.to_string(), "02:11:22:33:44:55");
        assert_eq!(m.link_local(), "fe80::11:22ff:fe33:4455".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn ruleset_names_only_the_assigned_addresses() {
        let p = Port {
            ifname: "vzabc".into(),
            mac: MacAddr([0x02, 1, 2, 3, 4, 5]),
            ipv4: Some("10.0.0.2".parse().unwrap()),
            ipv6: Some("fd00::2".parse().unwrap()),
            from_guest_mbit: Some(10),
            to_guest_mbit: Some(10),
            masquerade_outside: None,
            firewall: Default::default(),
        };
        let r = ruleset(&p);
        assert!(r.contains("iifname != \"vzabc\" accept"), "{r}");
        assert!(r.trim_end().ends_with("drop\n  }\n}"), "{r}");
        assert!(r.contains("ether saddr != 02:01:02:03:04:05 drop"), "{r}");
        assert_eq!(ifb_name("vz0123456789ab"), "ifb0123456789ab");
        assert_eq!(tbf(10), "tbf rate 10000000bit burst 125000 latency 50ms");
        assert!(r.contains("arp saddr ether 02:01:02:03:04:05 arp saddr ip 10.0.0.2 accept"), "{r}");
        assert!(r.contains("ip saddr 10.0.0.2 accept"), "{r}");
        assert!(r.contains("0xfd000000000000000000000000000002"), "{r}");
        assert!(check_name("vz;rm").is_err());
    }
}
