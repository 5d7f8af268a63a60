//! The membership packet format: every UDP datagram between agents is
//! `DMB1 | kind | payload | tag`, the tag being the first 16 bytes of
//! HMAC-SHA256 under the domain key over everything before it. A datagram
//! that is too short, has another magic or kind, or whose tag does not
//! verify is refused whole (and counted by the caller): nothing of it
//! reaches the detector.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Marks a Dure membership datagram, version 1 of the format.
const MAGIC: &[u8; 4] = b"DMB1";
/// Bytes of the truncated HMAC-SHA256 tag (128 bits, as RFC 2104 allows).
pub const TAG_LEN: usize = 16;
/// What the frame adds to a payload.
pub const OVERHEAD: usize = MAGIC.len() + 1 + TAG_LEN;
/// The largest datagram sent or accepted: below a LAN's 1500-byte MTU.
pub const MAX_DATAGRAM: usize = 1400;

/// What a datagram carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A SWIM message of the detector.
    Swim,
    /// "I am leaving": the sender's identity, so receivers mark it INACTIVE
    /// instead of waiting to find it FAILED.
    Leave,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Swim => 1,
            Kind::Leave => 2,
        }
    }
    fn of(byte: u8) -> Option<Kind> {
        match byte {
            1 => Some(Kind::Swim),
            2 => Some(Kind::Leave),
            _ => None,
        }
    }
}

/// The domain key packets are authenticated with.
#[derive(Clone)]
pub struct DomainKey(Vec<u8>);

/// Why a key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the membership key must be at least 32 bytes written as hex; got {0} characters")]
pub struct KeyError(pub usize);

impl DomainKey {
    /// Reads a key written as hex (at least 32 bytes).
    pub fn from_hex(text: &str) -> Result<DomainKey, KeyError> {
        let text = text.trim();
        match hex::decode(text) {
            Ok(bytes) if bytes.len() >= 32 => Ok(DomainKey(bytes)),
            _ => Err(KeyError(text.len())),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }

    /// Frames `payload` as a datagram of `kind`.
    pub fn seal(&self, kind: Kind, payload: &[u8]) -> Vec<u8> {
        let mut datagram = Vec::with_capacity(payload.len() + OVERHEAD);
        datagram.extend_from_slice(MAGIC);
        datagram.push(kind.byte());
        datagram.extend_from_slice(payload);
        let mut mac = self.mac();
        mac.update(&datagram);
        let tag = mac.finalize().into_bytes();
        datagram.extend_from_slice(&tag[..TAG_LEN]);
        datagram
    }

    /// The kind and payload of an authentic datagram; `None` for anything
    /// else.
    pub fn open<'a>(&self, datagram: &'a [u8]) -> Option<(Kind, &'a [u8])> {
        if datagram.len() < OVERHEAD || datagram.len() > MAX_DATAGRAM {
            return None;
        }
        let (signed, tag) = datagram.split_at(datagram.len() - TAG_LEN);
        if &signed[..MAGIC.len()] != MAGIC {
            return None;
        }
        let mut mac = self.mac();
        mac.update(signed);
        // Constant time: a forger learns nothing from how fast it is refused.
        mac.verify_truncated_left(tag).ok()?;
        let kind = Kind::of(signed[MAGIC.len()])?;
        Some((kind, &signed[MAGIC.len() + 1..]))
    }
}

impl std::fmt::Debug for DomainKey {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DomainKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> DomainKey {
        DomainKey::from_hex(&hex::encode([byte; 32])).expect("32 bytes")
    }

    #[test]
    fn a_sealed_datagram_opens_under_the_same_key_only() {
        let datagram = key(1).seal(Kind::Swim, b"probe");
        assert_eq!(key(1).open(&datagram), Some((Kind::Swim, &b"probe"[..])));
        assert_eq!(key(2).open(&datagram), None);
    }

    #[test]
    fn any_changed_byte_or_truncation_is_refused() {
        let datagram = key(1).seal(Kind::Leave, b"node-a");
        for i in 0..datagram.len() {
            let mut bad = datagram.clone();
            bad[i] ^= 0x40;
            assert_eq!(key(1).open(&bad), None, "byte {i} changed");
        }
        for len in 0..datagram.len() {
            assert_eq!(key(1).open(&datagram[..len]), None, "cut at {len}");
        }
        assert_eq!(key(1).open(&vec![0u8; MAX_DATAGRAM + 1]), None);
    }

    #[test]
    fn short_or_non_hex_keys_are_refused() {
        assert_eq!(DomainKey::from_hex("abcd").err(), Some(KeyError(4)));
        assert!(DomainKey::from_hex(&"zz".repeat(32)).is_err());
    }
}
