//! Small helpers for client addresses shared by the listener, the policy and
//! the logs.

use crate::decimal::Decimal;
use std::net::IpAddr;

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) as the IPv4 address it
/// stands for, so that lists and counters see one client, not two.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The network that counts as one client: the address itself for IPv4,
/// its /64 for IPv6 (one subscriber's or host's allocation, which a client
/// can otherwise hop around in at will).
pub fn client_network(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// [`client_network`] as text: `192.0.2.1` or `2001:db8::/64`, the key
/// bans, rates and the connection caps count by.
pub fn client_id(ip: IpAddr) -> String {
    let network = client_network(ip);
    let mut id = String::with_capacity(24);
    push_ip(&mut id, network);
    if network.is_ipv6() {
        id.push_str("/64");
    }
    id
}

/// Appends `ip` as `Display` writes it, IPv4's digits without the
/// formatting machinery (every session's log lines and counter keys hold
/// the client's address).
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => out.push_str(v4_text(v4, &mut [0; 15])),
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            let _ = write!(out, "{v6}");
        }
    }
}

/// An address shown as `IpAddr`'s `Display` shows it, IPv4 written
/// without the formatting machinery (in check details, counter keys).
#[derive(Debug, Clone, Copy)]
pub struct Ip(pub IpAddr);

impl std::fmt::Display for Ip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => f.write_str(v4_text(v4, &mut [0; 15])),
            IpAddr::V6(v6) => std::fmt::Display::fmt(&v6, f),
        }
    }
}

/// Appends an octet in decimal.
pub fn push_octet(out: &mut String, octet: u8) {
    out.push_str(Decimal::of(u64::from(octet)).as_str());
}

/// Dotted decimal, in `buf`.
fn v4_text(v4: std::net::Ipv4Addr, buf: &mut [u8; 15]) -> &str {
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        let digits = Decimal::of(u64::from(octet));
        let digits = digits.as_bytes();
        buf[len..len + digits.len()].copy_from_slice(digits);
        len += digits.len();
    }
    std::str::from_utf8(&buf[..len]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(client_network(a), client_network(b));
        assert_eq!(client_id(a), "2001:db8:1:2::/64");
        assert_ne!(client_id(a), client_id("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(client_id("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for octet in 0..=255u8 {
            let mut text = String::new();
            push_octet(&mut text, octet);
            assert_eq!(text, octet.to_string());
        }
        for ip in [
            "0.0.0.0",
            "192.0.2.1",
            "255.255.255.255",
            "10.100.9.99",
            "2001:db8::1",
            "::",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut text = String::new();
            push_ip(&mut text, ip);
            assert_eq!(text, ip.to_string());
            assert_eq!(Ip(ip).to_string(), ip.to_string());
        }
    }

    #[test]
    fn mapped_addresses_become_ipv4() {
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(canonical_ip(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(canonical_ip(v6), v6);
    }
}
