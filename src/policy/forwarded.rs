//! Forwarded mail, which breaks SPF and often DKIM: the forwarders
//! (`checks.forwarders`) whose mail skips the SPF refusal, known by the
//! client's network or by its forward-confirmed name; and the ARC sealers
//! (`checks.arc_trusted_sealers`) whose valid chain (RFC 8617) turns a
//! DMARC failure into a warning.

use super::checks::Checks;
use crate::dns::{Answer, ArcChain};
use std::net::IpAddr;

impl Checks {
    /// The forwarders' entry `client` is under, if any: its network, or
    /// a domain its forward-confirmed reverse name is under (looked up
    /// only when the file names a domain). A lookup that fails finds none.
    pub(super) async fn forwarder(&self, client: IpAddr) -> Option<String> {
        let entries = self.forwarders.as_ref()?.current(&self.log);
        if let Some(entry) = entries.by_network(client) {
            return Some(entry);
        }
        if !entries.has_domains() {
            return None;
        }
        let Answer::Found(names) = self.dns.ptr(client).await else {
            return None;
        };
        let Answer::Found(name) = self.dns.confirm(client, &names).await else {
            return None;
        };
        entries.by_name(&name)
    }
}

/// The sealer that vouches for a message: the domain of the latest seal
/// of a valid ARC chain, when it is one of `trusted` (normalized domains);
/// a broken chain, or none, vouches for nothing.
pub fn vouching_sealer<'a>(arc: &'a ArcChain, trusted: &[String]) -> Option<&'a str> {
    match arc {
        ArcChain::Pass { sealer } => {
            let sealer = sealer.as_str();
            trusted
                .iter()
                .any(|t| t.eq_ignore_ascii_case(sealer.trim_end_matches('.')))
                .then_some(sealer)
        }
        ArcChain::Fail(_) | ArcChain::None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(sealer: &str) -> ArcChain {
        ArcChain::Pass {
            sealer: sealer.into(),
        }
    }

    #[test]
    fn a_valid_chain_sealed_last_by_a_trusted_domain_vouches() {
        let trusted = vec!["lists.example".to_string()];
        assert_eq!(
            vouching_sealer(&pass("Lists.Example"), &trusted),
            Some("Lists.Example")
        );
    }

    #[test]
    fn a_valid_chain_sealed_last_by_another_domain_vouches_for_nothing() {
        let trusted = vec!["lists.example".to_string()];
        assert_eq!(vouching_sealer(&pass("sub.lists.example"), &trusted), None);
        assert_eq!(vouching_sealer(&pass("lists.example"), &[]), None);
    }

    #[test]
    fn a_broken_chain_or_none_vouches_for_nothing_even_from_a_trusted_sealer() {
        let trusted = vec!["lists.example".to_string()];
        let broken = ArcChain::Fail(mail_auth::Error::Arc(mail_auth::arc::ArcError::BrokenChain));
        assert_eq!(vouching_sealer(&broken, &trusted), None);
        assert_eq!(vouching_sealer(&ArcChain::None, &trusted), None);
    }
}
