//! IP pools: a network in CIDR notation, and the arithmetic that lists its usable addresses
//! (the pools themselves are made by admins, [`crate::admin::pools`]; their SQL is `db/ip_pools.rs`).

use std::net::IpAddr;

/// A network in CIDR notation whose host bits are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = s.trim().split_once('/').ok_or("write it as address/prefix, e.g. 203.0.113.0/24")?;
        let addr: IpAddr = a.parse().map_err(|_| format!("{a:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = p.parse().ok().filter(|p| *p <= max).ok_or(format!("the prefix must be 0 to {max}"))?;
        let c = Cidr { addr, prefix };
        if c.network_u128() != Self::bits(addr) {
            return Err(format!("host bits are set; the network address is {}/{prefix}", Self::from_bits(addr, c.network_u128())));
        }
        Ok(c)
    }
    fn bits(a: IpAddr) -> u128 {
        match a {
            IpAddr::V4(v) => u32::from(v) as u128,
            IpAddr::V6(v) => u128::from(v),
        }
    }
    fn from_bits(like: IpAddr, b: u128) -> IpAddr {
        match like {
            IpAddr::V4(_) => IpAddr::V4((b as u32).into()),
            IpAddr::V6(_) => IpAddr::V6(b.into()),
        }
    }
    fn width(&self) -> u32 {
        if self.addr.is_ipv4() {
            32
        } else {
            128
        }
    }
    fn host_bits(&self) -> u32 {
        self.width() - self.prefix as u32
    }
    fn network_u128(&self) -> u128 {
        let hb = self.host_bits();
        if hb >= 128 {
            0
        } else {
            (Self::bits(self.addr) >> hb) << hb
        }
    }
    pub fn contains(&self, a: IpAddr) -> bool {
        a.is_ipv4() == self.addr.is_ipv4() && {
            let hb = self.host_bits();
            hb >= 128 || (Self::bits(a) >> hb) == (self.network_u128() >> hb)
        }
    }
    /// Usable host addresses in order, skipping the network (and for IPv4 the broadcast)
    /// address and `except`, at most `limit`.
    pub fn hosts(&self, except: IpAddr, limit: usize) -> Vec<IpAddr> {
        let hb = self.host_bits();
        let size: u128 = if hb >= 128 { u128::MAX } else { 1u128 << hb };
        let base = self.network_u128();
        let (first, last) = if self.addr.is_ipv4() && hb >= 2 {
            (1, size - 2)
        } else if hb == 0 {
            (0, 0)
        } else {
            (1, size - 1)
        };
        let mut out = Vec::new();
        let mut i = first;
        while i <= last && out.len() < limit {
            let a = Self::from_bits(self.addr, base + i);
            if a != except {
                out.push(a);
            }
            i += 1;
        }
        out
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = Cidr::parse("203.0.113.0/29").unwrap();
        let gw: IpAddr = "203.0.113.1".parse().unwrap();
        let hosts: Vec<String> = c.hosts(gw, 100).iter().map(|a| a.to_string()).collect();
        assert_eq!(hosts, ["203.0.113.2", "203.0.113.3", "203.0.113.4", "203.0.113.5", "203.0.113.6"]);
        assert!(c.contains(gw));
        assert!(!c.contains("203.0.113.8".parse().unwrap()));
        assert!(Cidr::parse("203.0.113.5/24").unwrap_err().contains("203.0.113.0/24"));
        assert!(Cidr::parse("203.0.113.0").is_err());
        assert!(Cidr::parse("203.0.113.0/33").is_err());
        let v6 = Cidr::parse("2001:db8::/64").unwrap();
        assert_eq!(v6.hosts("2001:db8::1".parse().unwrap(), 3).len(), 3);
        assert_eq!(v6.hosts("2001:db8::1".parse().unwrap(), 1)[0].to_string(), "2001:db8::2");
    }
}
