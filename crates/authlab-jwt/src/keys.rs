//! Asymmetric signing keys (EdDSA, ES256): a directory of keys, their life cycle, and the
//! public half every verifier may see (the JWKS).
//!
//! With HS256 whoever verifies a token can also mint one. With a key pair only the holder of the
//! private key signs, and the public key can be published (`/.well-known/jwks.json`). The price
//! is the verify: an Ed25519 check costs about a hundred HMACs.
//!
//! # The directory
//! One PKCS#8 file per key, `<kid>.pk8`, mode `0600`: a key file that its group or the world can
//! read (or write) is refused, as `ssh` refuses such a private key. Beside them, [`STATE_FILE`]
//! (`keys.json`) lists each key with its algorithm, its [`KeyState`] and its times. Every write is
//! a temporary file renamed over the old one, so a reader sees the old state or the new one,
//! never half of one; a key file is written before the state names it and deleted only after the
//! state has forgotten it. The commands that change the directory (`generate`, `rotate`,
//! `prune`) hold an exclusive lock on [`LOCK_FILE`] from the moment they read the state until
//! they have written it: two run at once (two operators, a cron job and an operator) take turns
//! instead of both promoting the same `next` key and one of them losing its new key. Readers (the
//! servers, `list`) take no lock: the renames already give them a whole state.
//!
//! # Life cycle
//! `next` (published, not yet signing) -> `active` (signs; exactly one) -> `retired` (published
//! until the longest access token it signed has expired, plus [`CLOCK_SKEW`]) -> deleted by
//! [`KeyDir::prune`]. [`KeyDir::rotate`] moves every key one step and generates the new `next`,
//! so the key that will sign next is in the JWKS for a whole rotation period before it signs.
//!
//! # The `kid`
//! A key's id is its RFC 7638 thumbprint: SHA-256 over the canonical JSON of its required public
//! members, base64url (43 characters). It is computed from the key, so it cannot lie about which
//! key it names; a token's `kid` is only ever looked up, never used as a path or a query, and a
//! token whose `kid` is unknown is refused without trying the other keys.
//!
//! # Held parsed
//! [`KeySet`] holds each private key as an aws-lc-rs key pair and each public key as a
//! [`ParsedPublicKey`], parsed once at load: signing and verifying parse nothing per call.
//! [`KeyRing`] holds the current set behind an [`ArcSwap`] and re-reads the directory on a
//! timer; a directory that fails to load leaves the last good set in place.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::future::Future;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair as _, ParsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::JwtError;

/// The state file's name inside a key directory.
pub const STATE_FILE: &str = "keys.json";

/// The lock file inside a key directory (empty; only its `flock` matters).
pub const LOCK_FILE: &str = ".lock";

/// How far two machines' clocks may disagree: a retired key stays published this long after the
/// last token it signed has expired.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Length of a `kid`: 32 bytes of SHA-256 in unpadded base64url.
pub const KID_LEN: usize = 43;

/// A signature algorithm for asymmetric keys (RFC 7518 §3.4, RFC 8037 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyAlg {
    /// Ed25519 (RFC 8037): 64-byte signatures, no randomness needed.
    EdDSA,
    /// ECDSA on P-256 with SHA-256: 64-byte `r || s` signatures, written low-S.
    ES256,
}

impl KeyAlg {
    /// The JOSE name, as in a token's `alg` header.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlg::EdDSA => "EdDSA",
            KeyAlg::ES256 => "ES256",
        }
    }
}

impl fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyAlg {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "EdDSA" => Ok(KeyAlg::EdDSA),
            "ES256" => Ok(KeyAlg::ES256),
            other => Err(format!("unknown key algorithm {other:?}: EdDSA or ES256")),
        }
    }
}

/// Where a key is in its life cycle (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published, not yet signing.
    Next,
    /// The one key that signs.
    Active,
    /// Published until `prune_after`, no longer signing.
    Retired,
}

impl KeyState {
    fn name(self) -> &'static str {
        match self {
            KeyState::Next => "next",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        }
    }
}

/// One key's line in the state file. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// The key's RFC 7638 thumbprint; its file is `<kid>.pk8`.
    pub kid: String,
    /// Its algorithm.
    pub alg: KeyAlg,
    /// Its place in the life cycle.
    pub state: KeyState,
    /// When it was generated.
    pub created: u64,
    /// When it started signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated: Option<u64>,
    /// When it stopped signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<u64>,
    /// From when [`KeyDir::prune`] deletes it: `retired` + the access-token lifetime +
    /// [`CLOCK_SKEW`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_after: Option<u64>,
}

/// The state file: every key in the directory, in the order they were generated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDirState {
    /// The keys.
    pub keys: Vec<KeyEntry>,
}

/// Whether `kid` has the form of one of our key ids: exactly [`KID_LEN`] base64url characters.
/// Anything else (a path, an SQL-like string, an empty string) is refused before any lookup.
pub fn is_kid_form(kid: &str) -> bool {
    kid.len() == KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The RFC 7638 thumbprint of a JWK given by its required members: the members sorted by name,
/// written as JSON without whitespace, hashed with SHA-256, base64url without padding.
pub fn thumbprint(required_members: &[(&str, &str)]) -> String {
    let mut members = required_members.to_vec();
    members.sort_by(|a, b| a.0.cmp(b.0));
    let body: Vec<String> = members
        .iter()
        .map(|(name, value)| {
            format!(
                "{}:{}",
                serde_json::Value::from(*name),
                serde_json::Value::from(*value)
            )
        })
        .collect();
    let json = format!("{{{}}}", body.join(","));
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, json.as_bytes()))
}

/// A public key's JWK members (RFC 7517/7518/8037), without `kid`, `alg` and `use`.
pub(crate) fn public_members(
    alg: KeyAlg,
    public: &[u8],
) -> Result<Vec<(&'static str, String)>, JwtError> {
    match alg {
        KeyAlg::EdDSA => Ok(vec![
            ("crv", "Ed25519".to_owned()),
            ("kty", "OKP".to_owned()),
            ("x", URL_SAFE_NO_PAD.encode(public)),
        ]),
        KeyAlg::ES256 => {
            // An uncompressed P-256 point: 0x04 || x || y.
            let point = public
                .strip_prefix(&[4])
                .filter(|p| p.len() == 64)
                .ok_or(JwtError::KeyRejected("not an uncompressed P-256 point"))?;
            Ok(vec![
                ("crv", "P-256".to_owned()),
                ("kty", "EC".to_owned()),
                ("x", URL_SAFE_NO_PAD.encode(&point[..32])),
                ("y", URL_SAFE_NO_PAD.encode(&point[32..])),
            ])
        }
    }
}

/// The `kid` of a public key: the thumbprint of its JWK.
pub(crate) fn kid_of(members: &[(&'static str, String)]) -> String {
    let borrowed: Vec<(&str, &str)> = members.iter().map(|(n, v)| (*n, v.as_str())).collect();
    thumbprint(&borrowed)
}

/// The order of the P-256 group, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];
/// `floor(n / 2)`: an `s` above it is the high twin of `n - s`.
const P256_HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// `n - s` for a 32-byte big-endian `s < n`.
fn p256_negate(s: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(P256_ORDER[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    out
}

/// Whether an ES256 signature `r || s` is in the only form we accept: 64 bytes, `r` and `s` not
/// zero (CVE-2022-21449), `s` in the lower half of the group (its twin `n - s` verifies too, and
/// accepting both would make every token two tokens).
pub(crate) fn es256_signature_is_canonical(signature: &[u8]) -> bool {
    let Some((r, s)) = signature.split_at_checked(32) else {
        return false;
    };
    signature.len() == 64
        && r.iter().any(|&b| b != 0)
        && s.iter().any(|&b| b != 0)
        && s <= &P256_HALF_ORDER[..]
}

/// A private key, parsed.
enum Signer {
    EdDSA(Ed25519KeyPair),
    ES256(EcdsaKeyPair),
}

/// The key that signs, with its token header ready.
pub(crate) struct SigningKey {
    signer: Signer,
    /// The base64url header every token it signs carries: `typ`, `alg`, `kid`.
    pub(crate) header: String,
}

impl SigningKey {
    /// The compact JWS of `payload` (already base64url): `header.payload.signature`.
    pub(crate) fn sign(&self, payload: &str) -> Result<String, JwtError> {
        let input = format!("{}.{payload}", self.header);
        let signature = match &self.signer {
            Signer::EdDSA(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
            Signer::ES256(pair) => {
                let signature = pair
                    .sign(&SystemRandom::new(), input.as_bytes())
                    .map_err(|_| JwtError::KeyRejected("ECDSA signing failed"))?;
                let mut bytes = signature.as_ref().to_vec();
                // Low-S: the verifier refuses the high twin, so we never write one.
                let s: [u8; 32] = bytes[32..]
                    .try_into()
                    .map_err(|_| JwtError::KeyRejected("ECDSA signature is not 64 bytes"))?;
                if s[..] > P256_HALF_ORDER[..] {
                    bytes[32..].copy_from_slice(&p256_negate(&s));
                }
                bytes
            }
        };
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// A public key, parsed, with the algorithm it is for.
pub(crate) struct VerifyingKey {
    pub(crate) alg: KeyAlg,
    pub(crate) key: ParsedPublicKey,
}

/// One loaded set of keys: the key that signs (on an issuer), every key that verifies, and the
/// JWKS document.
pub struct KeySet {
    /// `None` on a verifier, whose keys come from an issuer's JWKS and which signs nothing.
    active: Option<(SigningKey, KeyAlg)>,
    verifiers: HashMap<String, VerifyingKey>,
    jwks: String,
    etag: String,
    /// The state the set was loaded from, to skip re-parsing an unchanged directory.
    state: KeyDirState,
}

impl KeySet {
    /// A verifier's set: the public keys of a JWKS ([`crate::parse_jwks`]), no key that signs.
    /// `jwks` is the document they were read from, served again as it came.
    pub fn from_jwks(keys: Vec<crate::JwksKey>, jwks: String) -> Self {
        let etag = format!(
            "\"{}\"",
            URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, jwks.as_bytes()))
        );
        Self {
            active: None,
            verifiers: keys.into_iter().map(|k| (k.kid, k.key)).collect(),
            jwks,
            etag,
            state: KeyDirState::default(),
        }
    }

    /// The algorithm of the key that signs; `None` on a verifier.
    pub fn active_alg(&self) -> Option<KeyAlg> {
        self.active.as_ref().map(|(_, alg)| *alg)
    }

    /// The ids of the keys that verify, in no particular order.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.verifiers.keys().map(String::as_str)
    }

    /// The JWKS document (RFC 7517): every published key's public half, in state-file order.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// A strong `ETag` for [`KeySet::jwks`]: a hash of the body, so every instance reading the
    /// same directory gives the same one.
    pub fn etag(&self) -> &str {
        &self.etag
    }

    pub(crate) fn signing_key(&self) -> Result<&SigningKey, JwtError> {
        self.active
            .as_ref()
            .map(|(key, _)| key)
            .ok_or(JwtError::KeyLifecycle(
                "this instance is a verifier: it holds no key that signs",
            ))
    }

    pub(crate) fn verifier(&self, kid: &str) -> Option<&VerifyingKey> {
        self.verifiers.get(kid)
    }
}

/// The JWKS body and its `ETag` for these public JWKs.
fn jwks_document(keys: &[serde_json::Value]) -> (String, String) {
    let body = serde_json::json!({ "keys": keys }).to_string();
    let etag = format!(
        "\"{}\"",
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, body.as_bytes()))
    );
    (body, etag)
}

/// The JWKS of an instance without asymmetric keys (HS256): no keys at all. An HMAC secret is
/// never published.
pub fn empty_jwks() -> (String, String) {
    jwks_document(&[])
}

/// A key directory on disk: the operations `authlab keys` runs, and the loading the server does.
pub struct KeyDir {
    path: PathBuf,
    /// What [`KeyDir::rotate`] adds to a retired key's keep time ([`CLOCK_SKEW`] unless set).
    clock_skew: Duration,
}

/// The exclusive lock on a key directory, held while a command changes it; released when
/// dropped (the file is closed, and with it the lock; a process that dies releases it too).
pub struct DirLock {
    _file: Option<fs::File>,
}

impl KeyDir {
    /// The directory at `path` (nothing is read yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            clock_skew: CLOCK_SKEW,
        }
    }

    /// The same directory, keeping retired keys `skew` (instead of [`CLOCK_SKEW`]) past their
    /// last token's expiry. Only for machines that share one clock (the drill on loopback).
    pub fn with_clock_skew(self, skew: Duration) -> Self {
        Self {
            clock_skew: skew,
            ..self
        }
    }

    /// Takes the directory's exclusive lock, waiting for whoever holds it. With `create`, the
    /// directory is created (mode 0700) if missing; without, a missing directory has nothing to
    /// protect and no lock is taken.
    pub fn lock(&self, create: bool) -> Result<DirLock, JwtError> {
        if create {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.path)
                .map_err(self.io("create", &self.path))?;
        }
        let path = self.path.join(LOCK_FILE);
        let file = match fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => file,
            Err(err) if !create && err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DirLock { _file: None });
            }
            Err(err) => return Err(self.io("open the lock file", &path)(err)),
        };
        file.lock().map_err(self.io("lock", &path))?;
        Ok(DirLock { _file: Some(file) })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn key_file(&self, kid: &str) -> PathBuf {
        self.path.join(format!("{kid}.pk8"))
    }

    fn io(&self, what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JwtError {
        let path = path.to_owned();
        move |source| JwtError::KeyFile { what, path, source }
    }

    /// The state file, or an empty state if there is none yet.
    pub fn state(&self) -> Result<KeyDirState, JwtError> {
        let path = self.path.join(STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| JwtError::KeyState {
                path,
                reason: source.to_string(),
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(KeyDirState::default()),
            Err(err) => Err(self.io("read", &path)(err)),
        }
    }

    /// Writes `bytes` to `name` in the directory as a new file of mode 0600, then renames it into
    /// place: readers see the old file or the new one.
    fn write_atomically(&self, name: &str, bytes: &[u8]) -> Result<(), JwtError> {
        let target = self.path.join(name);
        let temporary = self
            .path
            .join(format!(".{name}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&temporary, &target)
        };
        write().map_err(|err| {
            let _ = fs::remove_file(&temporary);
            self.io("write", &target)(err)
        })
    }

    fn save(&self, state: &KeyDirState) -> Result<(), JwtError> {
        let mut json = serde_json::to_vec_pretty(state).map_err(|source| JwtError::KeyState {
            path: self.path.join(STATE_FILE),
            reason: source.to_string(),
        })?;
        json.push(b'\n');
        self.write_atomically(STATE_FILE, &json)
    }

    /// A new key pair of `alg` written to its file; returns its `kid`.
    fn new_key(&self, alg: KeyAlg) -> Result<String, JwtError> {
        let rng = SystemRandom::new();
        let failed = |_| JwtError::KeyRejected("key generation failed");
        let pkcs8 = match alg {
            KeyAlg::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng).map_err(failed)?,
            KeyAlg::ES256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(failed)?,
        };
        let (_, public) = parse_private(alg, pkcs8.as_ref())?;
        let kid = kid_of(&public_members(alg, &public)?);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .map_err(self.io("create", &self.path))?;
        self.write_atomically(&format!("{kid}.pk8"), pkcs8.as_ref())?;
        Ok(kid)
    }

    /// `authlab keys generate`: adds a `next` key of `alg`. Refused if there is one already.
    pub fn generate(&self, alg: KeyAlg, now: u64) -> Result<KeyEntry, JwtError> {
        let _lock = self.lock(true)?;
        let mut state = self.state()?;
        if state.keys.iter().any(|k| k.state == KeyState::Next) {
            return Err(JwtError::KeyLifecycle(
                "there is a next key already: rotate to activate it",
            ));
        }
        let entry = self.next_key(alg, now)?;
        state.keys.push(entry.clone());
        self.save(&state)?;
        Ok(entry)
    }

    /// A new key of `alg`, written to the directory, as the `next` entry created at `now`.
    fn next_key(&self, alg: KeyAlg, now: u64) -> Result<KeyEntry, JwtError> {
        Ok(KeyEntry {
            kid: self.new_key(alg)?,
            alg,
            state: KeyState::Next,
            created: now,
            activated: None,
            retired: None,
            prune_after: None,
        })
    }

    /// `authlab keys rotate`: the `next` key becomes `active`, the `active` one `retired` (kept
    /// until `now + access_ttl` plus the clock skew, [`CLOCK_SKEW`] unless
    /// [`KeyDir::with_clock_skew`] says otherwise), and a new `next` of `alg` (or of the newly active
    /// key's algorithm) is generated. Returns the new state.
    pub fn rotate(
        &self,
        alg: Option<KeyAlg>,
        access_ttl: Duration,
        now: u64,
    ) -> Result<KeyDirState, JwtError> {
        let _lock = self.lock(false)?;
        let mut state = self.state()?;
        let next = state
            .keys
            .iter()
            .position(|k| k.state == KeyState::Next)
            .ok_or(JwtError::KeyLifecycle(
                "there is no next key: run `authlab keys generate` first",
            ))?;
        let keep_until = now
            .saturating_add(access_ttl.as_secs())
            .saturating_add(self.clock_skew.as_secs());
        for key in &mut state.keys {
            if key.state == KeyState::Active {
                key.state = KeyState::Retired;
                key.retired = Some(now);
                key.prune_after = Some(keep_until);
            }
        }
        let promoted = &mut state.keys[next];
        promoted.state = KeyState::Active;
        promoted.activated = Some(now);
        let alg = alg.unwrap_or(promoted.alg);
        state.keys.push(self.next_key(alg, now)?);
        self.save(&state)?;
        Ok(state)
    }

    /// `authlab keys prune`: deletes the retired keys whose `prune_after` has come. The state
    /// forgets them first, then their files go. Returns their entries.
    pub fn prune(&self, now: u64) -> Result<Vec<KeyEntry>, JwtError> {
        let _lock = self.lock(false)?;
        let mut state = self.state()?;
        let (gone, kept): (Vec<_>, Vec<_>) = state.keys.into_iter().partition(|k| {
            k.state == KeyState::Retired && k.prune_after.is_some_and(|until| until <= now)
        });
        state.keys = kept;
        if !gone.is_empty() {
            self.save(&state)?;
            for key in &gone {
                let path = self.key_file(&key.kid);
                fs::remove_file(&path).map_err(self.io("delete", &path))?;
            }
        }
        Ok(gone)
    }

    /// `authlab keys list`: one line per key, with a header line.
    pub fn table(&self) -> Result<String, JwtError> {
        let state = self.state()?;
        let time = |t: Option<u64>| t.map_or_else(|| "-".to_owned(), |t| t.to_string());
        let mut out = format!(
            "{:<43}  {:<5}  {:<7}  {:>10}  {:>10}  {:>10}  {:>11}\n",
            "kid", "alg", "state", "created", "activated", "retired", "prune_after"
        );
        for k in &state.keys {
            out.push_str(&format!(
                "{:<43}  {:<5}  {:<7}  {:>10}  {:>10}  {:>10}  {:>11}\n",
                k.kid,
                k.alg.name(),
                k.state.name(),
                k.created,
                time(k.activated),
                time(k.retired),
                time(k.prune_after)
            ));
        }
        Ok(out)
    }

    /// Reads and parses every key the state names. Refuses a key file readable or writable by
    /// group or world, a file whose key does not have the `kid` it is filed under, and a state
    /// without exactly one `active` key.
    pub fn load(&self) -> Result<KeySet, JwtError> {
        let state = self.state()?;
        let mut active = None;
        let mut verifiers = HashMap::new();
        let mut jwks = Vec::new();
        for entry in &state.keys {
            if !is_kid_form(&entry.kid) {
                return Err(JwtError::KeyLifecycle(
                    "a kid in the state file is malformed",
                ));
            }
            let path = self.key_file(&entry.kid);
            let mode = fs::metadata(&path)
                .map_err(self.io("read", &path))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(JwtError::KeyFileMode {
                    path,
                    mode: mode & 0o777,
                });
            }
            let pkcs8 = fs::read(&path).map_err(self.io("read", &path))?;
            let (signer, public) = parse_private(entry.alg, &pkcs8)?;
            let members = public_members(entry.alg, &public)?;
            if kid_of(&members) != entry.kid {
                return Err(JwtError::KeyMismatch(path));
            }
            let verification: &'static dyn aws_lc_rs::signature::VerificationAlgorithm =
                match entry.alg {
                    KeyAlg::EdDSA => &ED25519,
                    KeyAlg::ES256 => &ECDSA_P256_SHA256_FIXED,
                };
            let key = ParsedPublicKey::new(verification, &public)
                .map_err(|_| JwtError::KeyRejected("the public key does not parse"))?;
            verifiers.insert(
                entry.kid.clone(),
                VerifyingKey {
                    alg: entry.alg,
                    key,
                },
            );
            let mut jwk = serde_json::Map::new();
            for (name, value) in members {
                jwk.insert(name.to_owned(), value.into());
            }
            jwk.insert("kid".to_owned(), entry.kid.clone().into());
            jwk.insert("alg".to_owned(), entry.alg.name().into());
            jwk.insert("use".to_owned(), "sig".into());
            jwks.push(serde_json::Value::Object(jwk));
            if entry.state == KeyState::Active {
                if active.is_some() {
                    return Err(JwtError::KeyLifecycle("more than one key is active"));
                }
                let header =
                    serde_json::json!({"typ": "JWT", "alg": entry.alg.name(), "kid": entry.kid});
                active = Some((
                    SigningKey {
                        signer,
                        header: URL_SAFE_NO_PAD.encode(header.to_string()),
                    },
                    entry.alg,
                ));
            }
        }
        let active = active.ok_or(JwtError::KeyLifecycle(
            "no key is active: run `authlab keys generate` then `authlab keys rotate`",
        ))?;
        let (jwks, etag) = jwks_document(&jwks);
        Ok(KeySet {
            active: Some(active),
            verifiers,
            jwks,
            etag,
            state,
        })
    }
}

/// A PKCS#8 private key of `alg`, parsed, and its raw public key.
fn parse_private(alg: KeyAlg, pkcs8: &[u8]) -> Result<(Signer, Vec<u8>), JwtError> {
    let rejected = |_| JwtError::KeyRejected("not a PKCS#8 key of its algorithm");
    Ok(match alg {
        KeyAlg::EdDSA => {
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(rejected)?;
            let public = pair.public_key().as_ref().to_vec();
            (Signer::EdDSA(pair), public)
        }
        KeyAlg::ES256 => {
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                .map_err(rejected)?;
            let public = pair.public_key().as_ref().to_vec();
            (Signer::ES256(pair), public)
        }
    })
}

/// Asked by the verify path when a token names a `kid` of our form that the current set does not
/// hold (a verifier whose issuer has rotated to a key it has not fetched yet). The server
/// implements it with an HTTP fetch of the issuer's JWKS (this crate does no I/O); the future
/// ends when the fetch it started or joined is over, or at once when the cooldown forbids one.
pub trait UnknownKid: Send + Sync {
    /// Refetches the keys if allowed now; the caller then looks the `kid` up once more.
    fn refetch(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The current [`KeySet`]: of a directory (an issuer, re-read on a timer by a thread of its own,
/// and on demand with [`KeyRing::reload`]), or of an issuer's JWKS (a verifier, replaced by the
/// server's fetcher with [`KeyRing::replace`]).
pub struct KeyRing {
    dir: Option<KeyDir>,
    current: ArcSwap<KeySet>,
    /// Unix seconds from which the current set may no longer be used: `u64::MAX` for a
    /// directory, the last good fetch plus `--jwks-max-stale` for a JWKS, 0 before the first.
    usable_until: AtomicU64,
    /// Who refetches on an unknown `kid` (verifiers only).
    unknown_kid: OnceLock<Arc<dyn UnknownKid>>,
}

impl KeyRing {
    /// Loads `dir` (failing if it does not load) and, if `reload` is given, starts a thread that
    /// re-reads it at that interval for as long as the ring lives. A reload that fails keeps the
    /// last good set and logs why.
    pub fn open(dir: KeyDir, reload: Option<Duration>) -> Result<Arc<Self>, JwtError> {
        let set = dir.load()?;
        let ring = Arc::new(Self {
            dir: Some(dir),
            current: ArcSwap::from_pointee(set),
            usable_until: AtomicU64::new(u64::MAX),
            unknown_kid: OnceLock::new(),
        });
        if let Some(interval) = reload {
            let weak: Weak<Self> = Arc::downgrade(&ring);
            std::thread::Builder::new()
                .name("jwt-keys-reload".to_owned())
                .spawn(move || {
                    loop {
                        std::thread::sleep(interval);
                        match weak.upgrade() {
                            Some(ring) => ring.reload(),
                            None => break,
                        }
                    }
                })
                .map_err(|source| JwtError::KeyFile {
                    what: "start the reload thread for",
                    path: PathBuf::new(),
                    source,
                })?;
        }
        Ok(ring)
    }

    /// A verifier's ring: no keys and not usable until the first [`KeyRing::replace`] (every
    /// token is answered [`JwtError::KeysUnavailable`] until then).
    pub fn remote() -> Arc<Self> {
        Arc::new(Self {
            dir: None,
            current: ArcSwap::from_pointee(KeySet::from_jwks(Vec::new(), String::new())),
            usable_until: AtomicU64::new(0),
            unknown_kid: OnceLock::new(),
        })
    }

    /// Sets who refetches on an unknown `kid` (once; later calls are ignored).
    pub fn on_unknown_kid(&self, refetch: Arc<dyn UnknownKid>) {
        let _ = self.unknown_kid.set(refetch);
    }

    pub(crate) fn unknown_kid(&self) -> Option<&Arc<dyn UnknownKid>> {
        self.unknown_kid.get()
    }

    /// A verifier's good fetch: `set` becomes current unless its document is the one already
    /// held (so an unchanged JWKS costs no swap), and the keys may be used until
    /// `usable_until` (Unix seconds). Returns whether the set changed.
    pub fn replace(&self, set: KeySet, usable_until: u64) -> bool {
        let changed = self.current.load().jwks() != set.jwks();
        if changed {
            self.current.store(Arc::new(set));
        }
        self.usable_until.store(usable_until, Ordering::Release);
        changed
    }

    /// A verifier's fetch that found the document unchanged (`304 Not Modified`): the keys held
    /// may be used until `usable_until`.
    pub fn still_good_until(&self, usable_until: u64) {
        self.usable_until.store(usable_until, Ordering::Release);
    }

    /// Whether the keys may be used at `now` (Unix seconds).
    pub fn usable_at(&self, now: u64) -> bool {
        now < self.usable_until.load(Ordering::Acquire)
    }

    /// Re-reads the directory now (a no-op on a verifier's ring). An unchanged state file is not
    /// parsed again; a directory that fails to load leaves the current set in place.
    pub fn reload(&self) {
        let Some(dir) = &self.dir else {
            return;
        };
        match dir.state() {
            Ok(state) if state == self.current.load().state => return,
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "JWT key directory unreadable: keeping the keys loaded");
                return;
            }
        }
        match dir.load() {
            Ok(set) => {
                tracing::info!(
                    active = set.active_alg().map_or("none", KeyAlg::name),
                    keys = set.verifiers.len(),
                    "JWT keys reloaded"
                );
                self.current.store(Arc::new(set));
            }
            Err(err) => {
                tracing::warn!(error = %err, "JWT key directory does not load: keeping the keys loaded");
            }
        }
    }

    /// The current set.
    pub fn current(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.current.load()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7638_example_gives_its_published_thumbprint() {
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let e = "AQAB";
        assert_eq!(
            thumbprint(&[("n", n), ("e", e), ("kty", "RSA")]),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn the_rfc_8037_ed25519_example_gives_its_published_thumbprint() {
        // RFC 8037 Appendix A.3.
        assert_eq!(
            thumbprint(&[
                ("kty", "OKP"),
                ("crv", "Ed25519"),
                ("x", "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            ]),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn kid_form_is_43_base64url_characters_only() {
        assert!(is_kid_form("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"));
        for bad in [
            "",
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4",
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k=",
            "../../etc/passwd",
            "' OR '1'='1",
            "kPrK/qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
        ] {
            assert!(!is_kid_form(bad), "{bad:?}");
        }
    }

    #[test]
    fn half_order_is_half_the_order_and_negation_round_trips() {
        // n = 2 * half + 1 (n is odd).
        let doubled = {
            let mut out = [0u8; 32];
            let mut carry = 1u16;
            for i in (0..32).rev() {
                let v = u16::from(P256_HALF_ORDER[i]) * 2 + carry;
                out[i] = (v & 0xff) as u8;
                carry = v >> 8;
            }
            out
        };
        assert_eq!(doubled, P256_ORDER);
        let s = [0x42u8; 32];
        assert_eq!(p256_negate(&p256_negate(&s)), s);
        assert!(p256_negate(&s)[..] > P256_HALF_ORDER[..]);
    }

    fn temp_dir() -> KeyDir {
        let path = std::env::temp_dir().join(format!(
            "authlab-keys-test-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        KeyDir::new(path)
    }

    #[test]
    fn the_life_cycle_generate_rotate_prune_through_the_state_file() {
        let dir = temp_dir();
        let first = dir.generate(KeyAlg::EdDSA, 1000).unwrap();
        assert!(is_kid_form(&first.kid));
        assert!(
            matches!(dir.load(), Err(JwtError::KeyLifecycle(_))),
            "no active key yet"
        );
        assert!(matches!(
            dir.generate(KeyAlg::EdDSA, 1000),
            Err(JwtError::KeyLifecycle(_))
        ));

        let state = dir.rotate(None, Duration::from_secs(900), 2000).unwrap();
        assert_eq!(state.keys.len(), 2);
        assert_eq!(state.keys[0].state, KeyState::Active);
        assert_eq!(state.keys[0].activated, Some(2000));
        assert_eq!(state.keys[1].state, KeyState::Next);
        let set = dir.load().unwrap();
        assert_eq!(set.active_alg(), Some(KeyAlg::EdDSA));
        assert!(set.verifier(&first.kid).is_some());

        let state = dir
            .rotate(Some(KeyAlg::ES256), Duration::from_secs(900), 3000)
            .unwrap();
        let retired = &state.keys[0];
        assert_eq!(retired.state, KeyState::Retired);
        assert_eq!(retired.prune_after, Some(3000 + 900 + CLOCK_SKEW.as_secs()));
        assert_eq!(state.keys[2].alg, KeyAlg::ES256);
        // The state file on disk is what `state()` returned, and every file is 0600.
        assert_eq!(dir.state().unwrap(), state);
        for entry in fs::read_dir(dir.path()).unwrap() {
            let mode = entry.unwrap().metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        assert!(
            dir.prune(3000 + 900 + CLOCK_SKEW.as_secs() - 1)
                .unwrap()
                .is_empty()
        );
        let gone = dir.prune(3000 + 900 + CLOCK_SKEW.as_secs()).unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].kid, first.kid);
        assert!(!dir.key_file(&first.kid).exists());
        assert!(dir.load().unwrap().verifier(&first.kid).is_none());
        assert!(dir.table().unwrap().lines().count() == 3);
        fs::remove_dir_all(dir.path()).unwrap();
    }

    /// Each rotation reads the state, writes a new key file and saves the state: two at once
    /// without the lock both promote the same `next` and one new key is lost (its file stays,
    /// named by no state). With it, every rotation counts and every key file is in the state.
    #[test]
    fn rotations_run_at_once_take_turns_and_every_one_counts() {
        const THREADS: u64 = 6;
        const EACH: u64 = 4;
        let dir = temp_dir();
        dir.generate(KeyAlg::EdDSA, 1).unwrap();
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let dir = KeyDir::new(dir.path());
                scope.spawn(move || {
                    for i in 0..EACH {
                        dir.rotate(None, Duration::from_secs(60), 10 + t * EACH + i)
                            .unwrap();
                        dir.prune(0).unwrap();
                    }
                });
            }
        });
        let state = dir.state().unwrap();
        let count = |wanted| state.keys.iter().filter(|k| k.state == wanted).count();
        assert_eq!(state.keys.len() as u64, 1 + THREADS * EACH);
        assert_eq!(count(KeyState::Retired) as u64, THREADS * EACH - 1);
        assert_eq!((count(KeyState::Active), count(KeyState::Next)), (1, 1));
        let mut files: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().into_string().ok())
            .filter_map(|name| name.strip_suffix(".pk8").map(str::to_owned))
            .collect();
        let mut named: Vec<String> = state.keys.iter().map(|k| k.kid.clone()).collect();
        files.sort();
        named.sort();
        assert_eq!(
            files, named,
            "a key file the state does not name, or the reverse"
        );
        assert!(dir.load().is_ok());
        fs::remove_dir_all(dir.path()).unwrap();
    }

    #[test]
    fn a_missing_directory_is_not_created_by_rotate_or_prune() {
        let dir = temp_dir();
        assert!(matches!(
            dir.rotate(None, Duration::from_secs(60), 1),
            Err(JwtError::KeyLifecycle(_))
        ));
        assert!(dir.prune(1).unwrap().is_empty());
        assert!(!dir.path().exists());
    }

    #[test]
    fn the_clock_skew_can_be_set_for_machines_sharing_one_clock() {
        let dir = temp_dir().with_clock_skew(Duration::from_secs(2));
        dir.generate(KeyAlg::EdDSA, 1).unwrap();
        dir.rotate(None, Duration::from_secs(60), 100).unwrap();
        let state = dir.rotate(None, Duration::from_secs(60), 200).unwrap();
        assert_eq!(state.keys[0].prune_after, Some(200 + 60 + 2));
        assert_eq!(dir.prune(200 + 60 + 2).unwrap().len(), 1);
        fs::remove_dir_all(dir.path()).unwrap();
    }

    #[test]
    fn a_key_file_readable_by_others_or_filed_under_another_kid_is_refused() {
        let dir = temp_dir();
        let first = dir.generate(KeyAlg::ES256, 1).unwrap();
        dir.rotate(None, Duration::from_secs(60), 2).unwrap();
        let path = dir.key_file(&first.kid);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(dir.load(), Err(JwtError::KeyFileMode { .. })));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(dir.load().is_ok());
        // Swap the two key files: each now sits under the other's kid.
        let state = dir.state().unwrap();
        let other = dir.key_file(&state.keys[1].kid);
        let (a, b) = (fs::read(&path).unwrap(), fs::read(&other).unwrap());
        fs::write(&path, b).unwrap();
        fs::write(&other, a).unwrap();
        assert!(matches!(dir.load(), Err(JwtError::KeyMismatch(_))));
        fs::remove_dir_all(dir.path()).unwrap();
    }

    #[test]
    fn es256_signatures_are_written_low_s_and_only_canonical_ones_pass_the_form_check() {
        let dir = temp_dir();
        dir.generate(KeyAlg::ES256, 1).unwrap();
        dir.rotate(None, Duration::from_secs(60), 2).unwrap();
        let set = dir.load().unwrap();
        for _ in 0..64 {
            let token = set.signing_key().unwrap().sign("e30").unwrap();
            let signature = URL_SAFE_NO_PAD
                .decode(token.rsplit('.').next().unwrap())
                .unwrap();
            assert!(es256_signature_is_canonical(&signature));
            let s: [u8; 32] = signature[32..].try_into().unwrap();
            let mut twin = signature.clone();
            twin[32..].copy_from_slice(&p256_negate(&s));
            assert!(!es256_signature_is_canonical(&twin));
        }
        assert!(!es256_signature_is_canonical(&[0u8; 64]));
        fs::remove_dir_all(dir.path()).unwrap();
    }
}
