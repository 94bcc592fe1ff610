//! The customer's inbound firewall ([`vessel_core::Firewall`]) on one tenant port (a
//! container's host-side veth or a KVM machine's TAP), beside the port's anti-spoofing table.
//!
//! One nftables table per port, `bridge vessel_fw_<ifname>`, made through nftables' JSON
//! interface (`nft -j -f -`, the document typed by the `nftables` crate) and replaced whole in
//! one transaction: the port is never without its rules, and applying twice is applying once.
//! Two base chains (`forward`: frames bridged from other ports; `output`: what the host itself
//! sends onto the bridge, which includes everything it routes in from outside) jump, for frames
//! leaving through this port, to the `inbound` chain:
//!
//! 1. not IPv4/IPv6 (ARP): accept; TCP other than a connection attempt (SYN without ACK):
//!    accept; ICMP errors and IPv6 neighbour discovery: accept. The kernels here have no
//!    bridge conntrack (`nf_conntrack_bridge`), so the filter is stateless and this is how the
//!    server's own connections keep working (see [`vessel_core::firewall::IMPLICIT_RULES`]);
//! 2. the customer's rules, in order (first match decides);
//! 3. with a drop default: UDP to the guest's ephemeral ports and ICMP echo replies: accept;
//! 4. the default verdict.

use super::{check_name, HostNetError};
use nftables::batch::Batch;
use nftables::expr::{
    BinaryOperation, Expression as E, Meta, MetaKey, NamedExpression as N, Payload, PayloadField, Prefix, Range, SetItem,
};
use nftables::schema::{Chain, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{Accept, Drop, JumpTarget, Match, Operator, Statement as S};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use std::borrow::Cow;
use std::net::IpAddr;
use vessel_core::firewall::{FirewallRule, IpPrefix, PortRange, Protocol, Verdict, EPHEMERAL_PORTS};
use vessel_core::Firewall;

/// The table holding `ifname`'s firewall.
pub fn table_name(ifname: &str) -> String {
    format!("vessel_fw_{ifname}")
}

const INBOUND: &str = "inbound";

fn payload(protocol: &'static str, field: &'static str) -> E<'static> {
    E::Named(N::Payload(Payload::PayloadField(PayloadField { protocol: protocol.into(), field: field.into() })))
}

fn is(left: E<'static>, right: E<'static>) -> S<'static> {
    S::Match(Match { left, right, op: Operator::EQ })
}

fn is_not(left: E<'static>, right: E<'static>) -> S<'static> {
    S::Match(Match { left, right, op: Operator::NEQ })
}

fn set(items: &[&'static str]) -> E<'static> {
    E::Named(N::Set(items.iter().map(|s| SetItem::Element(E::String((*s).into()))).collect()))
}

fn l4proto() -> E<'static> {
    E::Named(N::Meta(Meta { key: MetaKey::L4proto }))
}

fn verdict(v: Verdict) -> S<'static> {
    match v {
        Verdict::Accept => S::Accept(Some(Accept {})),
        Verdict::Drop => S::Drop(Some(Drop {})),
    }
}

fn ports(p: PortRange) -> E<'static> {
    if p.start() == p.end() {
        E::Number(p.start().into())
    } else {
        E::Range(Box::new(Range { range: [E::Number(p.start().into()), E::Number(p.end().into())] }))
    }
}

fn source(p: IpPrefix) -> S<'static> {
    let (proto, len) = match p.addr() {
        IpAddr::V4(_) => ("ip", 32),
        IpAddr::V6(_) => ("ip6", 128),
    };
    let addr = E::String(p.addr().to_string().into());
    let right = if p.prefix_len() == len { addr } else { E::Named(N::Prefix(Prefix { addr: Box::new(addr), len: p.prefix_len().into() })) };
    is(payload(proto, "saddr"), right)
}

/// The match statements of one customer rule (then its verdict).
fn rule_exprs(r: &FirewallRule) -> Vec<S<'static>> {
    let mut out = Vec::new();
    if let Some(p) = r.source() {
        out.push(source(p));
    }
    match r.protocol() {
        Protocol::Tcp | Protocol::Udp => {
            let proto = r.protocol().as_str();
            match r.ports() {
                Some(p) => out.push(is(payload(proto, "dport"), ports(p))),
                None => out.push(is(l4proto(), E::String(proto.into()))),
            }
        }
        Protocol::Icmp => out.push(match r.source().map(IpPrefix::is_ipv4) {
            Some(true) => is(l4proto(), E::String("icmp".into())),
            Some(false) => is(l4proto(), E::String("ipv6-icmp".into())),
            None => is(l4proto(), set(&["icmp", "ipv6-icmp"])),
        }),
    }
    out.push(verdict(r.action()));
    out
}

/// Every statement list of the `inbound` chain, in order (a pure function, tested below).
pub fn inbound_rules(fw: &Firewall) -> Vec<Vec<S<'static>>> {
    let mut rules = vec![
        vec![is_not(payload("ether", "type"), set(&["ip", "ip6"])), verdict(Verdict::Accept)],
        vec![
            is_not(
                E::BinaryOperation(Box::new(BinaryOperation::AND(
                    payload("tcp", "flags"),
                    E::List(vec![E::String("syn".into()), E::String("ack".into())]),
                ))),
                E::String("syn".into()),
            ),
            verdict(Verdict::Accept),
        ],
        vec![
            is(payload("icmp", "type"), set(&["destination-unreachable", "time-exceeded", "parameter-problem"])),
            verdict(Verdict::Accept),
        ],
        vec![
            is(
                payload("icmpv6", "type"),
                set(&[
                    "destination-unreachable",
                    "packet-too-big",
                    "time-exceeded",
                    "parameter-problem",
                    "nd-router-advert",
                    "nd-neighbor-solicit",
                    "nd-neighbor-advert",
                ]),
            ),
            verdict(Verdict::Accept),
        ],
    ];
    rules.extend(fw.rules().iter().map(rule_exprs));
    if fw.default_policy() == Verdict::Drop {
        rules.push(vec![is(payload("udp", "dport"), ports(EPHEMERAL_PORTS)), verdict(Verdict::Accept)]);
        rules.push(vec![is(payload("icmp", "type"), E::String("echo-reply".into())), verdict(Verdict::Accept)]);
        rules.push(vec![is(payload("icmpv6", "type"), E::String("echo-reply".into())), verdict(Verdict::Accept)]);
    }
    rules.push(vec![verdict(fw.default_policy())]);
    rules
}

/// The whole transaction that replaces `ifname`'s firewall table with `fw`.
pub fn document(ifname: &str, fw: &Firewall) -> Nftables<'static> {
    let t: Cow<'static, str> = table_name(ifname).into();
    let table = || NfListObject::Table(Table { family: NfFamily::Bridge, name: t.clone(), handle: None });
    let mut b = Batch::new();
    // Add (a no-op when it exists), delete, make again: one transaction, whatever was there.
    b.add(table());
    b.delete(table());
    b.add(table());
    b.add(NfListObject::Chain(Chain { family: NfFamily::Bridge, table: t.clone(), name: INBOUND.into(), ..Default::default() }));
    for (name, hook) in [("forward", NfHook::Forward), ("output", NfHook::Output)] {
        b.add(NfListObject::Chain(Chain {
            family: NfFamily::Bridge,
            table: t.clone(),
            name: name.into(),
            _type: Some(NfChainType::Filter),
            hook: Some(hook),
            prio: Some(0),
            policy: Some(NfChainPolicy::Accept),
            ..Default::default()
        }));
        b.add(NfListObject::Rule(Rule {
            family: NfFamily::Bridge,
            table: t.clone(),
            chain: name.into(),
            expr: vec![
                is(E::Named(N::Meta(Meta { key: MetaKey::Oifname })), E::String(ifname.to_string().into())),
                S::Jump(JumpTarget { target: INBOUND.into() }),
            ]
            .into(),
            ..Default::default()
        }));
    }
    for expr in inbound_rules(fw) {
        b.add(NfListObject::Rule(Rule {
            family: NfFamily::Bridge,
            table: t.clone(),
            chain: INBOUND.into(),
            expr: expr.into(),
            ..Default::default()
        }));
    }
    b.to_nftables()
}

fn nft_failed(e: nftables::helper::NftablesError) -> HostNetError {
    HostNetError::Command { cmd: "nft -j -f -".into(), status: "failed".into(), stderr: e.to_string() }
}

/// Puts `fw` on `ifname` (replacing what was there) in one `nft` transaction. Idempotent.
pub fn apply(ifname: &str, fw: &Firewall) -> Result<(), HostNetError> {
    check_name(ifname)?;
    nftables::helper::apply_ruleset(&document(ifname, fw)).map_err(nft_failed)?;
    tracing::debug!(ifname, rules = fw.rules().len(), default = fw.default_policy().as_str(), "firewall applied");
    Ok(())
}

/// Removes `ifname`'s firewall table; what is not there is success.
pub fn remove(ifname: &str) -> Result<(), HostNetError> {
    check_name(ifname)?;
    let t: Cow<'static, str> = table_name(ifname).into();
    let table = || NfListObject::Table(Table { family: NfFamily::Bridge, name: t.clone(), handle: None });
    let mut b = Batch::new();
    b.add(table());
    b.delete(table());
    nftables::helper::apply_ruleset(&b.to_nftables()).map_err(nft_failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(fw: &Firewall) -> String {
        serde_json::to_string(&document("vzabc", fw)).unwrap()
    }

    #[test]
    fn the_document_keys_the_chain_to_the_port_and_keeps_the_customers_order() {
        let fw =
            Firewall::parse_lines(Verdict::Drop, "accept tcp 22 from 203.0.113.0/24\ndrop tcp 8000-8100\naccept icmp from 2001:db8::/32")
                .unwrap();
        let j = json(&fw);
        assert!(
            j.contains(r#"{"match":{"left":{"meta":{"key":"oifname"}},"right":"vzabc","op":"=="}},{"jump":{"target":"inbound"}}"#),
            "{j}"
        );
        assert!(j.contains(r#""name":"vessel_fw_vzabc""#), "{j}");
        let ssh = j.find(r#"{"prefix":{"addr":"203.0.113.0","len":24}}"#).expect("the source prefix");
        let range = j.find(r#"{"range":[8000,8100]}"#).expect("the port range");
        let icmp6 = j.find(r#""right":"ipv6-icmp""#).expect("icmp from an IPv6 source is ICMPv6");
        assert!(ssh < range && range < icmp6, "rules keep their order: {j}");
        let rules = inbound_rules(&fw);
        assert_eq!(rules.last().unwrap(), &vec![verdict(Verdict::Drop)], "the default ends the chain");
        // Open: no ephemeral-port exception, and the chain ends in accept.
        let open = inbound_rules(&Firewall::default());
        assert_eq!(open.len(), 5);
        assert_eq!(open.last().unwrap(), &vec![verdict(Verdict::Accept)]);
    }

    #[test]
    fn a_single_address_is_matched_exactly() {
        let fw = Firewall::parse_lines(Verdict::Accept, "drop udp 53 from 192.0.2.7").unwrap();
        let j = json(&fw);
        assert!(j.contains(r#""left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"192.0.2.7""#), "{j}");
        assert!(j.contains(r#""left":{"payload":{"protocol":"udp","field":"dport"}},"right":53"#), "{j}");
    }
}

/// Against the real `nft`, in a network namespace of the test's own (nextest runs each test in
/// its own process; root needed, as for every kernel-touching provisioner test).
#[cfg(test)]
mod kernel_tests {
    use super::*;

    fn rules_in(table: &str) -> Option<usize> {
        let out = std::process::Command::new("nft").args(["-j", "list", "table", "bridge", table]).output().unwrap();
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        Some(v["nftables"].as_array().unwrap().iter().filter(|o| o.get("rule").is_some()).count())
    }

    #[test]
    fn nft_takes_the_document_replaces_it_whole_and_removes_it() {
        assert!(crate::container::net::link_exists("lo") || std::path::Path::new("/proc").exists());
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("FAILED LOUDLY: a network namespace needs root");
        let t = table_name("vzfwtest");
        let fw =
            Firewall::parse_lines(Verdict::Drop, "accept tcp 22 from 203.0.113.0/24\ndrop udp 53 from 2001:db8::/32\naccept icmp").unwrap();
        apply("vzfwtest", &fw).unwrap();
        // 2 jumps + 4 implicit + 3 customer + 3 drop-default exceptions + the default.
        assert_eq!(rules_in(&t), Some(13));
        apply("vzfwtest", &fw).unwrap();
        assert_eq!(rules_in(&t), Some(13), "applying again replaces, never doubles");
        apply("vzfwtest", &Firewall::default()).unwrap();
        assert_eq!(rules_in(&t), Some(7));
        remove("vzfwtest").unwrap();
        assert_eq!(rules_in(&t), None);
        remove("vzfwtest").unwrap();
        assert!(apply("vz;x", &fw).is_err(), "a bad name never reaches nft");
    }
}
