//! A server's inbound firewall (issue 20): an ordered list of rules and a default verdict, kept
//! by the panel, carried to the host in [`crate::InstanceSpec::firewall`] and enforced there on
//! the server's port (see the provisioner's `hostnet::firewall`), where the tenant cannot undo it.
//!
//! The types cannot hold a rule the host could not apply: a port range starts at or before its
//! end and never at 0, ports only with TCP or UDP, a source prefix is a network (no host bits),
//! at most [`MAX_RULES`] rules. Invalid input is refused with what to fix.
//!
//! The host's filter is stateless (the hosts' kernels have no bridge conntrack), so a few rules
//! are implicit, see [`IMPLICIT_RULES`]: TCP rules match connection attempts (a SYN without
//! ACK), so every other TCP segment passes and the server's own connections keep working.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use thiserror::Error;

/// At most this many rules per server (the host's chain stays short; a customer needing more
/// is better served by a firewall inside the server).
pub const MAX_RULES: usize = 64;

/// The host's rules around the customer's, in order, for the customer's pages and the API
/// reference: what the firewall does that the list does not say.
pub const IMPLICIT_RULES: [&str; 4] = [
    "before your rules: traffic that is not IPv4 or IPv6 (ARP) is accepted",
    "before your rules: TCP segments other than connection attempts (SYN without ACK) are accepted, so your server's own connections work; TCP rules match new connections",
    "before your rules: ICMP errors (unreachable, too big, time exceeded, parameter problem) and IPv6 neighbour discovery are accepted",
    "after your rules, when the default is drop: UDP to ports 32768-60999 (your server's replies, e.g. DNS) and ICMP echo replies are accepted",
];

/// The ports a Linux guest picks its own UDP source ports from (`ip_local_port_range`):
/// replies to its queries come back to them (see [`IMPLICIT_RULES`]).
pub const EPHEMERAL_PORTS: PortRange = PortRange { start: 32768, end: 60999 };

#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum FirewallError {
    #[error("{0:?} is not a port: use a number from 1 to 65535")]
    BadPort(String),
    #[error("the port range {start}-{end} starts after it ends")]
    BackwardsRange { start: u16, end: u16 },
    #[error("{0:?} is not an address or prefix: write e.g. 203.0.113.0/24 or 2001:db8::/32")]
    BadPrefix(String),
    #[error("{given} has bits set past its /{len}: did you mean {network}/{len}?")]
    HostBits { given: String, network: IpAddr, len: u8 },
    #[error("{0:?} is not a protocol: use tcp, udp or icmp")]
    BadProtocol(String),
    #[error("{0:?} is not an action: use accept or drop")]
    BadVerdict(String),
    #[error("ICMP has no ports: leave the ports out of an icmp rule")]
    PortsWithIcmp,
    #[error("at most {MAX_RULES} rules")]
    TooManyRules,
    #[error("write a rule as: accept|drop tcp|udp|icmp [port or start-end] [from prefix] (got {0:?})")]
    BadRule(String),
}

/// What a rule (or the default) does with a packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    #[default]
    Accept,
    Drop,
}

impl Verdict {
    pub const ALL: [Verdict; 2] = [Verdict::Accept, Verdict::Drop];
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Drop => "drop",
        }
    }
}

impl FromStr for Verdict {
    type Err = FirewallError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "accept" | "allow" => Ok(Verdict::Accept),
            "drop" | "deny" => Ok(Verdict::Drop),
            _ => Err(FirewallError::BadVerdict(s.into())),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    /// ICMP for IPv4 sources, ICMPv6 for IPv6 ones (both when the rule names no source).
    Icmp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }
}

impl FromStr for Protocol {
    type Err = FirewallError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "icmp" | "icmpv6" => Ok(Protocol::Icmp),
            _ => Err(FirewallError::BadProtocol(s.into())),
        }
    }
}

/// `start..=end`, `1 <= start <= end`. Written `22` or `8000-8100`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "PortsInput", into = "String")]
pub struct PortRange {
    start: u16,
    end: u16,
}

impl PortRange {
    pub fn new(start: u16, end: u16) -> Result<Self, FirewallError> {
        if start == 0 {
            return Err(FirewallError::BadPort("0".into()));
        }
        if start > end {
            return Err(FirewallError::BackwardsRange { start, end });
        }
        Ok(PortRange { start, end })
    }
    pub fn single(port: u16) -> Result<Self, FirewallError> {
        Self::new(port, port)
    }
    pub fn start(self) -> u16 {
        self.start
    }
    pub fn end(self) -> u16 {
        self.end
    }
}

fn port(s: &str) -> Result<u16, FirewallError> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(FirewallError::BadPort(s.trim().into())),
    }
}

impl FromStr for PortRange {
    type Err = FirewallError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('-') {
            Some((a, b)) => PortRange::new(port(a)?, port(b)?),
            None => PortRange::single(port(s)?),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

impl From<PortRange> for String {
    fn from(p: PortRange) -> String {
        p.to_string()
    }
}

/// Ports as JSON may give them: `22`, `"22"` or `"8000-8100"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum PortsInput {
    Number(u64),
    Text(String),
}

impl TryFrom<PortsInput> for PortRange {
    type Error = FirewallError;
    fn try_from(v: PortsInput) -> Result<Self, Self::Error> {
        match v {
            PortsInput::Number(n) => PortRange::single(u16::try_from(n).map_err(|_| FirewallError::BadPort(n.to_string()))?),
            PortsInput::Text(s) => s.parse(),
        }
    }
}

/// An IPv4 or IPv6 network: an address with no bits set past its prefix length. Written
/// `203.0.113.0/24`; a bare address is a /32 (/128).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

impl IpPrefix {
    pub fn addr(self) -> IpAddr {
        self.addr
    }
    pub fn prefix_len(self) -> u8 {
        self.len
    }
    pub fn is_ipv4(self) -> bool {
        self.addr.is_ipv4()
    }
}

fn masked(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

impl FromStr for IpPrefix {
    type Err = FirewallError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let bad = || FirewallError::BadPrefix(t.into());
        let (addr, len) = match t.split_once('/') {
            Some((a, l)) => (a.parse::<IpAddr>().map_err(|_| bad())?, Some(l.parse::<u8>().map_err(|_| bad())?)),
            None => (t.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        if len > max {
            return Err(bad());
        }
        let network = masked(addr, len);
        if network != addr {
            return Err(FirewallError::HostBits { given: t.into(), network, len });
        }
        Ok(IpPrefix { addr, len })
    }
}

impl TryFrom<String> for IpPrefix {
    type Error = FirewallError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl From<IpPrefix> for String {
    fn from(p: IpPrefix) -> String {
        p.to_string()
    }
}

/// One inbound rule: packets of `protocol` (to `ports`, from `source`) get `action`. Absent
/// ports or source: any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RuleInput")]
pub struct FirewallRule {
    action: Verdict,
    protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    ports: Option<PortRange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<IpPrefix>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleInput {
    action: Verdict,
    protocol: Protocol,
    #[serde(default)]
    ports: Option<PortRange>,
    #[serde(default)]
    source: Option<IpPrefix>,
}

impl TryFrom<RuleInput> for FirewallRule {
    type Error = FirewallError;
    fn try_from(r: RuleInput) -> Result<Self, Self::Error> {
        FirewallRule::new(r.action, r.protocol, r.ports, r.source)
    }
}

impl FirewallRule {
    pub fn new(action: Verdict, protocol: Protocol, ports: Option<PortRange>, source: Option<IpPrefix>) -> Result<Self, FirewallError> {
        if protocol == Protocol::Icmp && ports.is_some() {
            return Err(FirewallError::PortsWithIcmp);
        }
        Ok(FirewallRule { action, protocol, ports, source })
    }
    pub fn action(&self) -> Verdict {
        self.action
    }
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }
    pub fn ports(&self) -> Option<PortRange> {
        self.ports
    }
    pub fn source(&self) -> Option<IpPrefix> {
        self.source
    }
}

/// `accept tcp 22 from 203.0.113.0/24`, `drop udp 8000-8100`, `accept icmp`: the one-line
/// form the customer's page edits.
impl FromStr for FirewallRule {
    type Err = FirewallError;
    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (action, protocol, rest) = match words.as_slice() {
            [a, p, rest @ ..] => (a.parse()?, p.parse()?, rest),
            _ => return Err(FirewallError::BadRule(line.trim().into())),
        };
        let (ports, rest) = match rest {
            [p, rest @ ..] if *p != "from" => (Some(p.parse()?), rest),
            _ => (None, rest),
        };
        let source = match rest {
            [] => None,
            ["from", prefix] => Some(prefix.parse()?),
            _ => return Err(FirewallError::BadRule(line.trim().into())),
        };
        FirewallRule::new(action, protocol, ports, source)
    }
}

impl fmt::Display for FirewallRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action.as_str(), self.protocol.as_str())?;
        if let Some(p) = self.ports {
            write!(f, " {p}")?;
        }
        if let Some(s) = self.source {
            write!(f, " from {s}")?;
        }
        Ok(())
    }
}

/// A server's firewall: the first rule that matches decides, else `default_policy`. The
/// default (no rules, accept) lets everything in, as a server without a firewall.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "FirewallInput")]
pub struct Firewall {
    default_policy: Verdict,
    rules: Vec<FirewallRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FirewallInput {
    default_policy: Verdict,
    #[serde(default)]
    rules: Vec<FirewallRule>,
}

impl TryFrom<FirewallInput> for Firewall {
    type Error = FirewallError;
    fn try_from(f: FirewallInput) -> Result<Self, Self::Error> {
        Firewall::new(f.default_policy, f.rules)
    }
}

impl Firewall {
    pub fn new(default_policy: Verdict, rules: Vec<FirewallRule>) -> Result<Self, FirewallError> {
        if rules.len() > MAX_RULES {
            return Err(FirewallError::TooManyRules);
        }
        Ok(Firewall { default_policy, rules })
    }

    /// One rule per line (blank lines and `#` comments ignored); an error names its line.
    pub fn parse_lines(default_policy: Verdict, text: &str) -> Result<Self, (usize, FirewallError)> {
        let mut rules = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if !line.is_empty() {
                rules.push(line.parse().map_err(|e| (n + 1, e))?);
            }
        }
        Firewall::new(default_policy, rules).map_err(|e| (0, e))
    }

    /// The rules as [`Firewall::parse_lines`] reads them.
    pub fn to_lines(&self) -> String {
        self.rules.iter().map(|r| format!("{r}\n")).collect()
    }

    pub fn default_policy(&self) -> Verdict {
        self.default_policy
    }
    pub fn rules(&self) -> &[FirewallRule] {
        &self.rules
    }
    /// Lets everything in (nothing for the host to filter).
    pub fn is_open(&self) -> bool {
        self.default_policy == Verdict::Accept && self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_port_range_cannot_run_backwards_or_start_at_zero() {
        assert_eq!("22".parse::<PortRange>().unwrap(), PortRange::single(22).unwrap());
        assert_eq!("8000-8100".parse::<PortRange>().unwrap().to_string(), "8000-8100");
        assert_eq!("90-80".parse::<PortRange>(), Err(FirewallError::BackwardsRange { start: 90, end: 80 }));
        assert!(PortRange::new(0, 10).is_err());
        assert!("65536".parse::<PortRange>().is_err());
        assert!("x".parse::<PortRange>().is_err());
        assert!(serde_json::from_value::<PortRange>(json!("90-80")).is_err(), "serde goes through the same check");
        assert_eq!(serde_json::from_value::<PortRange>(json!(443)).unwrap().to_string(), "443");
        assert!(serde_json::from_value::<PortRange>(json!(70000)).is_err());
    }

    #[test]
    fn a_prefix_is_a_network() {
        assert_eq!("203.0.113.0/24".parse::<IpPrefix>().unwrap().to_string(), "203.0.113.0/24");
        assert_eq!("2001:db8::/32".parse::<IpPrefix>().unwrap().prefix_len(), 32);
        assert_eq!("192.0.2.7".parse::<IpPrefix>().unwrap().to_string(), "192.0.2.7/32");
        assert_eq!("::1".parse::<IpPrefix>().unwrap().prefix_len(), 128);
        assert!(matches!("203.0.113.5/24".parse::<IpPrefix>(), Err(FirewallError::HostBits { .. })));
        assert!("203.0.113.0/33".parse::<IpPrefix>().is_err());
        assert!("nonsense".parse::<IpPrefix>().is_err());
        assert_eq!("0.0.0.0/0".parse::<IpPrefix>().unwrap().prefix_len(), 0);
        assert!(serde_json::from_value::<IpPrefix>(json!("10.0.0.1/8")).is_err());
    }

    #[test]
    fn rules_read_and_write_as_lines_and_json() {
        let r: FirewallRule = "accept tcp 22 from 203.0.113.0/24".parse().unwrap();
        assert_eq!(r.to_string(), "accept tcp 22 from 203.0.113.0/24");
        assert_eq!(
            serde_json::to_value(r).unwrap(),
            json!({"action": "accept", "protocol": "tcp", "ports": "22", "source": "203.0.113.0/24"})
        );
        let r: FirewallRule = "drop udp".parse().unwrap();
        assert_eq!(serde_json::to_value(r).unwrap(), json!({"action": "drop", "protocol": "udp"}));
        assert_eq!("accept icmp from 2001:db8::/32".parse::<FirewallRule>().unwrap().source().unwrap().prefix_len(), 32);
        assert_eq!("accept icmp 22".parse::<FirewallRule>(), Err(FirewallError::PortsWithIcmp));
        assert!(serde_json::from_value::<FirewallRule>(json!({"action": "accept", "protocol": "icmp", "ports": 1})).is_err());
        assert!("accept tcp 22 to 1.2.3.4".parse::<FirewallRule>().is_err());
        assert!("accept".parse::<FirewallRule>().is_err());
        assert!("allow sctp".parse::<FirewallRule>().is_err());
        let fw = Firewall::parse_lines(Verdict::Drop, "# ssh\naccept tcp 22\n\naccept udp 60000-61000 from ::/0\n").unwrap();
        assert_eq!(fw.rules().len(), 2);
        assert_eq!(Firewall::parse_lines(Verdict::Drop, &fw.to_lines()).unwrap(), fw);
        assert_eq!(Firewall::parse_lines(Verdict::Drop, "accept tcp 22\ndrop tcp 9-1").unwrap_err().0, 2);
        let back: Firewall = serde_json::from_value(serde_json::to_value(&fw).unwrap()).unwrap();
        assert_eq!(back, fw);
        assert!(Firewall::default().is_open());
        let many = vec![r; MAX_RULES + 1];
        assert_eq!(Firewall::new(Verdict::Accept, many), Err(FirewallError::TooManyRules));
        assert!(serde_json::from_value::<Firewall>(json!({"default_policy": "drop", "rules": [], "extra": 1})).is_err());
    }
}
