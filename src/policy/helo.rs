//! HELO checks: the name's syntax (valid, fully qualified, no bare IP, an
//! address literal only if it is the client's, not our own name), and with
//! DNS: whether it resolves, whether it is the client's PTR name, and the
//! SPF result of the HELO identity.

use crate::smtp::address::is_domain;
use crate::smtp::reply::Reply;
use std::net::IpAddr;

/// The syntax part of the `helo` check: the reply if the name is bad.
pub fn syntax(helo: &str, client: IpAddr, our_hostname: &str) -> Option<Reply> {
    let rejected = |code, status, why: &str| {
        Some(Reply::new(
            code,
            status,
            format!("<{helo}>: Helo command rejected: {why}"),
        ))
    };
    if let Some(inner) = helo.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let literal = inner
            .strip_prefix("IPv6:")
            .or_else(|| inner.strip_prefix("ipv6:"))
            .unwrap_or(inner)
            .parse::<IpAddr>();
        return match literal {
            Err(_) => rejected(501, "5.5.2", "Invalid name"),
            Ok(ip) if crate::net::canonical_ip(ip) != client => rejected(
                550,
                "5.7.1",
                &format!("address literal does not match your address [{client}]"),
            ),
            Ok(_) => None,
        };
    }
    if helo.parse::<IpAddr>().is_ok() {
        return rejected(501, "5.5.2", &format!("bare IP address, use [{helo}]"));
    }
    let name = helo.strip_suffix('.').unwrap_or(helo);
    if !is_domain(name) {
        return rejected(501, "5.5.2", "Invalid name");
    }
    if !name.contains('.') {
        return rejected(504, "5.5.2", "need fully-qualified hostname");
    }
    if name.eq_ignore_ascii_case(our_hostname) {
        return rejected(550, "5.7.1", "You are not me");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(helo: &str) -> Option<String> {
        syntax(helo, "192.0.2.1".parse().unwrap(), "mx.example.com").map(|r| r.to_string())
    }

    #[test]
    fn good_names_pass() {
        assert_eq!(check("mail.client.example"), None);
        assert_eq!(check("mail.client.example."), None);
        assert_eq!(check("[192.0.2.1]"), None);
    }

    #[test]
    fn bad_names_get_their_reply() {
        assert_eq!(
            check("localhost").unwrap(),
            "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"
        );
        assert_eq!(
            check("bad_name!").unwrap(),
            "501 5.5.2 <bad_name!>: Helo command rejected: Invalid name"
        );
        assert_eq!(
            check("192.0.2.1").unwrap(),
            "501 5.5.2 <192.0.2.1>: Helo command rejected: bare IP address, use [192.0.2.1]"
        );
        assert_eq!(
            check("[198.51.100.9]").unwrap(),
            "550 5.7.1 <[198.51.100.9]>: Helo command rejected: address literal does not match your address [192.0.2.1]"
        );
        assert_eq!(
            check("[999.1.1.1]").unwrap(),
            "501 5.5.2 <[999.1.1.1]>: Helo command rejected: Invalid name"
        );
        assert_eq!(
            check("MX.Example.com").unwrap(),
            "550 5.7.1 <MX.Example.com>: Helo command rejected: You are not me"
        );
    }
}
