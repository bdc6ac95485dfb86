//! The opaque access token: how it is made, how a presented one is read, and the hash that stands
//! for it in Redis.
//!
//! Redis never holds a token, only `hex(SHA-256(token))`: in the key `<prefix>tok:<hash>` and in
//! the family's `acc` set. A dump of Redis, a replica, a backup or `MONITOR` therefore yields
//! nothing a client could present. A plain, fast hash is enough (no salt, no key, no argon2): a
//! token carries 122 or 256 random bits, so there is nothing to guess that hashing slowly would
//! protect; SHA-256 of a 36-to-43-byte token is one compression block (about 87 ns with SHA
//! extensions, measured by `cargo bench --bench costs`), on a path whose Redis round trip costs
//! tens of microseconds.

use authlab_core::{AuthError, random};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use uuid::Builder;

/// Length of a canonical UUID: 32 lower-case hex digits and four hyphens.
const UUID_LEN: usize = 36;
/// Length of 32 random bytes as unpadded base64url.
const RANDOM256_LEN: usize = 43;
/// Length of a token's hash as the keys write it: SHA-256 in lower-case hex.
pub(crate) const HASH_LEN: usize = 64;

/// How the redis backend writes the access tokens it issues (`--redis-token-format`).
///
/// Both formats are accepted on every request whatever is configured, each in its one exact
/// shape, so a change of format (or instances that differ during a rolling deploy) logs nobody
/// out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenFormat {
    /// A UUID v4 in its canonical form (36 characters): 122 random bits. The default, as the
    /// design card asks.
    #[default]
    Uuid,
    /// 32 bytes from a CSPRNG as unpadded base64url (43 characters): 256
    /// random bits. OWASP ASVS 5.0 asks for at least 128 bits of entropy in a reference token,
    /// which a UUID v4 (122) falls just short of.
    Random256,
}

impl TokenFormat {
    /// A fresh token in this format.
    pub(crate) fn generate(self) -> Result<String, AuthError> {
        match self {
            // UUID v4: 122 random bits from the thread-local CSPRNG ([`random`]); the builder
            // overwrites the six version and variant bits.
            TokenFormat::Uuid => Ok(Builder::from_random_bytes(random::bytes())
                .into_uuid()
                .hyphenated()
                .to_string()),
            TokenFormat::Random256 => Ok(URL_SAFE_NO_PAD.encode(random::bytes::<32>())),
        }
    }
}

/// Whether `token` has exactly the shape of a token we issue, in either format. Anything else is
/// refused before Redis is asked, so a malformed token costs no round trip.
pub(crate) fn is_well_formed(token: &str) -> bool {
    match token.len() {
        UUID_LEN => is_canonical_uuid(token.as_bytes()),
        RANDOM256_LEN => is_random256(token.as_bytes()),
        _ => false,
    }
}

/// The canonical UUID form we write: lower-case hex, hyphens at 8, 13, 18 and 23.
fn is_canonical_uuid(token: &[u8]) -> bool {
    token.len() == UUID_LEN
        && token.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// 43 base64url characters whose last one carries only the final 4 bits of the 32 bytes (its
/// two low bits are zero), so each 32-byte value has exactly one spelling.
fn is_random256(token: &[u8]) -> bool {
    let Some((&last, body)) = token.split_last() else {
        return false;
    };
    token.len() == RANDOM256_LEN
        && body
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && b"AEIMQUYcgkosw048".contains(&last)
}

/// Appends `hex(SHA-256(token))` to `out`.
pub(crate) fn push_hash(out: &mut String, token: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(HASH_LEN);
    for byte in Sha256::digest(token.as_bytes()) {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
}

/// `hex(SHA-256(token))`: what stands for a token in Redis (its key and its family's members).
/// Public so that `cargo bench --bench costs` measures the very function verify runs.
pub fn hash(token: &str) -> String {
    let mut out = String::with_capacity(HASH_LEN);
    push_hash(&mut out, token);
    out
}

/// Whether `text` has the shape of a hash we store (64 lower-case hex digits).
pub(crate) fn is_hash(text: &str) -> bool {
    text.len() == HASH_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_uuid_form_is_accepted() {
        let token = uuid::Uuid::new_v4();
        let canonical = token.hyphenated().to_string();
        assert!(is_well_formed(&canonical));
        for other in [
            canonical.to_uppercase(),
            token.simple().to_string(),
            token.braced().to_string(),
            token.urn().to_string(),
            canonical.replacen('-', "_", 1),
            format!("{}g", &canonical[..35]),
            format!("{canonical} "),
            String::new(),
            "not-a-uuid".to_owned(),
        ] {
            assert!(!is_well_formed(&other), "{other:?} must be refused");
        }
    }

    #[test]
    fn random256_tokens_are_43_base64url_characters_with_one_spelling_per_value() {
        for _ in 0..64 {
            let token = TokenFormat::Random256.generate().unwrap();
            assert_eq!(token.len(), 43);
            assert!(is_well_formed(&token), "{token}");
            assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap().len(), 32);
        }
        let zeros = URL_SAFE_NO_PAD.encode([0u8; 32]);
        assert_eq!(zeros, "A".repeat(43));
        let ones = URL_SAFE_NO_PAD.encode([0xffu8; 32]);
        assert!(is_well_formed(&ones), "{ones}");
        for bad in [
            "A".repeat(42),
            "A".repeat(44),
            format!("{}=", "A".repeat(42)),
            format!("{}+", "A".repeat(42)),
            format!("{}/", "A".repeat(42)),
            format!("+{}", "A".repeat(42)),
            format!("{}.", "A".repeat(42)),
            format!("{}é", "A".repeat(41)),
            // The same 32 bytes with stray bits in the last character: not our spelling.
            format!("{}B", "A".repeat(42)),
            format!("{}9", &ones[..42]),
        ] {
            assert!(!is_well_formed(&bad), "{bad:?} must be refused");
        }
    }

    #[test]
    fn both_formats_are_accepted_whichever_is_issued() {
        for format in [TokenFormat::Uuid, TokenFormat::Random256] {
            let token = format.generate().unwrap();
            assert!(is_well_formed(&token), "{format:?}: {token}");
        }
        assert_eq!(TokenFormat::default(), TokenFormat::Uuid);
    }

    #[test]
    fn the_stored_hash_is_hex_sha256_of_the_token() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let token = TokenFormat::Uuid.generate().unwrap();
        let stored = hash(&token);
        assert!(is_hash(&stored));
        assert!(!stored.contains(&token));
        assert!(!is_hash(&token));
        assert!(!is_hash(&stored.to_uppercase()));
    }
}
