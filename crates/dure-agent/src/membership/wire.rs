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

/// The keys a node uses: it seals with one and opens under it or any
/// other it is told to accept (the old or the new key while a rotation
/// rolls out).
#[derive(Debug, Clone)]
pub struct KeyRing {
    seal: DomainKey,
    accept: Vec<DomainKey>,
}

impl KeyRing {
    /// The ring of `keys` as the controller hands them out.
    pub fn of(keys: &dure_api::MembershipKeys) -> Result<KeyRing, KeyError> {
        Ok(KeyRing {
            seal: DomainKey::from_hex(&keys.key)?,
            accept: keys
                .accept
                .iter()
                .map(|k| DomainKey::from_hex(k))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Frames `payload` under the sealing key.
    pub fn seal(&self, kind: Kind, payload: &[u8]) -> Vec<u8> {
        self.seal.seal(kind, payload)
    }

    /// The kind and payload of a datagram authentic under any key of the
    /// ring; `None` for anything else.
    pub fn open<'a>(&self, datagram: &'a [u8]) -> Option<(Kind, &'a [u8])> {
        std::iter::once(&self.seal)
            .chain(&self.accept)
            .find_map(|key| key.open(datagram))
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
    fn a_ring_opens_under_each_of_its_keys_and_seals_under_one() {
        let hex_of = |byte: u8| hex::encode([byte; 32]);
        let ring = KeyRing::of(&dure_api::MembershipKeys {
            key: hex_of(1),
            accept: vec![hex_of(2)],
        })
        .expect("valid keys");
        let sealed = ring.seal(Kind::Swim, b"ping");
        assert_eq!(key(1).open(&sealed), Some((Kind::Swim, &b"ping"[..])));
        assert_eq!(key(2).open(&sealed), None, "only the sealing key seals");
        for byte in [1, 2] {
            let datagram = key(byte).seal(Kind::Leave, b"bye");
            assert_eq!(ring.open(&datagram), Some((Kind::Leave, &b"bye"[..])));
        }
        assert_eq!(
            ring.open(&key(3).seal(Kind::Swim, b"x")),
            None,
            "neither key"
        );
        let bad = dure_api::MembershipKeys {
            key: hex_of(1),
            accept: vec!["abcd".into()],
        };
        assert!(
            KeyRing::of(&bad).is_err(),
            "a bad accepted key refuses the ring"
        );
    }

    #[test]
    fn short_or_non_hex_keys_are_refused() {
        assert_eq!(DomainKey::from_hex("abcd").err(), Some(KeyError(4)));
        assert!(DomainKey::from_hex(&"zz".repeat(32)).is_err());
    }
}
