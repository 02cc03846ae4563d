//! DNS lists that are dead or were taken over: an old configuration still
//! names them, but they answer nothing useful any more, and some answer
//! "listed" for every address (blackholes.us, ahbl.org), which rejects all
//! mail. The import never writes them as active lists.

/// Each dead list's domain (the list and everything under it) and why.
const DEAD: &[(&str, &str)] = &[
    (
        "blackholes.us",
        "blackholes.us is gone and has answered \"listed\" for every address",
    ),
    ("dsbl.org", "DSBL shut down in 2009"),
    ("njabl.org", "NJABL shut down in 2013"),
    (
        "sorbs.net",
        "SORBS (dnsbl.sorbs.net and its zones) shut down in 2024",
    ),
    ("ordb.org", "ORDB shut down in 2006"),
    (
        "ahbl.org",
        "AHBL shut down in 2015 and then answered \"listed\" for every address",
    ),
    (
        "spamcannibal.org",
        "SpamCannibal shut down; its domain no longer serves the list",
    ),
    ("rfc-ignorant.org", "RFC-Ignorant shut down in 2012"),
    (
        "osirusoft.com",
        "relays.osirusoft.com shut down in 2003 by listing every address",
    ),
];

/// Why `zone` must not be used, if it is a dead list.
pub fn reason(zone: &str) -> Option<&'static str> {
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    DEAD.iter()
        .find(|(domain, _)| {
            zone == *domain
                || zone
                    .strip_suffix(domain)
                    .is_some_and(|rest| rest.ends_with('.'))
        })
        .map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_lists_and_their_subdomains() {
        for zone in [
            "blackholes.us",
            "relays.blackholes.us",
            "dnsbl.sorbs.net",
            "dul.dnsbl.sorbs.net",
            "list.dsbl.org",
            "dnsbl.njabl.org",
            "relays.ordb.org",
            "dnsbl.ahbl.org",
            "bl.spamcannibal.org",
            "ipwhois.rfc-ignorant.org",
            "Relays.Blackholes.US.",
        ] {
            assert!(reason(zone).is_some(), "{zone}");
        }
        for zone in ["zen.spamhaus.org", "bl.spamcop.net", "notsorbs.net", "us"] {
            assert_eq!(reason(zone), None, "{zone}");
        }
    }
}
