//! One way to build each backend as the server runs it: settings in, ready backend out; and
//! the [`BackendSet`], the one place that knows each mounted backend's type.
//!
//! [`crate::startup`] mounts what these functions build, and `authlab compare` and the benches
//! build their backends here too, so what they measure is exactly what the server serves.
//!
//! # Adding a backend
//! Its crate; a variant of [`BackendKind`] (its name, whether it issues refresh tokens); here, a
//! field of [`BackendSet`], its line in [`BackendSet::build`] and its [`BackendRoutes`] (which
//! capability routes it gets); and the docs. Metrics labels, audit fields, `/livez`, the OpenAPI
//! paths and the demo page's list follow from those.
//!
//! The Redis-backed pieces share one [`RedisConnection`] (a multiplexed connection per worker
//! thread, or a deadpool-redis pool with `--redis-pool deadpool`; nothing connects until the
//! first command, so building never needs Redis to be up). With `--redis-cache on` or
//! `--jwt-denylist cached`, each of those gets its own client-side cache ([`redis_cache`]): a
//! tracking connection on its own thread, started here.
//! Refresh-token families derive their successor key from the JWT secret (see authlab-redis
//! `families`), so every instance given the same secret agrees on successors.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use authlab_core::Clock;
use authlab_jwt::{JwtAuthenticator, JwtConfig, JwtSecret, KeyRing, RefreshMode};
use authlab_redis::{
    CacheConfig, ClusterTuning, FamilyConfig, PoolSettings, RedisBackendError, RedisConnection,
    RedisDenylist, RedisFamilies, RedisMetrics, RedisTimeouts, RedisTokenAuthenticator,
    RedisTokenConfig, TokenFormat, TrackedCache, WriteConfirmation,
};
use authlab_session::{SessionAuthenticator, SessionConfig};
use secrecy::SecretSlice;

use crate::backend_kind::BackendKind;
use crate::config::{
    DenylistMode, RedisPool, RedisSettings, RedisTokenFormat, RefreshKind, Settings, Switch,
};
use crate::metrics::Metrics;
use crate::routes::{
    AnyBackend, BackendRoutes, Mount, MountedBackend, backend_scope, lifecycle, registry_routes,
    token_routes,
};
use crate::transport::Transport;

/// The JWT backend as authlab mounts it: HS256 (or EdDSA/ES256 access tokens), the Redis denylist (if on), refresh-token
/// families in Redis (or stateless refresh JWTs).
pub type JwtBackend = JwtAuthenticator<RedisDenylist, RedisFamilies>;

/// The connection every Redis-backed piece shares, to whichever topology `--redis-url` names.
/// Fails only on a URL that does not parse (or names a topology this build lacks).
pub fn redis_connection(
    settings: &RedisSettings,
) -> Result<Arc<RedisConnection>, RedisBackendError> {
    redis_connection_with_metrics(settings, RedisMetrics::default())
}

/// The same, reporting each command's latency and failures to `metrics`.
pub fn redis_connection_with_metrics(
    settings: &RedisSettings,
    metrics: RedisMetrics,
) -> Result<Arc<RedisConnection>, RedisBackendError> {
    let timeouts = RedisTimeouts {
        connect: settings.timeout,
        response: settings.timeout,
        cluster: ClusterTuning {
            response_timeout: settings.cluster_timeout,
            request_deadline: settings.cluster_deadline,
            min_retry_wait: settings.cluster_retry_wait.min,
            max_retry_wait: settings.cluster_retry_wait.max,
        },
        ..RedisTimeouts::default()
    };
    let confirmation = WriteConfirmation {
        replicas: settings.confirm_replicas(),
        timeout: settings.confirm_timeout,
    };
    let connection = RedisConnection::new(&settings.url, timeouts)?
        .with_confirmation(confirmation)?
        .with_metrics(metrics);
    let pooled = |ping_on_checkout| PoolSettings {
        max_size: settings
            .pool_size
            .map_or_else(PoolSettings::default_size, usize::from),
        ping_on_checkout,
    };
    let connection = match settings.pool {
        RedisPool::Multiplexed => connection,
        RedisPool::Deadpool => connection.with_pool(pooled(true))?,
        RedisPool::DeadpoolFast => connection.with_pool(pooled(false))?,
    };
    Ok(Arc::new(connection))
}

/// In-memory sessions with the configured idle and absolute lifetimes, timed by `clock`.
pub fn session_backend(settings: &Settings, clock: Arc<dyn Clock>) -> SessionAuthenticator {
    SessionAuthenticator::new(
        SessionConfig {
            idle_ttl: settings.session_ttl,
            max_age: settings.session_max_age,
        },
        clock,
    )
}

/// A client-side cache of the Redis in `settings` (see authlab-redis `tracking`): entries live
/// at most one access-token lifetime, the tracking connection waits as long as any Redis call.
/// Fails on a topology where the cache cannot keep its guarantees.
pub fn redis_cache(
    settings: &Settings,
    redis: &Arc<RedisConnection>,
) -> Result<TrackedCache, RedisBackendError> {
    let mut config = CacheConfig::new(settings.redis_cache_size);
    config.max_entry_life = settings.access_ttl;
    config.staleness_bound = settings.redis_cache_staleness;
    config.dataset_mark_key = format!("{}cache:dataset-mark", settings.redis_prefix);
    config.timeouts = RedisTimeouts {
        connect: settings.redis.timeout,
        response: settings.redis.timeout,
        ..RedisTimeouts::default()
    };
    TrackedCache::start(&settings.redis.url, config, redis.clone())
}

/// Opaque tokens in Redis, with their refresh-token families, and the client-side cache if
/// `--redis-cache on`. Fails only when the cache cannot start.
pub fn redis_backend(
    settings: &Settings,
    redis: &Arc<RedisConnection>,
    secret: &JwtSecret,
) -> Result<RedisTokenAuthenticator, RedisBackendError> {
    let backend = RedisTokenAuthenticator::new(
        redis.clone(),
        refresh_families(settings, redis, secret, "redis", None),
        RedisTokenConfig {
            prefix: settings.redis_prefix.clone(),
            ttl: settings.access_ttl,
            format: match settings.redis_token_format {
                RedisTokenFormat::Uuid => TokenFormat::Uuid,
                RedisTokenFormat::Random256 => TokenFormat::Random256,
            },
        },
    );
    Ok(match settings.redis_cache {
        Switch::On => backend.with_cache(redis_cache(settings, redis)?),
        Switch::Off => backend,
    })
}

/// JWTs signed with `secret` (or, for access tokens, with the active key of `keys`: `--jwt-alg
/// EdDSA|ES256`), with the denylist and refresh mode the settings name. Fails only when the
/// denylist's cache (`--jwt-denylist cached`) cannot start.
pub fn jwt_backend(
    settings: &Settings,
    redis: &Arc<RedisConnection>,
    secret: JwtSecret,
    keys: Option<Arc<KeyRing>>,
    clock: Arc<dyn Clock>,
) -> Result<JwtBackend, RedisBackendError> {
    let with_denylist = settings.jwt_denylist != DenylistMode::Off;
    let refresh = match settings.jwt_refresh {
        RefreshKind::Stored => RefreshMode::Stored(refresh_families(
            settings,
            redis,
            &secret,
            "jwt",
            // With a denylist, each family keeps a live marker that the denylist checks: a Redis
            // (or one Cluster shard) that loses its data then refuses its families' tokens.
            with_denylist.then_some(settings.access_ttl),
        )),
        RefreshKind::Stateless => RefreshMode::Stateless {
            ttl: settings.refresh_ttl,
        },
    };
    let markers = match &refresh {
        RefreshMode::Stored(families) => families.live_markers().cloned(),
        RefreshMode::Stateless { .. } => None,
    };
    let denylist = || {
        let denylist = RedisDenylist::new(redis.clone(), &settings.redis_prefix);
        match markers.clone() {
            Some(markers) => denylist.with_live_markers(markers),
            None => denylist,
        }
    };
    let denylist = match settings.jwt_denylist {
        DenylistMode::Off => None,
        DenylistMode::On => Some(denylist()),
        DenylistMode::Cached => Some(denylist().with_cache(redis_cache(settings, redis)?)),
    };
    let backend = JwtAuthenticator::new(
        JwtConfig {
            secret,
            issuer: settings.jwt_issuer.clone(),
            ttl: settings.access_ttl,
            denylist,
            refresh,
        },
        clock,
    );
    Ok(match keys {
        Some(ring) => backend.with_keys(ring),
        None => backend,
    })
}

/// A token backend's refresh-token families, in their own key space (`scope`), with live markers
/// for access tokens of at most `live_markers` (see authlab-redis `families`).
fn refresh_families(
    settings: &Settings,
    redis: &Arc<RedisConnection>,
    secret: &JwtSecret,
    scope: &'static str,
    live_markers: Option<Duration>,
) -> RedisFamilies {
    RedisFamilies::new(
        redis.clone(),
        FamilyConfig {
            prefix: settings.redis_prefix.clone(),
            scope,
            refresh_ttl: settings.refresh_ttl,
            grace: settings.refresh_grace,
            secret: SecretSlice::from(secret.expose_bytes().to_vec()),
            live_markers,
        },
    )
}

/// The mounted backends, one field per [`BackendKind`] (a test checks they are all here, in
/// [`BackendKind::ALL`] order), each with its authenticator, transport and metrics handles.
pub struct BackendSet {
    /// `/session`: in-memory sessions, a cookie.
    pub session: web::Data<MountedBackend<SessionAuthenticator>>,
    /// `/redis`: opaque tokens in Redis, a bearer token.
    pub redis: web::Data<MountedBackend<RedisTokenAuthenticator>>,
    /// `/jwt`: signed JWTs, a bearer token.
    pub jwt: web::Data<MountedBackend<JwtBackend>>,
}

impl BackendSet {
    /// Every backend as the settings describe it, sharing `redis`, with its metrics handles from
    /// `metrics`. Fails only when a client-side cache cannot start.
    pub fn build(
        settings: &Settings,
        redis: &Arc<RedisConnection>,
        secret: JwtSecret,
        jwt_keys: Option<Arc<KeyRing>>,
        clock: Arc<dyn Clock>,
        metrics: &Metrics,
    ) -> Result<Self, RedisBackendError> {
        let bearer = Transport::Bearer {
            allow_query: settings.allow_query_token,
        };
        let session = Transport::Cookie {
            secure: settings.cookie_secure,
            max_age: settings.session_max_age,
        };
        fn mount<A>(
            kind: BackendKind,
            transport: Transport,
            auth: A,
            metrics: &Metrics,
        ) -> web::Data<MountedBackend<A>> {
            web::Data::new(MountedBackend {
                auth,
                transport,
                kind,
                metrics: metrics.backend(kind),
            })
        }
        let redis_backend = redis_backend(settings, redis, &secret)?;
        let jwt_backend = jwt_backend(settings, redis, secret, jwt_keys, clock.clone())?;
        Ok(Self {
            session: mount(
                BackendKind::Session,
                session,
                session_backend(settings, clock),
                metrics,
            ),
            redis: mount(BackendKind::Redis, bearer, redis_backend, metrics),
            jwt: mount(BackendKind::Jwt, bearer, jwt_backend, metrics),
        })
    }

    /// Each backend's scope, for the router, in [`BackendKind::ALL`] order.
    pub fn routes(&self) -> Vec<Arc<dyn BackendRoutes>> {
        vec![
            Arc::new(self.session.clone()),
            Arc::new(self.redis.clone()),
            Arc::new(self.jwt.clone()),
        ]
    }

    /// Each backend behind `dyn`, for the routes that span them all (password change).
    pub fn all(&self) -> Vec<Arc<dyn AnyBackend>> {
        vec![
            self.session.clone().into_inner(),
            self.redis.clone().into_inner(),
            self.jwt.clone().into_inner(),
        ]
    }

    /// The backends that cannot serve without Redis with these settings (for `/livez`).
    pub fn needs_redis(settings: &Settings) -> Vec<BackendKind> {
        let jwt_uses_redis = settings.jwt_denylist != DenylistMode::Off
            || settings.jwt_refresh == RefreshKind::Stored;
        BackendKind::ALL
            .into_iter()
            .filter(|kind| match kind {
                BackendKind::Session => false,
                BackendKind::Redis => true,
                BackendKind::Jwt => jwt_uses_redis,
            })
            .collect()
    }

    /// Hands `metrics` what it reads at each scrape: the live sessions, and the client-side
    /// caches that are on.
    pub fn watch(&self, metrics: &mut Metrics) {
        let session = self.session.clone();
        metrics.watch_live_sessions(Box::new(move || session.auth.len()));
        let redis = self.redis.clone();
        metrics.watch_cache("redis", Box::new(move || redis.auth.cache_stats()));
        let jwt = self.jwt.clone();
        metrics.watch_cache(
            "jwt_denylist",
            Box::new(move || jwt.auth.denylist().and_then(|d| d.cache_stats())),
        );
    }
}

/// Sessions: login, `/me`, logout, the registry, and `/rotate` (a new id for the same session).
impl BackendRoutes for web::Data<MountedBackend<SessionAuthenticator>> {
    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn scope(&self, at: &mut Mount<'_>) -> actix_web::Scope {
        registry_routes::<SessionAuthenticator>(backend_scope(self.clone(), at), at).service(
            at.resource("/rotate", "POST")
                .route(web::post().to(lifecycle::renew_session_id)),
        )
    }
}

/// Opaque tokens: login, `/me`, logout, the registry, and the token endpoints.
impl BackendRoutes for web::Data<MountedBackend<RedisTokenAuthenticator>> {
    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn scope(&self, at: &mut Mount<'_>) -> actix_web::Scope {
        let scope = backend_scope(self.clone(), at);
        token_routes::<RedisTokenAuthenticator>(
            registry_routes::<RedisTokenAuthenticator>(scope, at),
            at,
        )
    }
}

/// JWTs: login, `/me`, logout, the registry, and the token endpoints.
impl BackendRoutes for web::Data<MountedBackend<JwtBackend>> {
    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn scope(&self, at: &mut Mount<'_>) -> actix_web::Scope {
        let scope = backend_scope(self.clone(), at);
        token_routes::<JwtBackend>(registry_routes::<JwtBackend>(scope, at), at)
    }
}
