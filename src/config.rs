//! Settings: one [`Settings`] type built at the edge, from flags over `AUTHLAB_*` environment
//! variables over defaults (clap does the layering). Backends never read the environment; they get
//! the typed pieces they need from here.
//!
//! Every setting, its variable and its default:
//!
//! | flag | environment | default |
//! |---|---|---|
//! | `--bind` | `AUTHLAB_BIND` | `127.0.0.1:8080` |
//! | `--database-url` | `AUTHLAB_DATABASE_URL` | `sqlite://authlab.db` (created if missing) |
//! | `--redis-url` | `AUTHLAB_REDIS_URL` | `redis://127.0.0.1:6379` |
//! | `--redis-prefix` | `AUTHLAB_REDIS_PREFIX` | `authlab:` |
//! | `--redis-token-format` | `AUTHLAB_REDIS_TOKEN_FORMAT` | `uuid` (or `random256`) |
//! | `--redis-timeout` | `AUTHLAB_REDIS_TIMEOUT` | `500ms` |
//! | `--jwt-secret-file` | `AUTHLAB_JWT_SECRET_FILE` | none: a random secret, with a warning |
//! | (none: never on a command line) | `AUTHLAB_JWT_SECRET` | none |
//! | `--jwt-issuer` | `AUTHLAB_JWT_ISSUER` | `authlab` |
//! | `--jwt-denylist` | `AUTHLAB_JWT_DENYLIST` | `on` |
//! | `--access-ttl` | `AUTHLAB_ACCESS_TTL` | `15m` |
//! | `--refresh-ttl` | `AUTHLAB_REFRESH_TTL` | `14d` |
//! | `--refresh-grace` | `AUTHLAB_REFRESH_GRACE` | `10s` |
//! | `--jwt-refresh` | `AUTHLAB_JWT_REFRESH` | `stored` (or `stateless`) |
//! | `--session-ttl` | `AUTHLAB_SESSION_TTL` | `30m` |
//! | `--session-max-age` | `AUTHLAB_SESSION_MAX_AGE` | `8h` |
//! | `--session-sweep-interval` | `AUTHLAB_SESSION_SWEEP_INTERVAL` | `60s` |
//! | `--cookie-secure` | `AUTHLAB_COOKIE_SECURE` | off |
//! | `--allow-query-token` | `AUTHLAB_ALLOW_QUERY_TOKEN` | off |
//! | `--workers` | `AUTHLAB_WORKERS` | one per core |
//! | `--password-min-length` | `AUTHLAB_PASSWORD_MIN_LENGTH` | `15` (8 to 64) |

use std::path::PathBuf;
use std::time::Duration;

use authlab_users::PasswordPolicy;
use secrecy::SecretString;

/// `on` / `off`, for switches that are easier to read that way than as a bare flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

/// How the JWT backend's refresh tokens work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RefreshKind {
    /// Opaque, stored (hashed) in Redis, rotated on use, reuse detected, revocable.
    Stored,
    /// A long-lived signed refresh JWT: no server state, and no way to revoke it.
    Stateless,
}

/// How the redis backend writes the access tokens it issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RedisTokenFormat {
    /// A UUID v4 (36 characters, 122 random bits).
    Uuid,
    /// 32 bytes from the OS CSPRNG as base64url (43 characters, 256 random bits).
    Random256,
}

/// How to reach Redis: declared once, and shared by `authlab serve` and `authlab compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisSettings {
    /// Redis for the redis backend, refresh tokens and the JWT denylist. The server starts even
    /// if it is down.
    #[arg(
        id = "redis_url",
        long = "redis-url",
        env = "AUTHLAB_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub url: String,

    /// Longest wait for Redis (connect, and each reply) before answering 503.
    #[arg(id = "redis_timeout", long = "redis-timeout", env = "AUTHLAB_REDIS_TIMEOUT", default_value = "500ms", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Everything `authlab serve` can be told.
#[derive(Clone, clap::Args)]
pub struct Settings {
    /// Address and port to listen on (port 0 picks a free one).
    #[arg(long, env = "AUTHLAB_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// User store: `sqlite://FILE` (created if missing), `sqlite::memory:`, or `postgres://...`.
    #[arg(
        long,
        env = "AUTHLAB_DATABASE_URL",
        default_value = "sqlite://authlab.db"
    )]
    pub database_url: String,

    /// Where Redis is and how long to wait for it.
    #[command(flatten)]
    pub redis: RedisSettings,

    /// Prefix of every Redis key, so several runs or apps can share one Redis.
    #[arg(long, env = "AUTHLAB_REDIS_PREFIX", default_value = "authlab:")]
    pub redis_prefix: String,

    /// Access tokens of the redis backend: `uuid` (UUID v4, 122 random bits) or `random256` (32
    /// bytes from the OS CSPRNG as base64url, 256 bits, as OWASP ASVS 5.0's 128-bit minimum asks).
    /// Both are accepted whichever is set; Redis stores only their SHA-256.
    #[arg(
        long,
        env = "AUTHLAB_REDIS_TOKEN_FORMAT",
        value_enum,
        default_value = "uuid"
    )]
    pub redis_token_format: RedisTokenFormat,

    /// File holding the HS256 secret (at least 32 bytes; one trailing newline is ignored).
    #[arg(long, env = "AUTHLAB_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,

    /// The secret itself, from `AUTHLAB_JWT_SECRET` only (a flag would show it in `ps`).
    #[arg(skip)]
    pub jwt_secret: Option<SecretString>,

    /// The `iss` claim written into and required of every JWT.
    #[arg(long, env = "AUTHLAB_JWT_ISSUER", default_value = "authlab")]
    pub jwt_issuer: String,

    /// Check a Redis denylist on every JWT request so logout really revokes (`off`: pure
    /// stateless JWT, no I/O per request, and a logged-out token stays valid until it expires).
    #[arg(long, env = "AUTHLAB_JWT_DENYLIST", value_enum, default_value = "on")]
    pub jwt_denylist: Switch,

    /// Lifetime of redis and jwt access tokens (`900s`, `15m`, ...).
    #[arg(long, env = "AUTHLAB_ACCESS_TTL", default_value = "15m", value_parser = parse_duration)]
    pub access_ttl: Duration,

    /// Lifetime of a refresh token (redis and jwt); every refresh starts a new one.
    #[arg(long, env = "AUTHLAB_REFRESH_TTL", default_value = "14d", value_parser = parse_duration)]
    pub refresh_ttl: Duration,

    /// How long a spent refresh token may be exchanged again for the same successor (two tabs
    /// refreshing at once), before a reuse counts as theft.
    #[arg(long, env = "AUTHLAB_REFRESH_GRACE", default_value = "10s", value_parser = parse_duration_or_zero)]
    pub refresh_grace: Duration,

    /// JWT refresh tokens: `stored` (opaque, rotated, revocable, in Redis) or `stateless` (a
    /// long-lived refresh JWT that nothing can revoke: the articles' design, for comparison).
    #[arg(
        long,
        env = "AUTHLAB_JWT_REFRESH",
        value_enum,
        default_value = "stored"
    )]
    pub jwt_refresh: RefreshKind,

    /// Idle timeout of a session: unused this long, it expires; every use restarts the clock.
    #[arg(long, env = "AUTHLAB_SESSION_TTL", default_value = "30m", value_parser = parse_duration)]
    pub session_ttl: Duration,

    /// Absolute lifetime of a session, however active (also the cookie's Max-Age).
    #[arg(long, env = "AUTHLAB_SESSION_MAX_AGE", default_value = "8h", value_parser = parse_duration)]
    pub session_max_age: Duration,

    /// How often expired sessions are swept out of memory.
    #[arg(long, env = "AUTHLAB_SESSION_SWEEP_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub session_sweep_interval: Duration,

    /// Mark the session cookie `Secure` (sent over HTTPS only). Turn on behind TLS.
    #[arg(long, env = "AUTHLAB_COOKIE_SECURE")]
    pub cookie_secure: bool,

    /// UNSAFE: also accept `?token=` on redis and jwt routes. URLs end up in access logs, proxy
    /// logs, browser history and `Referer` headers, and the token with them.
    #[arg(long, env = "AUTHLAB_ALLOW_QUERY_TOKEN")]
    pub allow_query_token: bool,

    /// Number of HTTP worker threads (default: one per core).
    #[arg(long, env = "AUTHLAB_WORKERS")]
    pub workers: Option<usize>,

    /// Shortest password accepted at registration and password change, in characters after NFKC
    /// normalisation: 15 is NIST SP 800-63B rev. 4's minimum for a password used alone, 8 the
    /// lowest it allows; at most 64. It also sets how hard to guess zxcvbn must find a new
    /// password (see docs/security.md). Login never applies it: existing passwords keep working.
    #[arg(
        long = "password-min-length",
        env = "AUTHLAB_PASSWORD_MIN_LENGTH",
        value_name = "CHARS",
        default_value = "15",
        value_parser = parse_password_policy
    )]
    pub password_policy: PasswordPolicy,
}

impl Settings {
    /// The defaults, as `authlab serve` with no flags and no environment would have them (tests
    /// start from these).
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        // Parsing an empty command line cannot fail: every field has a default or is optional.
        match <Only as clap::Parser>::try_parse_from(["authlab"]) {
            Ok(only) => only.settings,
            Err(err) => unreachable!("defaults must parse: {err}"),
        }
    }

    /// One line per setting, for the start-up log. Secrets are not shown, and passwords inside
    /// URLs are masked.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let secret = match (&self.jwt_secret_file, &self.jwt_secret) {
            (Some(path), _) => format!("from file {}", path.display()),
            (None, Some(_)) => "from AUTHLAB_JWT_SECRET".to_owned(),
            (None, None) => "generated at start-up".to_owned(),
        };
        let duration = |d: Duration| humantime::format_duration(d).to_string();
        vec![
            ("bind", self.bind.clone()),
            ("database_url", redact_url(&self.database_url)),
            ("redis_url", redact_url(&self.redis.url)),
            ("redis_prefix", self.redis_prefix.clone()),
            (
                "redis_token_format",
                format!("{:?}", self.redis_token_format).to_lowercase(),
            ),
            ("redis_timeout", duration(self.redis.timeout)),
            ("jwt_secret", secret),
            ("jwt_issuer", self.jwt_issuer.clone()),
            (
                "jwt_denylist",
                format!("{:?}", self.jwt_denylist).to_lowercase(),
            ),
            (
                "jwt_refresh",
                format!("{:?}", self.jwt_refresh).to_lowercase(),
            ),
            ("access_ttl", duration(self.access_ttl)),
            ("refresh_ttl", duration(self.refresh_ttl)),
            ("refresh_grace", duration(self.refresh_grace)),
            ("session_ttl", duration(self.session_ttl)),
            ("session_max_age", duration(self.session_max_age)),
            ("session_sweep", duration(self.session_sweep_interval)),
            ("cookie_secure", self.cookie_secure.to_string()),
            ("allow_query_token", self.allow_query_token.to_string()),
            (
                "workers",
                self.workers
                    .map_or("one per core".to_owned(), |n| n.to_string()),
            ),
            (
                "password_min_length",
                self.password_policy.min_chars().to_string(),
            ),
        ]
    }
}

/// Parses `30s`, `15m`, `1h 30m`, `250ms` (humantime), refusing zero.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(duration)
}

/// Like [`parse_duration`], but `0s` is allowed (no grace window at all).
fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

/// `--password-min-length`: a whole number of characters that NIST SP 800-63B allows (8 or more)
/// and that keeps every 64-character password acceptable (64 or fewer).
fn parse_password_policy(text: &str) -> Result<PasswordPolicy, String> {
    let min_chars: usize = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number of characters"))?;
    PasswordPolicy::new(min_chars).map_err(|e| e.to_string())
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = Settings::defaults();
        assert_eq!(s.bind, "127.0.0.1:8080");
        assert_eq!(s.database_url, "sqlite://authlab.db");
        assert_eq!(s.redis.url, "redis://127.0.0.1:6379");
        assert_eq!(s.redis_prefix, "authlab:");
        assert_eq!(s.redis_token_format, RedisTokenFormat::Uuid);
        assert_eq!(s.access_ttl, Duration::from_secs(900));
        assert_eq!(s.session_ttl, Duration::from_secs(1800));
        assert_eq!(s.jwt_denylist, Switch::On);
        assert!(!s.allow_query_token);
        assert!(!s.cookie_secure);
        assert_eq!(s.password_policy.min_chars(), 15);
    }

    #[test]
    fn the_password_minimum_is_refused_under_8_and_over_64() {
        let min = |text| parse_password_policy(text).map(PasswordPolicy::min_chars);
        assert_eq!(min("8"), Ok(8));
        assert_eq!(min("64"), Ok(64));
        assert_eq!(
            min("7"),
            Err("the minimum password length must be 8 to 64 characters, not 7".to_owned())
        );
        assert_eq!(
            min("65"),
            Err("the minimum password length must be 8 to 64 characters, not 65".to_owned())
        );
        assert_eq!(
            min("ten"),
            Err("\"ten\" is not a whole number of characters".to_owned())
        );
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("900s"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/authlab"),
            "postgres://app:***@db:5432/authlab"
        );
        assert_eq!(
            redact_url("redis://:pw@127.0.0.1:6379"),
            "redis://:***@127.0.0.1:6379"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("sqlite://authlab.db"), "sqlite://authlab.db");
    }
}
