//! Reverse DNS checks on the client address: no PTR record
//! (`reverse_dns`), a PTR name that does not resolve back to the address
//! (`forged_reverse_dns`, forward-confirmed reverse DNS), and PTR names
//! that look generic or dynamic (`generic_reverse_dns`).

use super::checks::{Checks, Timer};
use crate::config::OnDnsError;
use crate::dns::Answer;
use crate::smtp::reply::Reply;
use crate::verdict::{CheckResult, Outcome, Stage};
use std::fmt::Write as _;
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
        let failed = Outcome::DnsError(Reply::new(
            451,
            "4.7.1",
            format!("Client host rejected: IP name lookup failed [{client}]"),
        ));
        let names = match self.dns.ptr(client).await {
            Answer::Failed(why) => {
                return vec![
                    t.result(
                        "reverse_dns",
                        c.reverse_dns,
                        tempfail,
                        failed.clone(),
                        format!("PTR lookup failed: {why}"),
                    ),
                    t.result(
                        "forged_reverse_dns",
                        c.forged_reverse_dns,
                        tempfail,
                        failed.clone(),
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
            format!("ptr={}", names.join(",")),
        )];
        // Forward-confirm: one of (at most five) PTR names resolves back.
        let (confirmed, failure) = match self.dns.confirm(client, &names).await {
            Answer::Found(name) => (Some(name), None),
            Answer::Failed(why) => (None, Some(why)),
            Answer::NotFound => (None, None),
        };
        let forged = match (&confirmed, failure) {
            (Some(name), _) => (Outcome::Pass, format!("{name} resolves to {client}")),
            (None, Some(why)) => (failed.clone(), format!("forward lookup failed: {why}")),
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
/// `c0000201.example`).
pub fn looks_generic(ptr: &str, client: IpAddr) -> bool {
    let IpAddr::V4(v4) = client else {
        return false;
    };
    let name = ptr.to_ascii_lowercase();
    let [a, b, c, d] = v4.octets();
    // Each form is written into one buffer in turn (this runs for every
    // connection with a PTR name).
    let mut form = String::with_capacity(16);
    for sep in ['-', '.', '_'] {
        for [w, x, y, z] in [[a, b, c, d], [d, c, b, a]] {
            form.clear();
            let _ = write!(form, "{w}{sep}{x}{sep}{y}{sep}{z}");
            if contains_delimited(&name, &form) {
                return true;
            }
        }
    }
    form.clear();
    let _ = write!(form, "{:08x}", u32::from(v4));
    contains_delimited(&name, &form)
}

/// `needle` occurs in `hay` not glued to more digits on either side.
fn contains_delimited(hay: &str, needle: &str) -> bool {
    hay.match_indices(needle).any(|(i, _)| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
