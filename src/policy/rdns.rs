//! Reverse DNS checks on the client address: no PTR record
//! (`reverse_dns`), a PTR name that does not resolve back to the address
//! (`forged_reverse_dns`, forward-confirmed reverse DNS), and PTR names
//! that look generic or dynamic (`generic_reverse_dns`).

use super::checks::{Checks, Timer};
use crate::config::OnDnsError;
use crate::dns::Answer;
use crate::smtp::reply::Reply;
use crate::verdict::{CheckResult, Outcome, Stage};
use std::net::IpAddr;

impl Checks {
    pub(super) async fn rdns(&self, client: IpAddr) -> Vec<CheckResult> {
        let c = &self.config.checks;
        if c.reverse_dns.is_off() && c.forged_reverse_dns.is_off() && c.generic_reverse_dns.is_off()
        {
            return Vec::new();
        }
        let t = Timer::start(Stage::Connect);
        let tempfail = OnDnsError::Tempfail;
        // Built only for a failed lookup.
        let failed = || {
            Outcome::DnsError(Reply::new(
                451,
                "4.7.1",
                format!("Client host rejected: IP name lookup failed [{client}]"),
            ))
        };
        let names = match self.dns.ptr(client).await {
            Answer::Failed(why) => {
                return vec![
                    t.result(
                        "reverse_dns",
                        c.reverse_dns,
                        tempfail,
                        failed(),
                        format!("PTR lookup failed: {why}"),
                    ),
                    t.result(
                        "forged_reverse_dns",
                        c.forged_reverse_dns,
                        tempfail,
                        failed(),
                        "no PTR to confirm",
                    ),
                ];
            }
            Answer::NotFound => {
                let reply = Reply::new(
                    550,
                    "5.7.1",
                    format!("Client host rejected: cannot find your reverse hostname, [{client}]"),
                );
                return vec![
                    t.result(
                        "reverse_dns",
                        c.reverse_dns,
                        tempfail,
                        Outcome::Hit(reply),
                        "no PTR record",
                    ),
                    t.result(
                        "forged_reverse_dns",
                        c.forged_reverse_dns,
                        tempfail,
                        Outcome::Pass,
                        "no PTR to confirm",
                    ),
                ];
            }
            Answer::Found(names) => names,
        };
        let mut results = vec![t.result(
            "reverse_dns",
            c.reverse_dns,
            tempfail,
            Outcome::Pass,
            ["ptr=", &names.join(",")].concat(),
        )];
        // Forward-confirm: one of (at most five) PTR names resolves back.
        let (confirmed, failure) = match self.dns.confirm(client, &names).await {
            Answer::Found(name) => (Some(name), None),
            Answer::Failed(why) => (None, Some(why)),
            Answer::NotFound => (None, None),
        };
        let forged = match (&confirmed, failure) {
            (Some(name), _) => {
                let mut detail = [name.as_str(), " resolves to "].concat();
                crate::net::push_ip(&mut detail, client);
                (Outcome::Pass, detail)
            }
            (None, Some(why)) => (failed(), format!("forward lookup failed: {why}")),
            (None, None) => (
                Outcome::Hit(Reply::new(
                    550,
                    "5.7.25",
                    format!("Client host rejected: IP name possibly forged [{client}]"),
                )),
                format!("{} does not resolve to {client}", names.join(",")),
            ),
        };
        results.push(t.result(
            "forged_reverse_dns",
            c.forged_reverse_dns,
            tempfail,
            forged.0,
            forged.1,
        ));
        let shown = confirmed.unwrap_or_else(|| names[0].clone());
        let generic = if looks_generic(&shown, client) {
            Outcome::Hit(Reply::new(
                550,
                "5.7.1",
                format!("Client host rejected: generic reverse hostname {shown} [{client}]"),
            ))
        } else {
            Outcome::Pass
        };
        results.push(t.result(
            "generic_reverse_dns",
            c.generic_reverse_dns,
            tempfail,
            generic,
            shown,
        ));
        results
    }
}

/// Whether a PTR name carries the client's address, as ISPs' generic
/// names do (`ip-192-0-2-1.isp.example`, `1.2.0.192.dyn.example`,
/// `c0000201.example`): the four octets in decimal, in either order, joined
/// by one of `-`, `.`, `_`, or the address as eight hex digits, in either
/// case not glued to more digits on either side. One pass over the name,
/// nothing allocated (this runs for every connection with a PTR name).
pub fn looks_generic(ptr: &str, client: IpAddr) -> bool {
    let IpAddr::V4(v4) = client else {
        return false;
    };
    let name = ptr.as_bytes();
    let octets = v4.octets();
    let mut hex = [0u8; 8];
    for (i, digit) in hex.iter_mut().enumerate() {
        let nibble = (u32::from(v4) >> (28 - 4 * i)) & 0xf;
        *digit = b"0123456789abcdef"[nibble as usize];
    }
    let digit_at = |i: usize| name.get(i).is_some_and(u8::is_ascii_digit);
    (0..name.len()).any(|i| {
        let free_before = i == 0 || !digit_at(i - 1);
        free_before
            && (dotted_at(name, i, octets)
                || (name.len() - i >= 8
                    && name[i..i + 8].eq_ignore_ascii_case(&hex)
                    && !digit_at(i + 8)))
    })
}

/// Whether the digits starting at `at` are four runs of digits joined by
/// one separator, spelling `octets` in decimal, forwards or backwards.
fn dotted_at(name: &[u8], at: usize, octets: [u8; 4]) -> bool {
    let run = |from: usize| {
        let rest = &name[from..];
        &rest[..rest.iter().take_while(|b| b.is_ascii_digit()).count()]
    };
    let mut runs: [&[u8]; 4] = [&[]; 4];
    let mut pos = at;
    let mut sep = None;
    for (n, slot) in runs.iter_mut().enumerate() {
        *slot = run(pos);
        if slot.is_empty() || slot.len() > 3 {
            return false;
        }
        pos += slot.len();
        if n < 3 {
            let here = name.get(pos).copied();
            if !matches!(here, Some(b'-' | b'.' | b'_')) || (sep.is_some() && sep != here) {
                return false;
            }
            sep = here;
            pos += 1;
        }
    }
    // An octet is spelt without leading zeros, as the address is written.
    let spells = |order: [u8; 4]| {
        (runs.iter().zip(order)).all(|(run, octet)| {
            let value = (run.iter()).fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
            (run.len() == 1 || run[0] != b'0') && value == u16::from(octet)
        })
    };
    let [a, b, c, d] = octets;
    spells([a, b, c, d]) || spells([d, c, b, a])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fmt::Write as _;
    use std::net::Ipv4Addr;

    /// The first way of telling: every form written out and searched for.
    fn generic_by_search(ptr: &str, v4: Ipv4Addr) -> bool {
        let name = ptr.to_ascii_lowercase();
        let [a, b, c, d] = v4.octets();
        let delimited = |needle: &str| {
            name.match_indices(needle).any(|(i, _)| {
                let before = name[..i].chars().next_back();
                let after = name[i + needle.len()..].chars().next();
                !before.is_some_and(|c| c.is_ascii_digit())
                    && !after.is_some_and(|c| c.is_ascii_digit())
            })
        };
        let mut forms = vec![format!("{:08x}", u32::from(v4))];
        for sep in ['-', '.', '_'] {
            for [w, x, y, z] in [[a, b, c, d], [d, c, b, a]] {
                let mut form = String::new();
                let _ = write!(form, "{w}{sep}{x}{sep}{y}{sep}{z}");
                forms.push(form);
            }
        }
        forms.iter().any(|form| delimited(form))
    }

    /// A name part that spells the address one way or another, or nearly.
    fn spelling(v4: Ipv4Addr, how: usize) -> String {
        let [a, b, c, d] = v4.octets();
        match how {
            0 => format!("{a}-{b}-{c}-{d}"),
            1 => format!("{d}.{c}.{b}.{a}"),
            2 => format!("{a}_{b}_{c}_{d}"),
            3 => format!("{:08x}", u32::from(v4)),
            4 => format!("{:08X}", u32::from(v4)),
            5 => format!("{a:03}-{b:03}-{c:03}-{d:03}"),
            6 => format!("{a}-{b}.{c}-{d}"),
            _ => format!("{a}-{b}-{c}"),
        }
    }

    proptest! {
        #[test]
        fn one_pass_tells_what_searching_every_form_tells(
            octets in prop_oneof![any::<[u8; 4]>(), Just([192, 0, 2, 1]), Just([10, 0, 0, 10])],
            how in 0usize..9,
            prefix in "[0-9a-z._-]{0,6}",
            suffix in "[0-9a-zA-Z._-]{0,6}",
            noise in "[0-9cC0._-]{0,24}",
        ) {
            let v4 = Ipv4Addr::from(octets);
            let body = if how == 8 { noise } else { spelling(v4, how) };
            let name = format!("{prefix}{body}{suffix}");
            prop_assert_eq!(looks_generic(&name, v4.into()), generic_by_search(&name, v4), "{}", name);
        }
    }

    fn generic(name: &str) -> bool {
        looks_generic(name, "192.0.2.1".parse().unwrap())
    }

    #[test]
    fn generic_names() {
        assert!(generic("ip-192-0-2-1.isp.example"));
        assert!(generic("1.2.0.192.dyn.isp.example"));
        assert!(generic("c0000201.cable.example"));
        assert!(generic("host192_0_2_1.example"));
        assert!(!generic("mail.example.com"));
        assert!(!generic("ip-192-0-2-11.isp.example"), "another address");
        assert!(!looks_generic(
            "ip-192-0-2-1.example",
            "2001:db8::1".parse().unwrap()
        ));
    }
}
