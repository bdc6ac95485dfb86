//! The verified-token cache: an asymmetric verify costs about a hundred HMACs (Ed25519 ~42 us,
//! ES256 ~58 us against ~0.4 us), and a client presents the same access token many times in its
//! life, so a verifier remembers the tokens it has verified, until their `exp`.
//!
//! - **Keyed by the exact bytes**: the key is the SHA-256 of the whole compact token, so only a
//!   token byte for byte equal to one that passed a full verify is a hit. Malleability cannot
//!   reach it (a re-encoded signature, a high-S twin, another header spelling are other bytes,
//!   and take the full path, which refuses them); SHA-256's collision resistance is what makes
//!   the hash stand for the bytes.
//! - **Only verified tokens are entered**: an entry is made after signature, header and every
//!   claim check has passed and the token is within its lifetime; refusals are never cached.
//! - **Keys still decide**: each entry remembers the `kid` that verified it, and a hit counts only
//!   while that key is in the current key set; a key pruned from the directory, or gone from the
//!   issuer's JWKS, stops its cached tokens at once.
//! - **Revocation is not cached**: the denylist is asked on every request, hit or miss.
//! - **Bounded**: at most the configured number of entries, in 16 shards (each behind its own
//!   lock, held for one map operation). A full shard first drops its expired entries and, if
//!   still full, empties itself: a simplification (a production cache would evict the least
//!   recently used entry, as `moka` does) that keeps every insert O(1) amortized.
//!
//! HS256 tokens are not cached: their HMAC check costs about what the lookup would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;

const SHARDS: usize = 16;

/// What a verified token said, owned.
pub(crate) struct Verified {
    pub(crate) kid: String,
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) exp: u64,
    pub(crate) nbf: Option<u64>,
    pub(crate) iat: u64,
    pub(crate) jti: String,
    pub(crate) fam: String,
    pub(crate) username: String,
    pub(crate) user_id: i64,
}

/// The cache's key for a token: SHA-256 of its bytes.
pub(crate) type TokenHash = [u8; 32];

pub(crate) fn token_hash(token: &str) -> TokenHash {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
    out
}

/// One shard: verified tokens by the hash of their bytes.
type Shard = Mutex<HashMap<TokenHash, Arc<Verified>>>;

/// Verified tokens by the hash of their bytes (see the module documentation).
pub(crate) struct VerifiedCache {
    shards: Box<[Shard]>,
    per_shard: usize,
}

impl VerifiedCache {
    /// A cache of at most `entries` tokens; `None` for 0 (off).
    pub(crate) fn new(entries: usize) -> Option<Self> {
        if entries == 0 {
            return None;
        }
        Some(Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: entries.div_ceil(SHARDS),
        })
    }

    fn shard(&self, hash: &TokenHash) -> &Shard {
        &self.shards[usize::from(hash[0]) % SHARDS]
    }

    pub(crate) fn get(&self, hash: &TokenHash) -> Option<Arc<Verified>> {
        let shard = self.shard(hash).lock().unwrap_or_else(|e| e.into_inner());
        shard.get(hash).cloned()
    }

    pub(crate) fn remove(&self, hash: &TokenHash) {
        let mut shard = self.shard(hash).lock().unwrap_or_else(|e| e.into_inner());
        shard.remove(hash);
    }

    /// Enters a token that has just passed a full verify at `now`.
    pub(crate) fn insert(&self, hash: TokenHash, verified: Verified, now: u64) {
        let mut shard = self.shard(&hash).lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.per_shard && !shard.contains_key(&hash) {
            shard.retain(|_, v| v.exp > now);
            if shard.len() >= self.per_shard {
                shard.clear();
            }
        }
        shard.insert(hash, Arc::new(verified));
    }

    /// How many tokens it holds now.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(exp: u64) -> Verified {
        Verified {
            kid: "k".into(),
            iss: "authlab".into(),
            sub: "1".into(),
            exp,
            nbf: None,
            iat: 0,
            jti: "j".into(),
            fam: "f".into(),
            username: "u".into(),
            user_id: 1,
        }
    }

    #[test]
    fn it_never_holds_more_than_its_bound_and_drops_expired_entries_first() {
        let cache = VerifiedCache::new(32).unwrap();
        for i in 0..10_000u32 {
            cache.insert(token_hash(&i.to_string()), verified(100), 50);
            assert!(cache.len() <= 32, "{}", cache.len());
        }
        assert!(VerifiedCache::new(0).is_none());
        // A shard full of expired entries keeps the live one it is given.
        let cache = VerifiedCache::new(SHARDS).unwrap();
        let same_shard: Vec<TokenHash> = (0..10_000u32)
            .map(|i| token_hash(&i.to_string()))
            .filter(|h| usize::from(h[0]) % SHARDS == 0)
            .take(3)
            .collect();
        cache.insert(same_shard[0], verified(10), 5);
        cache.insert(same_shard[1], verified(100), 50);
        assert!(cache.get(&same_shard[0]).is_none());
        assert!(cache.get(&same_shard[1]).is_some());
    }
}
