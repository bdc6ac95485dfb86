//! Settings: one [`Settings`] type built at the edge, from flags over `AUTHLAB_*` environment
//! variables over defaults (clap does the layering). Backends never read the environment; they get
//! the typed pieces they need from here.
//!
//! Every setting, its flag, its variable, its default and what it means are listed in
//! `docs/configuration.md`, a table generated from the definitions below ([`mod@reference`]): a
//! setting's doc comment here is its description there.

pub mod reference;

use std::path::PathBuf;
use std::str::FromStr;
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

/// Whether and how the JWT backend checks its denylist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DenylistMode {
    /// One Redis round trip per request (`EXISTS`).
    On,
    /// No denylist: pure stateless JWT; a logged-out token stays valid until it expires.
    Off,
    /// The denylist's answers kept in process memory, kept current by Redis invalidations
    /// (client-side caching); fails closed (503) while it cannot vouch for them.
    Cached,
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

/// How the Redis-backed pieces hold their connections (`--redis-pool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RedisPool {
    /// One multiplexed connection per worker thread, pipelining every in-flight command: the
    /// default, and the fast one.
    Multiplexed,
    /// deadpool-redis as its documentation shows it: one connection lent per command, checked
    /// with `UNWATCH` + `PING` at every checkout. For comparison: it caps throughput at pool size
    /// over the round trip, and doubles the round trips.
    Deadpool,
    /// deadpool at its best: no checkout `PING` (a connection that fails is dropped from the
    /// pool instead). Give it `--redis-pool-size` >= the requests in flight.
    DeadpoolFast,
}

/// How to reach Redis: declared once, and shared by `authlab serve` and `authlab compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisSettings {
    /// Redis for the redis backend, refresh tokens and the JWT denylist: `redis://HOST:PORT[/DB]`
    /// (`rediss://` for TLS), `redis+cluster://HOST:PORT,HOST:PORT,...` (seed nodes of a Redis
    /// Cluster; `rediss+cluster://` for TLS) or `redis+sentinel://HOST:PORT,.../MASTER-NAME`. The
    /// server starts even if it is down.
    #[arg(
        id = "redis_url",
        long = "redis-url",
        value_name = "URL",
        env = "AUTHLAB_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        value_parser = parse_redis_url
    )]
    pub url: String,

    /// Longest wait for Redis (connect, and each reply) before answering 503.
    #[arg(id = "redis_timeout", long = "redis-timeout", value_name = "DURATION", env = "AUTHLAB_REDIS_TIMEOUT", default_value = "500ms", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Replicas that must confirm (Redis `WAIT`) every write that ends a credential (logout,
    /// logout-all, revocations, refresh rotation, JWT denylist entries) before it is answered;
    /// fewer within --redis-confirm-timeout answers 503, so a failover cannot undo an answered
    /// logout. `auto`: 1 for redis+sentinel:// and redis+cluster://, 0 for one Redis (redis://,
    /// which has nothing to fail over to; give 1 if that URL is a replicated master).
    #[arg(
        id = "redis_confirm_replicas",
        long = "redis-confirm-replicas",
        value_name = "N|auto",
        env = "AUTHLAB_REDIS_CONFIRM_REPLICAS",
        default_value = "auto",
        value_parser = parse_confirm_replicas
    )]
    pub confirm_replicas: ConfirmReplicas,

    /// Longest wait for those replicas (shorter than --redis-timeout, and on a cluster than
    /// --redis-cluster-timeout).
    #[arg(id = "redis_confirm_timeout", long = "redis-confirm-timeout", value_name = "DURATION", env = "AUTHLAB_REDIS_CONFIRM_TIMEOUT", default_value = "200ms", value_parser = parse_duration)]
    pub confirm_timeout: Duration,

    /// On a Redis Cluster: the longest wait for one node's answer. Short, so a dead master is
    /// given up on quickly (then retried, within the deadline).
    #[arg(id = "redis_cluster_timeout", long = "redis-cluster-timeout", value_name = "DURATION", env = "AUTHLAB_REDIS_CLUSTER_TIMEOUT", default_value = "250ms", value_parser = parse_duration)]
    pub cluster_timeout: Duration,

    /// On a Redis Cluster: the longest a request waits for Redis, its retries included, before
    /// answering 503. A dead master costs a burst of 503s this long, not a stall of the whole
    /// failover.
    #[arg(id = "redis_cluster_deadline", long = "redis-cluster-deadline", value_name = "DURATION", env = "AUTHLAB_REDIS_CLUSTER_DEADLINE", default_value = "1s", value_parser = parse_duration)]
    pub cluster_deadline: Duration,

    /// On a Redis Cluster: `FIRST..LONGEST` wait before retrying a redirected or failed command
    /// (growing from the first to the longest), so requests succeed right after a failover.
    #[arg(id = "redis_cluster_retry_wait", long = "redis-cluster-retry-wait", value_name = "MIN..MAX", env = "AUTHLAB_REDIS_CLUSTER_RETRY_WAIT", default_value = "20ms..200ms", value_parser = parse_retry_wait)]
    pub cluster_retry_wait: RetryWait,

    /// How connections are held: `multiplexed` (one per worker, pipelined), or a deadpool-redis
    /// pool lending one per command, `deadpool` (with its `UNWATCH` + `PING` at checkout) or
    /// `deadpool-fast` (no checkout ping). The pools are there to be measured against the default.
    #[arg(
        id = "redis_pool",
        long = "redis-pool",
        env = "AUTHLAB_REDIS_POOL",
        value_enum,
        default_value = "multiplexed"
    )]
    pub pool: RedisPool,

    /// Most connections a deadpool pool opens (default: four per core, deadpool's own default).
    #[arg(
        id = "redis_pool_size",
        long = "redis-pool-size",
        value_name = "N",
        env = "AUTHLAB_REDIS_POOL_SIZE",
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub pool_size: Option<u16>,
}

/// How many replicas confirm a write that ends a credential (`--redis-confirm-replicas`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmReplicas {
    /// By topology: 1 behind Sentinel or in a Cluster, 0 for one Redis.
    Auto,
    /// Exactly this many.
    Exactly(u32),
}

impl RedisSettings {
    /// The replicas a credential-ending write waits for, `auto` resolved by the URL's form.
    pub fn confirm_replicas(&self) -> u32 {
        match self.confirm_replicas {
            ConfirmReplicas::Exactly(n) => n,
            ConfirmReplicas::Auto => {
                let replicated = ["redis+sentinel://", "redis+cluster://", "rediss+cluster://"];
                u32::from(replicated.iter().any(|form| self.url.starts_with(form)))
            }
        }
    }
}

/// The first and the longest wait before a retry (`--redis-cluster-retry-wait 20ms..200ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryWait {
    /// The first wait.
    pub min: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl std::fmt::Display for RetryWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}..{}",
            flag_duration(self.min),
            flag_duration(self.max)
        )
    }
}

/// How access JWTs are signed (`--jwt-alg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JwtAlg {
    /// HMAC-SHA256 with the JWT secret: every instance that verifies can also sign.
    #[value(name = "HS256")]
    Hs256,
    /// Ed25519 key pairs from `--jwt-keys-dir`; the public keys are published as a JWKS.
    #[value(name = "EdDSA")]
    EdDsa,
    /// ECDSA P-256 key pairs from `--jwt-keys-dir`; the public keys are published as a JWKS.
    #[value(name = "ES256")]
    Es256,
}

impl JwtAlg {
    /// The name on the command line and in a token's `alg`.
    pub fn name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|value| value.get_name().to_owned())
            .unwrap_or_default()
    }
}

/// What an instance does with JWTs (`--role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Issues and verifies, with whatever `--jwt-alg` says (today's single-instance behaviour).
    All,
    /// The auth server: issues (login, refresh), ends logins (logout), publishes the JWKS, and
    /// verifies too (logout and refresh need it). Signs with `--jwt-alg EdDSA|ES256` only: an
    /// HMAC secret cannot be split between who signs and who verifies.
    Issuer,
    /// An application server: verifies access tokens with the keys of the issuer's JWKS
    /// (`--jwks-url`) and holds no private key. The issuing routes of `/jwt` answer `501
    /// not_an_issuer`.
    Verifier,
}

/// The environment variable `authlab serve` reads the JWT secret itself from: the one setting
/// with no flag, since a command line is shown to everyone running `ps`.
pub const JWT_SECRET_VARIABLE: &str = "AUTHLAB_JWT_SECRET";

/// Everything `authlab serve` can be told.
#[derive(Clone, clap::Args)]
pub struct Settings {
    /// Address and port to listen on (port 0 picks a free one).
    #[arg(long, env = "AUTHLAB_BIND", default_value = "127.0.0.1:8080", value_parser = parse_bind)]
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
    /// Without it or `AUTHLAB_JWT_SECRET`, a random secret is generated at start-up, with a
    /// warning: JWTs then die with the process and no other instance accepts them.
    #[arg(long, env = "AUTHLAB_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,

    /// The secret itself, from [`JWT_SECRET_VARIABLE`] only (a flag would show it in `ps`).
    #[arg(skip)]
    pub jwt_secret: Option<SecretString>,

    /// The `iss` claim written into and required of every JWT.
    #[arg(long, env = "AUTHLAB_JWT_ISSUER", default_value = "authlab")]
    pub jwt_issuer: String,

    /// How access JWTs are signed. `EdDSA` and `ES256` sign with the active key of
    /// `--jwt-keys-dir` and publish the public keys at `/.well-known/jwks.json`; refresh tokens
    /// stay as they are (the secret still protects them).
    #[arg(long, env = "AUTHLAB_JWT_ALG", value_enum, default_value = "HS256")]
    pub jwt_alg: JwtAlg,

    /// Directory of key pairs for `--jwt-alg EdDSA|ES256`, managed with `authlab keys`: one
    /// PKCS#8 file per key (mode 0600; refused if group or world can read it) and a state file.
    #[arg(long, env = "AUTHLAB_JWT_KEYS_DIR", value_name = "DIR")]
    pub jwt_keys_dir: Option<PathBuf>,

    /// How often the key directory is read again (a rotation reaches every instance within
    /// this); a directory that fails to load keeps the keys already loaded.
    #[arg(
        long,
        env = "AUTHLAB_JWT_KEYS_RELOAD",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub jwt_keys_reload: Duration,

    /// What this instance does with JWTs: `all` (issue and verify), `issuer` (the auth server:
    /// needs `--jwt-alg EdDSA|ES256`), or `verifier` (checks tokens with the keys of
    /// `--jwks-url`, holds no private key: refuses `--jwt-secret-file`, `AUTHLAB_JWT_SECRET` and
    /// `--jwt-keys-dir`; login, refresh, logout and the other issuing routes of `/jwt` answer
    /// `501 not_an_issuer`). See docs/backends.md, "Issuer and verifier".
    #[arg(long, env = "AUTHLAB_ROLE", value_enum, default_value = "all")]
    pub role: Role,

    /// The issuer's JWKS (`https://auth.example/.well-known/jwks.json`), for `--role verifier`
    /// only. Fetched at start-up and then in the background; keys named by a token (`jku`,
    /// `x5u`) are never fetched.
    #[arg(long, env = "AUTHLAB_JWKS_URL", value_name = "URL")]
    pub jwks_url: Option<String>,

    /// How often a verifier fetches the JWKS again when the answer has no `Cache-Control:
    /// max-age` (a `max-age` is honoured, clamped to 30s..1h).
    #[arg(
        long,
        env = "AUTHLAB_JWKS_REFRESH",
        value_name = "DURATION",
        default_value = "5m",
        value_parser = parse_duration
    )]
    pub jwks_refresh: Duration,

    /// A token naming a key the verifier does not hold makes it fetch the JWKS at once (the
    /// issuer may have rotated), at most once per this interval, one fetch at a time: a flood
    /// of made-up `kid`s cannot make it hammer the issuer.
    #[arg(
        long,
        env = "AUTHLAB_JWKS_UNKNOWN_KID_COOLDOWN",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_duration
    )]
    pub jwks_unknown_kid_cooldown: Duration,

    /// How long a verifier keeps using its last good JWKS while fetches fail; after that, JWT
    /// requests answer `503 jwks_unavailable` (as they do before the first good fetch).
    #[arg(
        long,
        env = "AUTHLAB_JWKS_MAX_STALE",
        value_name = "DURATION",
        default_value = "24h",
        value_parser = parse_duration
    )]
    pub jwks_max_stale: Duration,

    /// How many access tokens verified with EdDSA/ES256 keys are remembered, by their exact
    /// bytes, until their `exp` (an asymmetric verify costs ~100 HMACs); `0` turns it off.
    /// The denylist is still asked on every request, and a key leaving the key set stops its
    /// cached tokens. HS256 tokens are not cached.
    #[arg(
        long,
        env = "AUTHLAB_JWT_VERIFY_CACHE",
        value_name = "ENTRIES",
        default_value = "100000"
    )]
    pub jwt_verify_cache: usize,

    /// Check a Redis denylist on every JWT request so logout really revokes (`off`: pure
    /// stateless JWT, no I/O per request, and a logged-out token stays valid until it expires;
    /// `cached`: the answers are kept in process memory and Redis says when one changes, so a
    /// revocation still reaches every instance within 5 ms; see docs/backends.md).
    #[arg(long, env = "AUTHLAB_JWT_DENYLIST", value_enum, default_value = "on")]
    pub jwt_denylist: DenylistMode,

    /// Serve verified redis-backend tokens from process memory, kept coherent by Redis
    /// (RESP3 client tracking): a logout anywhere still ends the token everywhere within 5 ms,
    /// and while Redis cannot vouch for the cache, requests go to Redis (503 if it is down).
    /// On one Redis, behind Sentinel or on a Cluster (a tracker per master). See
    /// docs/backends.md.
    #[arg(long, env = "AUTHLAB_REDIS_CACHE", value_enum, default_value = "off")]
    pub redis_cache: Switch,

    /// Most entries each client-side cache holds (`--redis-cache`, `--jwt-denylist cached`).
    #[arg(
        long,
        env = "AUTHLAB_REDIS_CACHE_SIZE",
        value_name = "ENTRIES",
        default_value_t = 100_000
    )]
    pub redis_cache_size: usize,

    /// The client-side caches' staleness bound W: a cached answer is served only while a reply
    /// that Redis sent less than W ago proves every invalidation before it arrived, so W is the
    /// longest a silent failure (a hung Redis, a lost network) can serve a revoked token. Trust
    /// is earned on demand: an idle instance sends Redis nothing; a busy one at most 2/W
    /// heartbeats a second (per master, on a Cluster).
    #[arg(
        long,
        env = "AUTHLAB_REDIS_CACHE_STALENESS",
        value_name = "DURATION",
        default_value = "5ms",
        value_parser = parse_duration
    )]
    pub redis_cache_staleness: Duration,

    /// Lifetime of redis and jwt access tokens (`900s`, `15m`, ...).
    #[arg(long, env = "AUTHLAB_ACCESS_TTL", default_value = "15m", value_parser = parse_duration)]
    pub access_ttl: Duration,

    /// Lifetime of a refresh token (redis and jwt); every refresh starts a new one.
    #[arg(long, env = "AUTHLAB_REFRESH_TTL", default_value = "14d", value_parser = parse_duration)]
    pub refresh_ttl: Duration,

    /// How long a spent refresh token may be exchanged again for the same successor (two tabs
    /// refreshing at once), before a reuse counts as theft.
    #[arg(long, env = "AUTHLAB_REFRESH_GRACE", default_value = "10s", value_parser = parse_grace)]
    pub refresh_grace: Duration,

    /// Failed logins for one account name (known or not), and wrong old passwords at
    /// `/users/me/password`, within `--login-window`, after which every login for that name
    /// answers 429 until the window has passed. Counted in Redis, shared by every instance.
    #[arg(long, env = "AUTHLAB_LOGIN_MAX_FAILURES", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_max_failures: u32,

    /// The fixed window of login throttling: it starts at the first failure and is not reset by
    /// a successful login.
    #[arg(long, env = "AUTHLAB_LOGIN_WINDOW", default_value = "15m", value_parser = parse_duration)]
    pub login_window: Duration,

    /// Failed logins from one client address (IPv6: one /64), for any names, within
    /// `--login-window`, after which every login from it answers 429.
    #[arg(long, env = "AUTHLAB_LOGIN_IP_MAX_FAILURES", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub login_ip_max_failures: u32,

    /// Registration attempts (`POST /users`) from one client address within `--login-window`.
    #[arg(long, env = "AUTHLAB_REGISTER_IP_MAX", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub register_ip_max: u32,

    /// A proxy (address or CIDR range) whose `X-Forwarded-For` is believed; repeatable (the
    /// variable takes a comma-separated list). Default none: the client address is always the
    /// connection's peer and the header is ignored.
    #[arg(
        long = "trusted-proxy",
        value_name = "CIDR",
        env = "AUTHLAB_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = crate::client_address::Cidr::from_str
    )]
    pub trusted_proxies: Vec<crate::client_address::Cidr>,

    /// This instance's name in audit events, the start-up log and the `X-Authlab-Instance` header
    /// of every response (1-64 of `A-Za-z0-9._-`; default: 8 random hex digits chosen at start-up).
    #[arg(long, env = "AUTHLAB_INSTANCE_ID", value_parser = parse_instance_id)]
    pub instance_id: Option<String>,

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
    #[arg(long, env = "AUTHLAB_SESSION_SWEEP_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub session_sweep_interval: Duration,

    /// Mark the session cookie `Secure` (sent over HTTPS only). Turn on behind TLS.
    #[arg(long, env = "AUTHLAB_COOKIE_SECURE")]
    pub cookie_secure: bool,

    /// UNSAFE: also accept `?token=` on redis and jwt routes. URLs end up in access logs, proxy
    /// logs, browser history and `Referer` headers, and the token with them.
    #[arg(long, env = "AUTHLAB_ALLOW_QUERY_TOKEN")]
    pub allow_query_token: bool,

    /// An origin (`https://app.example.com`) whose pages may call this API with credentials:
    /// CORS answers it (credentials allowed, `Authorization` and `Content-Type` headers), and the
    /// CSRF check trusts it. Repeat the flag for more; exact match only, never `*`. Written as
    /// browsers send it: lower case, no path, no trailing slash, no default port. Default none:
    /// no CORS headers at all.
    #[arg(
        long = "cors-origin",
        env = "AUTHLAB_CORS_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ',',
        value_parser = parse_origin
    )]
    pub cors_origins: Vec<String>,

    /// File holding the secret that callers of `/redis/introspect` and `/jwt/introspect` send as
    /// `Authorization: Bearer <secret>` (at least 32 bytes; one trailing newline is ignored).
    /// Without it, introspection answers 401 to everybody.
    #[arg(long, env = "AUTHLAB_INTROSPECTION_SECRET_FILE")]
    pub introspection_secret_file: Option<PathBuf>,

    /// Number of HTTP worker threads (default: one per core).
    #[arg(long, env = "AUTHLAB_WORKERS", value_parser = parse_workers)]
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

    /// Count decisions, verify latency and Redis round trips, served at `/metrics` in the
    /// Prometheus text format (`off`: no counting, and `/metrics` answers 404).
    #[arg(long, env = "AUTHLAB_METRICS", value_enum, default_value = "on")]
    pub metrics: Switch,
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

    /// The settings in force, one `(name, value)` line each, for the start-up log. Secrets are
    /// not shown, and passwords inside URLs are masked.
    pub fn summary(&self) -> Vec<(&'static str, String)> {
        let secret = match (&self.jwt_secret_file, &self.jwt_secret) {
            (Some(path), _) => format!("from file {}", path.display()),
            (None, Some(_)) => format!("from {JWT_SECRET_VARIABLE}"),
            (None, None) => "generated at start-up".to_owned(),
        };
        let duration = flag_duration;
        vec![
            ("bind", self.bind.clone()),
            ("database_url", redact_url(&self.database_url)),
            ("redis_url", redact_url(&self.redis.url)),
            (
                "redis_pool",
                match (self.redis.pool, self.redis.pool_size) {
                    (RedisPool::Multiplexed, _) => "multiplexed".to_owned(),
                    (pool, size) => format!(
                        "{} ({} connections)",
                        if pool == RedisPool::Deadpool {
                            "deadpool"
                        } else {
                            "deadpool-fast"
                        },
                        size.map_or_else(authlab_redis::PoolSettings::default_size, usize::from)
                    ),
                },
            ),
            ("redis_prefix", self.redis_prefix.clone()),
            (
                "redis_token_format",
                format!("{:?}", self.redis_token_format).to_lowercase(),
            ),
            ("redis_timeout", duration(self.redis.timeout)),
            (
                "redis_cache",
                format!(
                    "{} ({} entries)",
                    format!("{:?}", self.redis_cache).to_lowercase(),
                    self.redis_cache_size
                ),
            ),
            (
                "redis_confirm",
                match self.redis.confirm_replicas() {
                    0 => "off (no replica confirms a revocation)".to_owned(),
                    n => format!(
                        "{n} replica(s) within {}",
                        duration(self.redis.confirm_timeout)
                    ),
                },
            ),
            (
                "redis_cluster_timeout",
                duration(self.redis.cluster_timeout),
            ),
            (
                "redis_cluster_deadline",
                duration(self.redis.cluster_deadline),
            ),
            (
                "redis_cluster_retry_wait",
                self.redis.cluster_retry_wait.to_string(),
            ),
            ("jwt_secret", secret),
            ("jwt_issuer", self.jwt_issuer.clone()),
            (
                "jwt_alg",
                match &self.jwt_keys_dir {
                    Some(dir) => format!("{} (keys in {})", self.jwt_alg.name(), dir.display()),
                    None => self.jwt_alg.name().to_owned(),
                },
            ),
            (
                "role",
                match (&self.role, &self.jwks_url) {
                    (Role::Verifier, Some(url)) => format!(
                        "verifier (JWKS from {}, refresh {}, unknown-kid cooldown {}, max stale {})",
                        redact_url(url),
                        duration(self.jwks_refresh),
                        duration(self.jwks_unknown_kid_cooldown),
                        duration(self.jwks_max_stale)
                    ),
                    (role, _) => format!("{role:?}").to_lowercase(),
                },
            ),
            (
                "jwt_verify_cache",
                match self.jwt_verify_cache {
                    0 => "off".to_owned(),
                    n => format!("{n} entries"),
                },
            ),
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
            (
                "login_throttle",
                format!(
                    "{} failures per name, {} per address, {} registrations per address, per {}",
                    self.login_max_failures,
                    self.login_ip_max_failures,
                    self.register_ip_max,
                    duration(self.login_window)
                ),
            ),
            (
                "trusted_proxies",
                if self.trusted_proxies.is_empty() {
                    "none".to_owned()
                } else {
                    let ranges: Vec<String> = self
                        .trusted_proxies
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    ranges.join(", ")
                },
            ),
            (
                "instance_id",
                self.instance_id
                    .clone()
                    .unwrap_or_else(|| "random, chosen at start-up".to_owned()),
            ),
            ("session_ttl", duration(self.session_ttl)),
            ("session_max_age", duration(self.session_max_age)),
            (
                "session_sweep_interval",
                duration(self.session_sweep_interval),
            ),
            ("cookie_secure", self.cookie_secure.to_string()),
            ("allow_query_token", self.allow_query_token.to_string()),
            (
                "cors_origins",
                if self.cors_origins.is_empty() {
                    "none".to_owned()
                } else {
                    self.cors_origins.join(", ")
                },
            ),
            (
                "introspection_secret",
                self.introspection_secret_file
                    .as_ref()
                    .map_or("none: introspection refused".to_owned(), |path| {
                        format!("from file {}", path.display())
                    }),
            ),
            (
                "workers",
                self.workers
                    .map_or("one per core".to_owned(), |n| n.to_string()),
            ),
            (
                "password_min_length",
                self.password_policy.min_chars().to_string(),
            ),
            ("metrics", format!("{:?}", self.metrics).to_lowercase()),
        ]
    }
}

/// Parses `30s`, `15m`, `1h 30m`, `250ms` (humantime), refusing zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be greater than zero".to_owned());
    }
    Ok(duration)
}

/// The grace window: `0s` (no window at all) or whole seconds, because the window is kept in
/// Redis in seconds: `500ms` would silently become no window.
fn parse_grace(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.subsec_nanos() != 0 {
        return Err("must be whole seconds (0s for no grace window, or 1s and up)".to_owned());
    }
    Ok(duration)
}

/// `HOST:PORT` (port 0 picks a free one), checked before anything else starts.
fn parse_bind(text: &str) -> Result<String, String> {
    use std::net::ToSocketAddrs;
    let expected = "expected HOST:PORT, for example 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080";
    let Some((_, port)) = text.rsplit_once(':') else {
        return Err(expected.to_owned());
    };
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "the port is not a number from 0 to 65535; {expected}"
        ));
    }
    match text.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(_)) => Ok(text.to_owned()),
        _ => Err(format!("the host does not resolve; {expected}")),
    }
}

/// The URL forms Redis is reached by, shown whenever a URL is refused.
pub use authlab_redis::REDIS_URL_FORMS;

/// A Redis URL of an accepted form (see [`authlab_redis::RedisTarget`]), checked before anything
/// else starts; the message names the accepted forms.
fn parse_redis_url(text: &str) -> Result<String, String> {
    authlab_redis::RedisTarget::parse(text)
        .map(|_| text.to_owned())
        .map_err(|err| err.to_string())
}

/// `MIN..MAX`, two durations with `0 < MIN <= MAX` (`20ms..200ms`).
fn parse_retry_wait(text: &str) -> Result<RetryWait, String> {
    let expected = "expected FIRST..LONGEST, two durations such as 20ms..200ms";
    let (min, max) = text.split_once("..").ok_or(expected)?;
    let (min, max) = (parse_duration(min.trim()), parse_duration(max.trim()));
    match (min, max) {
        (Ok(min), Ok(max)) if min <= max => Ok(RetryWait { min, max }),
        (Ok(_), Ok(_)) => Err(format!(
            "the first wait is longer than the longest; {expected}"
        )),
        (Err(err), _) | (_, Err(err)) => Err(format!("{err}; {expected}")),
    }
}

/// `auto` or a number of replicas.
fn parse_confirm_replicas(text: &str) -> Result<ConfirmReplicas, String> {
    if text == "auto" {
        return Ok(ConfirmReplicas::Auto);
    }
    match text.parse::<u32>() {
        Ok(n) if n <= 16 => Ok(ConfirmReplicas::Exactly(n)),
        _ => Err("expected `auto` or a number of replicas from 0 to 16".to_owned()),
    }
}

/// At least one worker (`0` would start a server that never answers).
fn parse_workers(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1 (leave it unset for one per core)".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a whole number of worker threads, at least 1".to_owned()),
    }
}

/// A duration in the spelling the flags take, in its largest whole unit (`14d`, `15m`, `500ms`),
/// so the start-up log can be pasted back as flags.
pub fn flag_duration(duration: Duration) -> String {
    if duration.subsec_nanos() != 0 || duration.is_zero() {
        return format!("{}ms", duration.as_millis());
    }
    let seconds = duration.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds.is_multiple_of(size) {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

fn parse_password_policy(text: &str) -> Result<PasswordPolicy, String> {
    let min_chars: usize = text
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number of characters"))?;
    PasswordPolicy::new(min_chars).map_err(|e| e.to_string())
}

/// An instance id: 1-64 characters of `A-Za-z0-9._-` (it goes into logs and a response header).
fn parse_instance_id(text: &str) -> Result<String, String> {
    let valid = (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(text.to_owned())
    } else {
        Err("must be 1-64 characters of A-Z, a-z, 0-9, '.', '_' and '-'".to_owned())
    }
}

/// An origin exactly as a browser writes it in the `Origin` header (`scheme://host[:port]`), since
/// CORS and the CSRF check compare origins byte for byte: `http` or `https`, a lower-case host,
/// no path, no trailing slash, no default port; never `*` or `null`.
fn parse_origin(text: &str) -> Result<String, String> {
    let shape = "an origin is written `https://host` or `http://host:port`";
    let (scheme, authority) = text
        .split_once("://")
        .ok_or_else(|| format!("{text:?}: {shape}"))?;
    let default_port = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => {
            return Err(format!(
                "{text:?}: the scheme must be http or https ({shape})"
            ));
        }
    };
    let (host, port) = match authority.rsplit_once(':') {
        // An IPv6 literal's colons are inside the brackets.
        Some((host, port)) if !port.contains(']') => (host, Some(port)),
        _ => (authority, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.[]:".contains(&b));
    if !host_ok {
        return Err(format!(
            "{text:?}: the host must be lower case, with no path, no trailing slash and no \
             wildcard ({shape})"
        ));
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) || port.starts_with('0') {
            return Err(format!(
                "{text:?}: the port must be a number from 1 to 65535"
            ));
        }
        if authority.ends_with(default_port) {
            return Err(format!(
                "{text:?}: leave out the default port {}, as browsers do",
                &default_port[1..]
            ));
        }
    }
    Ok(text.to_owned())
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
        assert_eq!(s.jwt_denylist, DenylistMode::On);
        assert_eq!(s.redis_cache, Switch::Off);
        assert_eq!(s.redis_cache_size, 100_000);
        assert_eq!(s.redis_cache_staleness, Duration::from_millis(5));
        assert!(!s.allow_query_token);
        assert!(!s.cookie_secure);
        assert_eq!(s.password_policy.min_chars(), 15);
        assert_eq!(s.login_max_failures, 10);
        assert_eq!(s.login_window, Duration::from_secs(900));
        assert_eq!(s.login_ip_max_failures, 100);
        assert_eq!(s.register_ip_max, 20);
        assert!(s.trusted_proxies.is_empty());
        assert_eq!(s.instance_id, None);
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
    fn trusted_proxies_repeat_and_split_on_commas() {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        let parsed = <Only as clap::Parser>::try_parse_from([
            "authlab",
            "--trusted-proxy",
            "10.0.0.0/8,127.0.0.1",
            "--trusted-proxy",
            "fd00::/8",
        ]);
        let ranges: Vec<String> = match parsed {
            Ok(only) => only
                .settings
                .trusted_proxies
                .iter()
                .map(ToString::to_string)
                .collect(),
            Err(err) => panic!("{err}"),
        };
        assert_eq!(ranges, ["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"]);
        let refused =
            <Only as clap::Parser>::try_parse_from(["authlab", "--trusted-proxy", "10.0.0.1/8"]);
        assert!(refused.is_err());
    }

    #[test]
    fn instance_ids_are_short_and_plain() {
        assert_eq!(
            parse_instance_id("web-1.eu_west"),
            Ok("web-1.eu_west".to_owned())
        );
        for bad in ["", "has space", "a\nb", &"x".repeat(65), "é"] {
            assert!(parse_instance_id(bad).is_err(), "{bad:?}");
        }
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
    fn cors_origins_are_repeatable_and_comma_separated() {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        let parse = |args: &[&str]| {
            <Only as clap::Parser>::try_parse_from(
                std::iter::once("authlab").chain(args.iter().copied()),
            )
            .map(|only| only.settings.cors_origins)
        };
        assert_eq!(parse(&[]).ok(), Some(vec![]));
        assert_eq!(
            parse(&[
                "--cors-origin",
                "https://app.example",
                "--cors-origin",
                "http://127.0.0.1:3000,https://[::1]:8443"
            ])
            .ok(),
            Some(vec![
                "https://app.example".to_owned(),
                "http://127.0.0.1:3000".to_owned(),
                "https://[::1]:8443".to_owned()
            ])
        );
        assert!(parse(&["--cors-origin", "*"]).is_err());
    }

    #[test]
    fn origins_must_be_written_as_browsers_send_them() {
        for good in [
            "https://app.example",
            "http://localhost:3000",
            "http://[::1]:8080",
        ] {
            assert_eq!(parse_origin(good).as_deref(), Ok(good));
        }
        for bad in [
            "*",
            "null",
            "app.example",
            "ftp://app.example",
            "https://app.example/",
            "https://app.example/path",
            "https://App.Example",
            "https://*.example",
            "https://app.example:443",
            "http://app.example:80",
            "https://app.example:0",
            "https://app.example:99999",
            "https://",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn revocations_wait_for_a_replica_by_default_wherever_there_is_one() {
        let mut redis = Settings::defaults().redis;
        assert_eq!(redis.confirm_replicas, ConfirmReplicas::Auto);
        assert_eq!(redis.confirm_timeout, Duration::from_millis(200));
        assert_eq!(
            redis.confirm_replicas(),
            0,
            "one Redis has nothing to fail over to"
        );
        redis.url = "redis+sentinel://127.0.0.1:26379/authlab".to_owned();
        assert_eq!(redis.confirm_replicas(), 1);
        redis.url = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001".to_owned();
        assert_eq!(redis.confirm_replicas(), 1);
        redis.confirm_replicas = ConfirmReplicas::Exactly(0);
        assert_eq!(redis.confirm_replicas(), 0, "an explicit 0 turns it off");
        assert_eq!(parse_confirm_replicas("2"), Ok(ConfirmReplicas::Exactly(2)));
        assert!(parse_confirm_replicas("-1").unwrap_err().contains("auto"));
        assert!(parse_confirm_replicas("many").is_err());
    }

    #[test]
    fn first_run_mistakes_are_refused_with_the_expected_form() {
        assert!(parse_bind("nonsense").unwrap_err().contains("HOST:PORT"));
        assert!(parse_bind("127.0.0.1:99999").unwrap_err().contains("port"));
        assert_eq!(parse_bind("127.0.0.1:0"), Ok("127.0.0.1:0".to_owned()));
        let refused = parse_redis_url("http://x").unwrap_err();
        for form in ["redis://", "redis+cluster://", "redis+sentinel://"] {
            assert!(refused.contains(form), "{refused}");
        }
        assert!(parse_redis_url("rediss://h:6380/2").is_ok());
        assert!(parse_redis_url("redis+cluster://a:7000,b:7001").is_ok());
        assert!(parse_redis_url("redis+sentinel://s:26379/mymaster").is_ok());
        assert!(parse_redis_url("redis+cluster://a").is_err());
        assert_eq!(
            parse_retry_wait("20ms..200ms"),
            Ok(RetryWait {
                min: Duration::from_millis(20),
                max: Duration::from_millis(200)
            })
        );
        for bad in ["20ms", "200ms..20ms", "0s..1s", "x..1s", ".."] {
            assert!(parse_retry_wait(bad).is_err(), "{bad}");
        }
        assert!(parse_workers("0").is_err());
        assert_eq!(parse_workers("2"), Ok(2));
        assert!(parse_grace("500ms").unwrap_err().contains("whole seconds"));
        assert_eq!(parse_grace("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_grace("10s"), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn logged_durations_use_the_flags_spelling() {
        assert_eq!(flag_duration(Duration::from_secs(14 * 86_400)), "14d");
        assert_eq!(flag_duration(Duration::from_secs(60)), "1m");
        assert_eq!(flag_duration(Duration::from_secs(900)), "15m");
        assert_eq!(flag_duration(Duration::from_secs(90)), "90s");
        assert_eq!(flag_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(flag_duration(Duration::ZERO), "0ms");
        let defaults = Settings::defaults().summary();
        let shown = |name| {
            defaults
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(shown("refresh_ttl").as_deref(), Some("14d"));
        assert_eq!(shown("session_sweep_interval").as_deref(), Some("1m"));
        assert_eq!(shown("redis_cluster_timeout").as_deref(), Some("250ms"));
        assert_eq!(shown("redis_cluster_deadline").as_deref(), Some("1s"));
        assert_eq!(
            shown("redis_cluster_retry_wait").as_deref(),
            Some("20ms..200ms")
        );
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
        assert_eq!(
            redact_url("redis+cluster://:pw@a:7000,b:7001"),
            "redis+cluster://:***@a:7000,b:7001"
        );
        assert_eq!(
            redact_url("redis+sentinel://app:pw@s:26379,t:26379/mymaster"),
            "redis+sentinel://app:***@s:26379,t:26379/mymaster"
        );
    }
}
