//! The modes a run compares: each one a named instance configuration, written as the
//! `authlab serve` flags that make it, and the route it is measured on.
//!
//! [`MODES`] is the one place that says what a run measures. A mode's flags are parsed by the
//! server's own [`Settings`] parser ([`Mode::settings`]), so a mode is exactly what a reader gets
//! by starting `authlab serve` with those flags; only what the run owns (the address, the
//! temporary user database, the Redis URL and key prefix, the JWT secret, the worker count) is
//! set on top (a verifier, a mode with an [`Mode::issuer`], holds no JWT secret: it checks the
//! tokens of an issuer instance the run starts for it). Every round runs `/hello`, then every
//! mode in this order, then `/hello` again, so noise on the machine hits every mode alike; a
//! metrics-off mode comes right after the mode it is paired with, so the two see the same
//! machine.
//!
//! A mode whose flag the server does not have is not in the table (the unit test
//! `every_mode_parses_with_the_servers_own_flags` fails otherwise): nothing is measured under a
//! name it does not deserve.
//!
//! `--modes` picks a subset by [`Mode::key`]; `/hello` always runs.

use std::time::Duration;

use authlab::config::Settings;

/// Which backend a mode serves, and so which routes it is measured and revoked on: the
/// server's own list.
pub use authlab::backend_kind::BackendKind as Backend;

/// A target ratio to `/hello` and its source.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The ratio to `/hello` asked of the mode.
    pub ratio: f64,
    /// The issue that set it, and what it was based on.
    pub source: &'static str,
}

/// One instance configuration a run measures.
#[derive(Debug)]
pub struct Mode {
    /// Its name for `--modes`: `redis-cached`.
    pub key: &'static str,
    /// Its row in every table, chart and `report.json`: `/redis/me (cached)`.
    pub row: &'static str,
    /// How the "which should I choose" section names it: `redis, cached`.
    pub label: &'static str,
    /// The backend whose `/me` the row measures.
    pub backend: Backend,
    /// The `authlab serve` flags that make this mode (on top of the defaults).
    pub flags: &'static [&'static str],
    /// The ratio to `/hello` asked of it, if any.
    pub target: Option<Target>,
    /// Whether a second instance with the same settings is started for the scale-out check
    /// (a credential from one presented to the other, then a logout).
    pub scale_out: bool,
    /// Whether the revocation-latency probe measures it (its logouts reach other instances
    /// through Redis).
    pub revocable: bool,
    /// For a `--metrics off` mode: the row of the mode it is the metrics-off twin of.
    pub metrics_off_of: Option<&'static str>,
    /// For a mode measured on a `--role verifier` instance: the `authlab serve` flags of the
    /// separate issuer instance its tokens come from. The run starts that issuer first (with
    /// the run's key directory for its `--jwt-alg`), points the verifier's `--jwks-url` at the
    /// issuer's `/.well-known/jwks.json`, logs in on the issuer, and measures `/me` on the
    /// verifier. `None`: the mode's own instance issues its tokens.
    pub issuer: Option<&'static [&'static str]>,
}

/// The row of `/session/me`.
pub const SESSION: &str = "/session/me";
/// The row of `/redis/me` (the default: no cache, one multiplexed connection per worker).
pub const REDIS: &str = "/redis/me";
/// The row of `/redis/me` with the client-side cache on.
pub const REDIS_CACHED: &str = "/redis/me (cached)";
/// The row of `/redis/me` through a deadpool-redis pool (its defaults: `UNWATCH` + `PING` at
/// every checkout, four connections per core).
pub const REDIS_DEADPOOL: &str = "/redis/me (deadpool)";
/// The row of `/redis/me` through deadpool at its best: no checkout ping, a connection for every
/// request in flight.
pub const REDIS_DEADPOOL_FAST: &str = "/redis/me (deadpool-fast, 32)";
/// The row of `/jwt/me` with the denylist's answers cached in process.
pub const JWT_CACHED: &str = "/jwt/me (denylist cached)";
/// The row of `/jwt/me` with the denylist off.
pub const JWT_OFF: &str = "/jwt/me (denylist off)";
/// The row of `/jwt/me` with the denylist on (the default).
pub const JWT_ON: &str = "/jwt/me (denylist on)";
/// The row of `/jwt/me` signed with EdDSA, through the verified-token cache, denylist off.
pub const JWT_EDDSA: &str = "/jwt/me (EdDSA, denylist off)";
/// The same without the verified-token cache: every request pays the Ed25519 verify.
pub const JWT_EDDSA_UNCACHED: &str = "/jwt/me (EdDSA, no verify cache, denylist off)";
/// The row of `/jwt/me` signed with ES256, through the verified-token cache, denylist off.
pub const JWT_ES256: &str = "/jwt/me (ES256, denylist off)";
/// The row of `/jwt/me` on a verifier instance (`--role verifier`, the issuer's keys from its
/// JWKS), EdDSA tokens from a separate issuer, through the verified-token cache, denylist off.
pub const JWT_VERIFIER: &str = "/jwt/me (EdDSA verifier, denylist off)";
/// The row of `/session/me` with `--metrics off`.
pub const SESSION_METRICS_OFF: &str = "/session/me (metrics off)";
/// The row of `/jwt/me` with the denylist and the metrics off.
pub const JWT_METRICS_OFF: &str = "/jwt/me (denylist off, metrics off)";

/// The targets the project set for each mode (when the client-side cache was built, raising the
/// first targets), each with its source in words: the output never names an issue number.
const SESSION_TARGET: Target = Target {
    ratio: 0.95,
    source: "the project's target since the hot-path work; the architecture notes' prototype of an in-memory map lookup reached 0.92x",
};

const REDIS_TARGET: Target = Target {
    ratio: 0.75,
    source: "the project's target since the hot-path work (uncached; 0.59-0.61 measured before it; the first target was 0.60); the architecture notes' prototype of a GET on one multiplexed connection per worker reached 0.70x",
};

const JWT_OFF_TARGET: Target = Target {
    ratio: 0.90,
    source: "the project's target since the hot-path work; the architecture notes' lean hand-written HS256 verifier reached 0.90x (jsonwebtoken's decode 0.79x)",
};

const JWT_ON_TARGET: Target = Target {
    ratio: 0.70,
    source: "the project's target since the hot-path work (plain denylist; 0.49-0.56 measured before it; the first target was 0.60): one Redis round trip (EXISTS) per request on top of the JWT",
};

const REDIS_CACHED_TARGET: Target = Target {
    ratio: 0.90,
    source: "the project's target for the client-side cache: a hit served from process memory (~220 ns in its prototype) instead of a 58-73 us round trip",
};
const JWT_CACHED_TARGET: Target = Target {
    ratio: 0.85,
    source: "the project's target for the client-side cache: the denylist's answer from process memory, on top of the HS256 verify",
};

const JWT_EDDSA_TARGET: Target = Target {
    ratio: 0.85,
    source: "the project's target for asymmetric keys: with the verified-token cache, a token presented again costs a hash and a map lookup instead of an Ed25519 verify (~40 us)",
};

/// The modes, in the order of a round.
pub const MODES: &[Mode] = &[
    Mode {
        key: "session",
        row: SESSION,
        label: "session",
        backend: Backend::Session,
        flags: &[],
        target: Some(SESSION_TARGET),
        scale_out: true,
        revocable: false,
        metrics_off_of: None,
        issuer: None,
    },
    Mode {
        key: "session-metrics-off",
        row: SESSION_METRICS_OFF,
        label: "session, metrics off",
        backend: Backend::Session,
        flags: &["--metrics", "off"],
        target: None,
        scale_out: false,
        revocable: false,
        metrics_off_of: Some(SESSION),
        issuer: None,
    },
    Mode {
        key: "redis",
        row: REDIS,
        label: "redis",
        backend: Backend::Redis,
        flags: &[],
        target: Some(REDIS_TARGET),
        scale_out: true,
        revocable: true,
        metrics_off_of: None,
        issuer: None,
    },
    Mode {
        key: "redis-cached",
        row: REDIS_CACHED,
        label: "redis, cached",
        backend: Backend::Redis,
        flags: &["--redis-cache", "on"],
        target: Some(REDIS_CACHED_TARGET),
        scale_out: true,
        revocable: true,
        metrics_off_of: None,
        issuer: None,
    },
    Mode {
        key: "redis-deadpool",
        row: REDIS_DEADPOOL,
        label: "redis, deadpool",
        backend: Backend::Redis,
        flags: &["--redis-pool", "deadpool"],
        target: None,
        scale_out: false,
        revocable: false,
        metrics_off_of: None,
        issuer: None,
    },
    Mode {
        key: "redis-deadpool-fast",
        row: REDIS_DEADPOOL_FAST,
        label: "redis, deadpool at its best",
        backend: Backend::Redis,
        // As many pooled connections as the load keeps requests in flight (32 by default).
        flags: &["--redis-pool", "deadpool-fast", "--redis-pool-size", "32"],
        target: None,
        scale_out: false,
        revocable: false,
        metrics_off_of: None,
        issuer: None,
    },
    Mode {
        key: "jwt",
        row: JWT_OFF,
        label: "jwt, denylist off",
        backend: Backend::Jwt,
        flags: &["--jwt-denylist", "off"],
        target: Some(JWT_OFF_TARGET),
        scale_out: true,
        revocable: false,
        metrics_off_of: None,
        issuer: None,
    },
    Mode {
        key: "jwt-metrics-off",
        row: JWT_METRICS_OFF,
        label: "jwt, denylist off, metrics off",
        backend: Backend::Jwt,
        flags: &["--jwt-denylist", "off", "--metrics", "off"],
        target: None,
        scale_out: false,
        revocable: false,
        metrics_off_of: Some(JWT_OFF),
        issuer: None,
    },
    Mode {
        key: "jwt-denylist",
        row: JWT_ON,
        label: "jwt, denylist on",
        backend: Backend::Jwt,
        flags: &["--jwt-denylist", "on"],
        target: Some(JWT_ON_TARGET),
        scale_out: true,
        revocable: true,
        metrics_off_of: None,
        issuer: None,
    },
    Mode {
        key: "jwt-denylist-cached",
        row: JWT_CACHED,
        label: "jwt, denylist cached",
        backend: Backend::Jwt,
        flags: &["--jwt-denylist", "cached"],
        target: Some(JWT_CACHED_TARGET),
        scale_out: true,
        revocable: true,
        metrics_off_of: None,
        issuer: None,
    },
    // The key-pair modes: the run generates a key directory per algorithm for them (setup).
    Mode {
        key: "jwt-eddsa",
        row: JWT_EDDSA,
        label: "jwt, EdDSA, denylist off",
        backend: Backend::Jwt,
        flags: &["--jwt-denylist", "off", "--jwt-alg", "EdDSA"],
        target: Some(JWT_EDDSA_TARGET),
        scale_out: false,
        revocable: false,
        metrics_off_of: None,
        issuer: None,
    },
    Mode {
        key: "jwt-eddsa-uncached",
        row: JWT_EDDSA_UNCACHED,
        label: "jwt, EdDSA, no verify cache, denylist off",
        backend: Backend::Jwt,
        flags: &[
            "--jwt-denylist",
            "off",
            "--jwt-alg",
            "EdDSA",
            "--jwt-verify-cache",
            "0",
        ],
        target: None,
        scale_out: false,
        revocable: false,
        metrics_off_of: None,
        issuer: None,
    },
    Mode {
        key: "jwt-es256",
        row: JWT_ES256,
        label: "jwt, ES256, denylist off",
        backend: Backend::Jwt,
        flags: &["--jwt-denylist", "off", "--jwt-alg", "ES256"],
        target: None,
        scale_out: false,
        revocable: false,
        metrics_off_of: None,
        issuer: None,
    },
    // A verifier instance: no private key, the issuer's public keys from its JWKS, the same
    // denylist setting and verified-token cache (the default) as `jwt-eddsa`. Neither scale-out
    // nor revocation: a verifier issues nothing to log out, and its twin would need an issuer of
    // its own; the revocation probe's issuing instance is the mode's own.
    Mode {
        key: "jwt-verifier",
        row: JWT_VERIFIER,
        label: "jwt, EdDSA verifier, denylist off",
        backend: Backend::Jwt,
        flags: &["--role", "verifier", "--jwt-denylist", "off"],
        target: None,
        scale_out: false,
        revocable: false,
        metrics_off_of: None,
        issuer: Some(&[
            "--role",
            "issuer",
            "--jwt-denylist",
            "off",
            "--jwt-alg",
            "EdDSA",
        ]),
    },
];

/// Against `--target`: one row per backend, measured as that server is configured (its flags are
/// its own; the `jwt` row measures whatever denylist setting it has).
pub const AS_SERVED: &[Mode] = &[
    Mode {
        key: "session",
        row: SESSION,
        label: "session",
        backend: Backend::Session,
        flags: &[],
        target: Some(SESSION_TARGET),
        scale_out: false,
        revocable: false,
        metrics_off_of: None,
        issuer: None,
    },
    Mode {
        key: "redis",
        row: REDIS,
        label: "redis",
        backend: Backend::Redis,
        flags: &[],
        target: Some(REDIS_TARGET),
        scale_out: false,
        revocable: false,
        metrics_off_of: None,
        issuer: None,
    },
    Mode {
        key: "jwt",
        row: "/jwt/me (as served)",
        label: "jwt",
        backend: Backend::Jwt,
        flags: &[],
        target: None,
        scale_out: false,
        revocable: false,
        metrics_off_of: None,
        issuer: None,
    },
];

/// How long the revocation probe polls the second instance before it counts a sample as never
/// refused.
pub const REVOCATION_GIVE_UP: Duration = Duration::from_secs(1);

/// The mode called `key`.
pub fn by_key(key: &str) -> Option<&'static Mode> {
    MODES.iter().find(|m| m.key == key)
}

/// The mode measured on row `row`.
pub fn by_row(row: &str) -> Option<&'static Mode> {
    MODES.iter().find(|m| m.row == row)
}

/// Every `--modes` name, comma-separated (for `--help` and errors).
pub fn keys() -> String {
    MODES.iter().map(|m| m.key).collect::<Vec<_>>().join(",")
}

/// `--modes`: one name of [`MODES`] (clap splits the list at commas).
pub fn parse_key(value: &str) -> Result<String, String> {
    let value = value.trim();
    by_key(value)
        .map(|m| m.key.to_owned())
        .ok_or_else(|| format!("no mode {value:?}; the modes are {}", keys()))
}

/// The modes `keys` names, in the table's order (each once; a metrics-off mode without its pair
/// runs alone, and then shows no metrics cost). An empty list means every mode.
pub fn selected(keys: &[String]) -> Vec<&'static Mode> {
    MODES
        .iter()
        .filter(|m| keys.is_empty() || keys.iter().any(|k| k == m.key))
        .collect()
}

/// Why a mode's flags did not parse (only a table that names a flag the server lacks).
#[derive(Debug, thiserror::Error)]
#[error("mode {key}: `authlab serve {flags}` does not parse")]
pub struct ModeFlagsError {
    key: &'static str,
    flags: String,
    #[source]
    source: clap::Error,
}

impl Mode {
    /// Whether the run starts a second instance of this mode (for the scale-out check or the
    /// revocation probe).
    pub fn needs_twin(&self) -> bool {
        self.scale_out || self.revocable
    }

    /// `--jwt-denylist off --metrics off`, or `(defaults)`; a verifier's names its issuer's
    /// too: `--role verifier ... (tokens from --role issuer ...)`.
    pub fn flags_text(&self) -> String {
        let own = if self.flags.is_empty() {
            "(defaults)".to_owned()
        } else {
            self.flags.join(" ")
        };
        match self.issuer {
            Some(issuer) => format!("{own} (tokens from {})", issuer.join(" ")),
            None => own,
        }
    }

    /// The settings of an instance of this mode: `authlab serve`'s parse of [`Mode::flags`],
    /// with what the run owns taken from `run` (address, database, Redis URL and timeout, key
    /// prefix, JWT secret, workers). A verifier's (a mode with an [`Mode::issuer`]) holds no
    /// secret and still lacks its `--jwks-url`: the run sets it once its issuer has a port.
    pub fn settings(&self, run: &Settings) -> Result<Settings, ModeFlagsError> {
        let mut settings = self.parse(self.flags, run)?;
        if self.issuer.is_some() {
            settings.jwt_secret = None;
        }
        Ok(settings)
    }

    /// The settings of the issuer instance of a mode with an [`Mode::issuer`] (`None` for the
    /// others), with what the run owns taken from `run`, as [`Mode::settings`].
    pub fn issuer_settings(&self, run: &Settings) -> Result<Option<Settings>, ModeFlagsError> {
        self.issuer.map(|flags| self.parse(flags, run)).transpose()
    }

    fn parse(&self, flags: &[&str], run: &Settings) -> Result<Settings, ModeFlagsError> {
        #[derive(clap::Parser)]
        struct Serve {
            #[command(flatten)]
            settings: Settings,
        }
        let argv = std::iter::once("authlab").chain(flags.iter().copied());
        let mut settings = <Serve as clap::Parser>::try_parse_from(argv)
            .map_err(|source| ModeFlagsError {
                key: self.key,
                flags: flags.join(" "),
                source,
            })?
            .settings;
        settings.bind.clone_from(&run.bind);
        settings.database_url.clone_from(&run.database_url);
        settings.redis.url.clone_from(&run.redis.url);
        settings.redis.timeout = run.redis.timeout;
        settings.redis_prefix.clone_from(&run.redis_prefix);
        settings.jwt_secret.clone_from(&run.jwt_secret);
        settings.workers = run.workers;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use authlab::config::{DenylistMode, JwtAlg, Role, Switch};

    use super::*;

    #[test]
    fn every_mode_parses_with_the_servers_own_flags() {
        for mode in MODES {
            if let Err(err) = mode.settings(&Settings::defaults()) {
                panic!("{err}: {}", err.source);
            }
            if let Err(err) = mode.issuer_settings(&Settings::defaults()) {
                panic!("{err}: {}", err.source);
            }
        }
    }

    #[test]
    fn keys_and_rows_are_unique_and_every_metrics_off_mode_follows_its_pair() {
        for (i, mode) in MODES.iter().enumerate() {
            assert_eq!(MODES.iter().filter(|m| m.key == mode.key).count(), 1);
            assert_eq!(MODES.iter().filter(|m| m.row == mode.row).count(), 1);
            if let Some(pair) = mode.metrics_off_of {
                assert_eq!(MODES[i - 1].row, pair, "{} right after its pair", mode.key);
                assert_eq!(MODES[i - 1].backend, mode.backend);
            }
            if let Some(target) = mode.target {
                // Named in words: a user of the tool cannot look up the project's issue numbers.
                assert!(!target.source.contains('#'), "{}", target.source);
            }
        }
    }

    #[test]
    fn a_modes_flags_set_its_settings_and_the_run_keeps_what_it_owns() {
        let mut run = Settings::defaults();
        run.bind = "127.0.0.1:0".to_owned();
        run.redis_prefix = "run:".to_owned();
        let jwt = by_key("jwt").unwrap().settings(&run).unwrap();
        assert_eq!(jwt.jwt_denylist, DenylistMode::Off);
        assert_eq!(jwt.metrics, Switch::On);
        assert_eq!(jwt.bind, "127.0.0.1:0");
        assert_eq!(jwt.redis_prefix, "run:");
        let off = by_key("jwt-metrics-off").unwrap().settings(&run).unwrap();
        assert_eq!(off.metrics, Switch::Off);
        assert_eq!(off.jwt_denylist, DenylistMode::Off);
        assert_eq!(
            by_key("jwt-denylist")
                .unwrap()
                .settings(&run)
                .unwrap()
                .jwt_denylist,
            DenylistMode::On
        );
    }

    #[test]
    fn a_verifier_mode_holds_no_secret_and_its_issuer_signs_with_a_key_pair() {
        let mut run = Settings::defaults();
        run.redis_prefix = "run:".to_owned();
        run.jwt_secret = Some(secrecy::SecretString::from("s".repeat(64)));
        let mode = by_key("jwt-verifier").unwrap();
        let verifier = mode.settings(&run).unwrap();
        assert_eq!(verifier.role, Role::Verifier);
        assert!(verifier.jwt_secret.is_none(), "a verifier holds no secret");
        assert_eq!(verifier.jwt_denylist, DenylistMode::Off);
        let issuer = mode.issuer_settings(&run).unwrap().unwrap();
        assert_eq!(issuer.role, Role::Issuer);
        assert_eq!(issuer.jwt_alg, JwtAlg::EdDsa);
        // The same denylist key space, so the verifier asks what the issuer's logouts write.
        assert_eq!(issuer.redis_prefix, verifier.redis_prefix);
        // The same verified-token cache as the key-pair modes that issue their own tokens.
        let eddsa = by_key("jwt-eddsa").unwrap().settings(&run).unwrap();
        assert_eq!(verifier.jwt_verify_cache, eddsa.jwt_verify_cache);
        assert_eq!(verifier.jwt_denylist, eddsa.jwt_denylist);
        assert!(!mode.needs_twin());
        assert!(
            by_key("jwt-eddsa")
                .unwrap()
                .issuer_settings(&run)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_subset_keeps_the_tables_order_and_an_unknown_name_lists_the_modes() {
        let picked = selected(&["jwt".to_owned(), "session".to_owned()]);
        let rows: Vec<_> = picked.iter().map(|m| m.row).collect();
        assert_eq!(rows, vec![SESSION, JWT_OFF]);
        assert_eq!(selected(&[]).len(), MODES.len());
        let err = parse_key("redis-fast").unwrap_err();
        assert!(err.contains("no mode \"redis-fast\""), "{err}");
        assert!(err.contains("session,session-metrics-off,redis"), "{err}");
    }
}
