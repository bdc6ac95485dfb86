//! Random ids and tokens: session ids, opaque access tokens, refresh secrets, family ids, `jti`s.
//!
//! They come from `rand`'s thread-local generator ([`rand::rng`]), not from one system call each:
//!
//! - **It is a CSPRNG.** `ThreadRng` is ChaCha12, a stream cipher's keystream, seeded with 32 bytes
//!   from the operating system (`getrandom`) on first use in each thread and reseeded from it
//!   again after every 64 KiB of output. Predicting its next output without the key means
//!   breaking ChaCha, the same assumption TLS makes; the kernel's own generator is a ChaCha20
//!   keystream seeded the same way. What changes is where the keystream is computed: in this
//!   process instead of behind a system call (measured in `docs/backends.md`: `session/issue`
//!   and `redis/issue` before and after).
//! - **Enough entropy.** OWASP asks for at least 64 bits of entropy in a session id (its Session
//!   Management Cheat Sheet) and ASVS 5.0 for 128 bits in a reference token: the ids here carry
//!   96 (a session's public handle), 122 (UUID v4) or 128 to 256 bits, each bit drawn from a
//!   256-bit key.
//! - **What it does not cover.** The state lives in process memory, so someone who can read this
//!   process's memory could predict ids until the next reseed; but that attacker can already read
//!   every live session and key. A forked child would share the parent's stream: authlab never
//!   forks. If the OS cannot seed or reseed the generator (on Linux `getrandom(2)` only waits for
//!   the kernel's pool at boot, it does not fail after that), `rand` panics rather than hand out
//!   a predictable id: the request fails, no weak credential is issued.
//!
//! Long-lived keys (the JWT secret of `--jwt-secret generate`) still come straight from the OS:
//! they are made once, so speed does not matter there.

use rand::RngCore as _;

/// `N` bytes from the thread-local CSPRNG (see the module documentation).
pub fn bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ_and_use_every_byte_value() {
        let a: [u8; 32] = bytes();
        let b: [u8; 32] = bytes();
        assert_ne!(a, b);
        let mut seen = [false; 256];
        for _ in 0..512 {
            for byte in bytes::<32>() {
                seen[usize::from(byte)] = true;
            }
        }
        assert!(
            seen.iter().all(|&s| s),
            "16 KiB of output covers every byte value"
        );
    }
}
