//! DKIM body hashes computed as the message streams into the spool, so a
//! message is never held whole in memory to be verified: the DKIM-Signature
//! and ARC-Message-Signature headers of the header block say which hashes
//! are wanted (canonicalization, algorithm, length), the body is fed through them piece by piece, and the
//! results replace the hashes mail-auth would compute over a body in memory.

use mail_auth::common::crypto::{HashAlgorithm, HashContext, HashImpl, Sha1, Sha256};
use mail_auth::dkim::canonicalize::BodyHasher;
use mail_auth::dkim::Canonicalization;
use mail_auth::AuthenticatedMessage;

/// The hash context both algorithms use with the ring backend.
type Context = <Sha256 as HashImpl>::Context;

/// One wanted body hash: what it is over, and its running state.
struct Wanted {
    canonicalization: Canonicalization,
    algorithm: HashAlgorithm,
    length: u64,
    hasher: BodyHasher<Context>,
}

/// The body hashes the signatures of one message need, being computed.
pub struct BodyHashes {
    wanted: Vec<Wanted>,
}

/// A finished body hash: canonicalization, algorithm, length limit, digest.
pub type Digest = (Canonicalization, HashAlgorithm, u64, Vec<u8>);

impl BodyHashes {
    /// The hashes the DKIM signatures in `header_block` need (none when
    /// the message is unsigned or its header block does not parse).
    pub fn for_headers(header_block: &[u8]) -> BodyHashes {
        let wanted = AuthenticatedMessage::parse(header_block)
            .map(|parsed| {
                parsed
                    .body_hashes
                    .iter()
                    .map(|(canonicalization, algorithm, length, _)| Wanted {
                        canonicalization: *canonicalization,
                        algorithm: *algorithm,
                        length: *length,
                        hasher: BodyHasher::new(
                            match algorithm {
                                HashAlgorithm::Sha1 => Sha1::hasher(),
                                HashAlgorithm::Sha256 => Sha256::hasher(),
                            },
                            *canonicalization,
                            *length,
                        ),
                    })
                    .collect()
            })
            .unwrap_or_default();
        BodyHashes { wanted }
    }

    /// Feeds the next piece of the body (as received).
    pub fn write(&mut self, body: &[u8]) {
        for w in &mut self.wanted {
            w.hasher.write(body);
        }
    }

    /// The finished digests.
    pub fn finish(self) -> Vec<Digest> {
        self.wanted
            .into_iter()
            .map(|w| {
                let (context, _) = w.hasher.finish();
                (
                    w.canonicalization,
                    w.algorithm,
                    w.length,
                    context.complete().as_ref().to_vec(),
                )
            })
            .collect()
    }
}

/// Puts streamed digests into a message parsed from its header block alone,
/// in place of the hashes of the (absent) body.
pub fn apply(parsed: &mut AuthenticatedMessage<'_>, digests: &[Digest]) {
    for (c, a, l, hash) in &mut parsed.body_hashes {
        if let Some((.., digest)) = digests
            .iter()
            .find(|(dc, da, dl, _)| dc == c && da == a && dl == l)
        {
            hash.clone_from(digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNED: &[u8] = b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.test;\r\n s=sel; h=from; bh=AAAA; b=BBBB\r\nDKIM-Signature: v=1; a=rsa-sha256; c=simple/simple; d=example.test;\r\n s=sel; h=from; bh=AAAA; b=BBBB\r\nFrom: a@example.test\r\n\r\n";

    #[test]
    fn streamed_hashes_equal_those_of_the_whole_message() {
        let body: &[u8] = b"Hello  world \r\n\r\nline\t two\r\n\r\n\r\n";
        let mut whole = SIGNED.to_vec();
        whole.extend_from_slice(body);
        let expected = AuthenticatedMessage::parse(&whole).unwrap().body_hashes;
        assert_eq!(expected.len(), 2);
        for split in 0..=body.len() {
            let mut hashes = BodyHashes::for_headers(SIGNED);
            hashes.write(&body[..split]);
            hashes.write(&body[split..]);
            let mut parsed = AuthenticatedMessage::parse(SIGNED).unwrap();
            apply(&mut parsed, &hashes.finish());
            assert_eq!(parsed.body_hashes, expected, "split at {split}");
        }
    }

    #[test]
    fn an_unsigned_or_empty_header_block_wants_nothing() {
        assert!(BodyHashes::for_headers(b"Subject: x\r\n\r\n")
            .finish()
            .is_empty());
        assert!(BodyHashes::for_headers(b"").finish().is_empty());
    }
}
