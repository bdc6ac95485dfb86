//! How strong an HS256 secret is, judged once at start-up.
//!
//! Anyone who guesses the HMAC key can sign tokens as any user, and a JWT gives an attacker all
//! they need to test guesses offline (RFC 8725 §3.5: "human-memorizable passwords MUST NOT be
//! directly used as the key"). So [`check`] refuses, in this order:
//!
//! 1. a key shorter than [`MIN_SECRET_LEN`](crate::MIN_SECRET_LEN) bytes (RFC 7518 §3.2);
//! 2. a **published** secret: one on the list in `weak_secrets.txt` (documentation examples,
//!    framework defaults, the first entries of JWT-cracking wordlists), compared ignoring ASCII case
//!    and surrounding whitespace;
//! 3. a **regular** secret: one byte or one short pattern repeated (`aaaa...`, `abcabc...`), or a
//!    run of sequences (`1234567890123...`, `abcdef...xyz012345`, keyboard rows);
//! 4. a published secret dressed up to reach 32 bytes: repeated (`your-256-bit-secretyour-256-b`)
//!    or padded at either end with digits, punctuation, spaces or one repeated character
//!    (`changeme!!!!...`, `supersecret_2024_...`);
//! 5. anything whose **estimated entropy** is under [`MIN_SECRET_BITS`] (128 bits, the security
//!    level ASVS and NIST SP 800-57 ask of a symmetric key).
//!
//! # The estimator
//! [`estimate_bits`] is the smaller of two descriptions of the secret, in bits:
//! - *by alphabet*: length times log2 of the alphabet the secret's bytes come from: digits (10),
//!   hexadecimal (16, one case), lower and upper letters (26 each), the three base64 specials
//!   (`+/=` or `-_=`, 3), any other printable ASCII (33 more), and 256 as soon as one byte is not
//!   printable ASCII. `head -c 48 /dev/urandom | base64` gives 64 characters at ~6 bits: ~385 bits;
//!   32 random bytes give 256.
//! - *by structure*: the cheapest parse of the secret into literals (alphabet bits + 1), copies of
//!   an earlier stretch (LZ77: 2 bits + log2 of the offset + log2 of the length) and sequences
//!   (2 bits + the first character + log2 of which of 7 orders and 4 steps + log2 of the length).
//!   Each literal pays one bit for "this is a literal", so a random secret with an accidental
//!   3-byte repeat keeps its alphabet estimate, while 32 `a`s cost 13 bits.
//!
//! It is an upper bound on what an attacker who guesses by alphabet, repetition and sequence
//! must try, not a measure of how the secret was made: it cannot see that a secret is an English
//! sentence, a date or a name, and it credits a random part beside a word as if all were random.
//! Only a generator gives a strong key; the message of every refusal says how to run one. Keys
//! longer than 4 KiB are judged by their first 4 KiB (a prefix never has more entropy).

use std::collections::HashSet;
use std::sync::LazyLock;

use crate::{JwtError, MIN_SECRET_LEN};

/// The least estimated entropy a secret must have, in bits.
pub const MIN_SECRET_BITS: u32 = 128;

/// The longest prefix of a secret the estimator reads.
const ANALYSED: usize = 4096;

/// The published secrets, lower-cased and trimmed.
static PUBLISHED: LazyLock<HashSet<Vec<u8>>> = LazyLock::new(|| {
    include_str!("weak_secrets.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.as_bytes().to_ascii_lowercase())
        .collect()
});

/// Refuses a secret that is too short, published, regular or of low estimated entropy.
pub(crate) fn check(secret: &[u8]) -> Result<(), JwtError> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(JwtError::SecretTooShort { len: secret.len() });
    }
    // A listed secret as it is, then the shapes (a listed secret repeated many times is also a
    // short pattern repeated: that is the more telling reason), then listed ones dressed up.
    let lower = secret.trim_ascii().to_ascii_lowercase();
    if listed(&lower) {
        return Err(JwtError::SecretPublished);
    }
    if let Some(pattern) = regularity(secret) {
        return Err(JwtError::SecretTooRegular { pattern });
    }
    if is_dressed_up(&lower) {
        return Err(JwtError::SecretPublished);
    }
    let bits = estimate_bits(secret);
    if bits < f64::from(MIN_SECRET_BITS) {
        // Truncation is the honest rounding here: 127.9 bits is not 128.
        return Err(JwtError::SecretLowEntropy { bits: bits as u32 });
    }
    Ok(())
}

/// Whether `lower` (trimmed, lower-cased) is a listed secret repeated or padded.
fn is_dressed_up(lower: &[u8]) -> bool {
    // Padding is a run of digits, punctuation and spaces, or of one repeated byte, at either end.
    // Trying every split of at most 64 bytes of padding on each side is cheap at start-up.
    let n = lower.len();
    let starts = (0..=n.min(64)).take_while(|&j| is_padding(&lower[..j]));
    for j in starts {
        let ends = (n.saturating_sub(64)..=n)
            .rev()
            .take_while(|&k| k > j && is_padding(&lower[k..]));
        for k in ends {
            // Longer stretches are not published secrets padded, whatever they are.
            if k - j > 1024 {
                continue;
            }
            if listed(&lower[j..k]) || listed(unit(&lower[j..k])) {
                return true;
            }
        }
    }
    false
}

fn listed(candidate: &[u8]) -> bool {
    !candidate.is_empty() && PUBLISHED.contains(candidate)
}

/// Digits, punctuation and spaces only, or one byte repeated (empty counts as padding).
fn is_padding(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| !b.is_ascii_alphabetic()) || bytes.iter().all(|b| Some(b) == bytes.first())
}

/// The repeated unit of `bytes` (`secret-` in `secret-secret-secr`), without separators at its
/// ends; `bytes` itself when it does not repeat.
fn unit(bytes: &[u8]) -> &[u8] {
    let unit = &bytes[..period(bytes)];
    let start = unit
        .iter()
        .position(u8::is_ascii_alphanumeric)
        .unwrap_or(unit.len());
    let end = unit
        .iter()
        .rposition(u8::is_ascii_alphanumeric)
        .map_or(start, |i| i + 1);
    &unit[start..end]
}

/// The smallest `p` such that every byte equals the one `p` before it (the length when none).
fn period(bytes: &[u8]) -> usize {
    // The prefix function of Knuth-Morris-Pratt: the longest border gives the smallest period.
    let mut border = vec![0usize; bytes.len()];
    for i in 1..bytes.len() {
        let mut k = border[i - 1];
        while k > 0 && bytes[i] != bytes[k] {
            k = border[k - 1];
        }
        if bytes[i] == bytes[k] {
            k += 1;
        }
        border[i] = k;
    }
    bytes.len() - border.last().copied().unwrap_or(0)
}

/// Why `secret` is too regular to be a key, if it is.
fn regularity(secret: &[u8]) -> Option<&'static str> {
    let bytes = &secret[..secret.len().min(ANALYSED)];
    let p = period(bytes);
    if p == 1 {
        return Some("one byte repeated");
    }
    if p * 2 <= bytes.len() {
        return Some("a short pattern repeated");
    }
    // Sequences of at least 4 bytes covering nine tenths of the secret.
    let mut covered = 0;
    let mut i = 0;
    while i < bytes.len() {
        match sequence_at(bytes, i) {
            len if len >= 4 => {
                covered += len;
                i += len;
            }
            _ => i += 1,
        }
    }
    (covered * 10 >= bytes.len() * 9).then_some("a run of sequences")
}

/// Orders a human (or a cracking tool) counts along: digits, letters, hex, keyboard rows.
const ORDERS: [&[u8]; 7] = [
    b"0123456789",
    b"abcdefghijklmnopqrstuvwxyz",
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    b"0123456789abcdef",
    b"0123456789ABCDEF",
    b"qwertyuiopasdfghjklzxcvbnm",
    b"QWERTYUIOPASDFGHJKLZXCVBNM",
];
/// Steps along an order: forwards and backwards, by one or by two.
const STEPS: [isize; 4] = [1, -1, 2, -2];

/// Length of the longest sequence starting at `i` (each byte `step` after the previous one in
/// one of [`ORDERS`], wrapping round); 1 when there is none.
fn sequence_at(bytes: &[u8], i: usize) -> usize {
    let mut best = 1;
    for order in ORDERS {
        let Some(mut at) = order.iter().position(|&c| c == bytes[i]) else {
            continue;
        };
        let start = at;
        for step in STEPS {
            at = start;
            let mut len = 1;
            while let Some(&next) = bytes.get(i + len) {
                at = (at as isize + step).rem_euclid(order.len() as isize) as usize;
                if order[at] != next {
                    break;
                }
                len += 1;
            }
            best = best.max(len);
        }
    }
    best
}

/// log2 of the alphabet `bytes` come from (see the module documentation).
fn alphabet_bits(bytes: &[u8]) -> f64 {
    if bytes.iter().any(|&b| !(b' '..=b'~').contains(&b)) {
        return 8.0;
    }
    let has = |f: fn(&u8) -> bool| bytes.iter().any(f);
    let all = |f: fn(&u8) -> bool| bytes.iter().all(f);
    if all(u8::is_ascii_digit) {
        return 10f64.log2();
    }
    if all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        || all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b))
    {
        return 4.0;
    }
    let mut size = 0.0;
    for (present, count) in [
        (has(u8::is_ascii_digit), 10.0),
        (has(u8::is_ascii_lowercase), 26.0),
        (has(u8::is_ascii_uppercase), 26.0),
    ] {
        if present {
            size += count;
        }
    }
    let symbols = |b: &u8| !b.is_ascii_alphanumeric();
    if has(symbols) {
        let base64 = all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b))
            || all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(b));
        size += if base64 { 3.0 } else { 33.0 };
    }
    f64::log2(size)
}

/// Estimated entropy of `secret` in bits (see the module documentation).
pub(crate) fn estimate_bits(secret: &[u8]) -> f64 {
    let bytes = &secret[..secret.len().min(ANALYSED)];
    let n = bytes.len();
    if n == 0 {
        return 0.0;
    }
    let per_char = alphabet_bits(bytes);
    let by_alphabet = per_char * n as f64;

    let log_n = (n as f64).log2();
    let literal = per_char + 1.0;
    let sequence = 2.0 + per_char + ((ORDERS.len() * STEPS.len()) as f64).log2() + log_n;
    // cost[i]: the cheapest description of bytes[i..], filled from the end.
    let mut cost = vec![0.0f64; n + 1];
    for i in (0..n).rev() {
        let mut best = literal + cost[i + 1];
        let run = sequence_at(bytes, i);
        if run >= 3 {
            best = best.min(sequence + cost[i + run]);
        }
        let copy = longest_copy(bytes, i);
        if copy >= 3 {
            let offset_bits = (i as f64).log2().max(1.0);
            best = best.min(2.0 + offset_bits + log_n + cost[i + copy]);
        }
        cost[i] = best;
    }
    by_alphabet.min(cost[0])
}

/// Length of the longest stretch starting at `i` that also starts at some `j < i` (the two may
/// overlap, as in LZ77: `aaaa` is `a` then a copy of 3 from one back).
fn longest_copy(bytes: &[u8], i: usize) -> usize {
    let rest = bytes.len() - i;
    let mut best = 0;
    for j in (0..i).rev() {
        let len = bytes[j..]
            .iter()
            .zip(&bytes[i..])
            .take_while(|(a, b)| a == b)
            .count();
        best = best.max(len);
        if best == rest {
            break;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(secret: &[u8]) -> Option<JwtError> {
        check(secret).err()
    }

    #[test]
    fn a_secret_from_the_jwt_debugger_is_refused_as_published() {
        for secret in [
            "a-string-secret-at-least-256-bits-long",
            "A-STRING-SECRET-AT-LEAST-256-BITS-LONG",
            "a-string-secret-at-least-256-bits-long\n",
            "  a-string-secret-at-least-256-bits-long \r\n",
            "09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7",
            "404E635266556A586E3272357538782F413F4428472B4B6250645367566B5970",
            "super-secret-jwt-token-with-at-least-32-characters-long",
            "reallyreallyreallyreallyverysafe",
        ] {
            assert!(
                matches!(refusal(secret.as_bytes()), Some(JwtError::SecretPublished)),
                "{secret:?}"
            );
        }
    }

    #[test]
    fn a_listed_secret_repeated_or_padded_to_32_bytes_is_refused_as_published() {
        for secret in [
            "your-256-bit-secretyour-256-bit-",
            "your_jwt_secret_key your_jwt_sec",
            "your-256-bit-secret0000000000000",
            "changeme!!!!!!!!!!!!!!!!!!!!!!!!!!",
            "supersecret_2024_2024_2024_2024_",
            "jwt_secretxxxxxxxxxxxxxxxxxxxxxxxxx",
            "################your_jwt_secret##",
            "MySecretKey1234567890123456789012",
            "shhhhh                               ",
        ] {
            assert!(
                matches!(refusal(secret.as_bytes()), Some(JwtError::SecretPublished)),
                "{secret:?}: {:?}",
                refusal(secret.as_bytes())
            );
        }
    }

    #[test]
    fn every_entry_of_the_list_is_refused_padded_to_32_bytes() {
        for entry in include_str!("weak_secrets.txt")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let padded = format!("{entry:0<40}");
            assert!(
                matches!(refusal(padded.as_bytes()), Some(JwtError::SecretPublished)),
                "{padded:?}: {:?}",
                refusal(padded.as_bytes())
            );
        }
    }

    #[test]
    fn a_repeated_byte_or_short_pattern_is_refused_as_too_regular() {
        for (secret, pattern) in [
            ("a".repeat(32), "one byte repeated"),
            ("\0".repeat(64), "one byte repeated"),
            ("abc".repeat(11), "a short pattern repeated"),
            ("0123456789abcdef".repeat(2), "a short pattern repeated"),
            ("Tr0ub4dor&3".repeat(3), "a short pattern repeated"),
        ] {
            match refusal(secret.as_bytes()) {
                Some(JwtError::SecretTooRegular { pattern: found }) => {
                    assert_eq!(found, pattern, "{secret:?}")
                }
                other => panic!("{secret:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn sequences_and_keyboard_walks_are_refused_as_too_regular() {
        for secret in [
            "1234567890123456789abcdefghijklm",
            "abcdefghijklmnopqrstuvwxyz012345",
            "zyxwvutsrqponmlkjihgfedcba987654",
            "ZXCVBNMASDFGHJKLQWERTYUIOP13579135",
            "acegikmoqsuwyACEGIKMOQSUWY02468024",
        ] {
            assert!(
                matches!(
                    refusal(secret.as_bytes()),
                    Some(JwtError::SecretTooRegular {
                        pattern: "a run of sequences"
                    })
                ),
                "{secret:?}: {:?}",
                refusal(secret.as_bytes())
            );
        }
    }

    #[test]
    fn a_secret_under_128_estimated_bits_is_refused_with_its_estimate() {
        for secret in [
            // The literal this crate's tests used to sign with: a word, then a hex count twice.
            &b"test-secret-0123456789abcdef0123456789abcdef"[..],
            b"bench-secret-0123456789abcdef0123456789abcdef",
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
            // 32 hexadecimal digits of which only 16 vary: 64 bits.
            b"00000000000000003f9a1c77e2b04d58",
        ] {
            match refusal(secret) {
                Some(JwtError::SecretLowEntropy { bits }) => {
                    assert!(bits < MIN_SECRET_BITS, "{bits}");
                    let message = JwtError::SecretLowEntropy { bits }.to_string();
                    assert!(message.contains("128 bits"), "{message}");
                }
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(secret)),
            }
        }
    }

    #[test]
    fn random_secrets_as_the_docs_make_them_pass() {
        // `head -c 48 /dev/urandom | base64`, `openssl rand -hex 32`, 32 raw random bytes.
        let mut raw = [0u8; 48];
        for _ in 0..200 {
            getrandom::fill(&mut raw).unwrap();
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
            assert_eq!(check(b64.as_bytes()).ok(), Some(()), "{b64}");
            let hex: String = raw[..32].iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(check(hex.as_bytes()).ok(), Some(()), "{hex}");
            assert_eq!(check(&raw[..32]).ok(), Some(()), "{:?}", &raw[..32]);
            assert!(estimate_bits(b64.as_bytes()) > 350.0);
        }
    }

    #[test]
    fn the_estimate_follows_the_alphabet_for_random_looking_secrets() {
        assert_eq!(alphabet_bits(b"0123"), 10f64.log2());
        assert_eq!(alphabet_bits(b"09af"), 4.0);
        assert_eq!(alphabet_bits(b"azAZ09+/"), 65f64.log2());
        assert_eq!(alphabet_bits(b"azAZ09-_"), 65f64.log2());
        assert_eq!(alphabet_bits(b"az!"), 59f64.log2());
        assert_eq!(alphabet_bits(b"az\x01"), 8.0);
        assert_eq!(estimate_bits(b"k7Qz"), 4.0 * 62f64.log2());
    }

    #[test]
    fn the_estimate_of_a_long_repetitive_secret_stays_small() {
        let secret = "x".repeat(ANALYSED * 2);
        assert!(estimate_bits(secret.as_bytes()) < 40.0);
    }
}
