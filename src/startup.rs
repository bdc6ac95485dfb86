//! Building and running the service: the same code path for `authlab serve` and for the tests'
//! `spawn_app()`, so what the tests exercise is what users run.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Condition, Next, from_fn};
use actix_web::{App, HttpServer, web};
use authlab_core::{Clock, SystemClock};
use authlab_jwt::{JwtError, JwtSecret, KeyAlg, KeyDir, KeyRing};
use authlab_redis::{RedisBackendError, RedisConnection};
use authlab_session::SessionAuthenticator;
use authlab_users::{UserStore, UserStoreError};
use secrecy::ExposeSecret;
use tokio::task::JoinHandle;

use crate::audit::{self, Audit};
use crate::backends::{self, BackendSet};
use crate::config::{JwtAlg, Role, Settings, Switch};
use crate::error::ApiError;
use crate::introspection::{IntrospectionClients, MIN_SECRET_BYTES};
use crate::jwks_fetch::{JwksFetchError, JwksFetcher, JwksSettings};
use crate::middleware::csrf::CsrfPolicy;
use crate::middleware::headers::SecurityHeaders;
use crate::middleware::{cors, csrf, headers};
use crate::openapi::{self, ApiDocument};
use crate::routes::{self, ExtraRoute, MountedBackend, Shared};
use crate::throttle::{Limits, Throttle};
use actix_web::http::header::HeaderValue;

/// The API description and its UI ([`openapi`]), which the router mounts among its own routes.
const DOCUMENT_ROUTES: [ExtraRoute; 3] = [
    ExtraRoute {
        method: "GET",
        path: "/openapi.json",
        route: || web::get().to(openapi::openapi_json),
    },
    ExtraRoute {
        method: "GET",
        path: "/docs",
        route: || web::get().to(openapi::docs_redirect),
    },
    ExtraRoute {
        method: "GET",
        path: "/docs/{file:.*}",
        route: || web::get().to(openapi::docs),
    },
];

/// Largest request body accepted (JSON bodies here are a few dozen bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why the service could not start. Each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The listening address is taken or invalid.
    #[error("cannot listen on {address}")]
    Bind {
        /// What we tried to bind.
        address: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The user store could not be opened or migrated.
    #[error("cannot open the user store")]
    UserStore(#[source] UserStoreError),
    /// The Redis URL does not parse, or names a topology this build cannot connect to.
    #[error("cannot use --redis-url")]
    RedisUrl(#[source] RedisBackendError),
    /// The Redis client-side cache (`--redis-cache on`, `--jwt-denylist cached`) cannot start.
    #[error("cannot start the Redis client-side cache")]
    RedisCache(#[source] RedisBackendError),
    /// `--redis-confirm-timeout` is not shorter than `--redis-timeout`.
    #[error("--redis-confirm-timeout must be shorter than --redis-timeout")]
    RedisConfirmation(#[source] RedisBackendError),
    /// The JWT secret file could not be read.
    #[error("cannot read the JWT secret file {path}")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Both a secret file and `AUTHLAB_JWT_SECRET` were given.
    #[error("both --jwt-secret-file and AUTHLAB_JWT_SECRET are set; give one")]
    ConflictingSecrets,
    /// The secret is unusable (too short).
    #[error("unusable JWT secret")]
    JwtSecret(#[source] JwtError),
    /// `--jwt-alg` and `--jwt-keys-dir` do not go together.
    #[error("{0}")]
    JwtKeysFlags(&'static str),
    /// `--role` and the key flags do not go together.
    #[error("{0}")]
    RoleFlags(&'static str),
    /// A verifier's JWKS fetcher cannot start.
    #[error("cannot fetch the issuer's JWKS")]
    JwksFetch(#[source] JwksFetchError),
    /// The JWT key directory does not load.
    #[error("cannot use the JWT key directory {path}")]
    JwtKeys {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: JwtError,
    },
    /// The introspection secret file could not be read.
    #[error("cannot read the introspection secret file {path}")]
    IntrospectionSecretFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The introspection secret is too short to resist guessing.
    #[error(
        "the introspection secret in {path} has {bytes} bytes; it needs at least {MIN_SECRET_BYTES} \
         (make one with `head -c 48 /dev/urandom | base64 > introspection.secret`)"
    )]
    IntrospectionSecretTooShort {
        /// The file.
        path: PathBuf,
        /// How many bytes it held (after the trailing newline).
        bytes: usize,
    },
    /// The metrics recorder could not be set up.
    #[error("cannot set up the metrics")]
    Metrics(#[source] crate::metrics::MetricsError),
}

impl StartupError {
    /// What to do about it, where the message does not say so already: printed on its own line
    /// after the error.
    pub fn remedy(&self) -> Option<String> {
        match self {
            Self::Bind { address, source } if source.kind() == std::io::ErrorKind::AddrInUse => {
                Some(format!(
                    "another process listens on {address}: stop it, or give --bind another \
                     address (127.0.0.1:0 takes any free port)"
                ))
            }
            Self::Bind { .. } => Some(
                "give --bind an address of this machine, such as 127.0.0.1:8080 (ports below \
                 1024 need privileges)"
                    .to_owned(),
            ),
            Self::UserStore(UserStoreError::Connect { .. }) => Some(
                "start PostgreSQL there, or correct --database-url (AUTHLAB_DATABASE_URL); \
                 left unset, it keeps the users in the default SQLite file"
                    .to_owned(),
            ),
            Self::UserStore(UserStoreError::Refused { .. }) => Some(
                "check the user, password and database name in --database-url \
                 (AUTHLAB_DATABASE_URL)"
                    .to_owned(),
            ),
            Self::SecretFile { path, .. } => Some(format!(
                "make one with `head -c 48 /dev/urandom | base64 > {}`, or give another file",
                path.display()
            )),
            _ => None,
        }
    }
}

/// A built, listening service.
pub struct Application {
    port: u16,
    server: Server,
    sweeper: JoinHandle<()>,
    redis: Arc<RedisConnection>,
    upkeep: Option<JoinHandle<()>>,
    hangup: Option<JoinHandle<()>>,
}

impl Application {
    /// Opens the user store, prepares Redis (without needing it to be up), builds the backends
    /// ([`crate::backends`]), binds the listener and builds the server. Nothing is served until [`Application::run_until_stopped`].
    ///
    /// It logs nothing until it has succeeded, so that a start-up error is the first line a
    /// user sees.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// [`Application::build`], with the backends reading time from `clock` (the session's idle
    /// and absolute deadlines, the JWTs' `iat` and `exp`): the tests give one they can move
    /// forward (`authlab_core::OffsetClock`), so nothing waits for a credential to expire.
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        check_role(&settings)?;
        let (secret, generated_secret) = match settings.role {
            // A verifier holds no configured secret; this random one only keys what stays
            // local to it (the redis backend's token hashes), and signs nothing that leaves it.
            Role::Verifier => (
                JwtSecret::generate().map_err(StartupError::JwtSecret)?,
                false,
            ),
            Role::All | Role::Issuer => load_jwt_secret(&settings)?,
        };
        let (jwt_keys, jwks_fetcher) = match &settings.jwks_url {
            Some(url) if settings.role == Role::Verifier => {
                let ring = KeyRing::remote();
                let fetcher = JwksFetcher::start(
                    ring.clone(),
                    JwksSettings {
                        url: url.clone(),
                        refresh: settings.jwks_refresh,
                        unknown_kid_cooldown: settings.jwks_unknown_kid_cooldown,
                        max_stale: settings.jwks_max_stale,
                    },
                    clock.clone(),
                )
                .map_err(StartupError::JwksFetch)?;
                (Some(ring), Some(fetcher))
            }
            _ => (load_jwt_keys(&settings)?, None),
        };
        let jwks_ready: Option<Arc<dyn Fn() -> bool + Send + Sync>> =
            match (&jwt_keys, &jwks_fetcher) {
                (Some(ring), Some(_)) => {
                    let (ring, clock) = (ring.clone(), clock.clone());
                    Some(Arc::new(move || ring.usable_at(clock.now_unix())))
                }
                _ => None,
            };
        let hangup = spawn_hangup_handler(jwt_keys.clone(), jwks_fetcher);
        let introspection = load_introspection_clients(&settings)?;
        let users = UserStore::connect(&settings.database_url)
            .await
            .map_err(StartupError::UserStore)?
            .with_password_policy(settings.password_policy);
        // Every series is registered here, once; the handles go where they are counted.
        let mut metrics = crate::metrics::Metrics::new(settings.metrics == Switch::On)
            .map_err(StartupError::Metrics)?;
        let redis = backends::redis_connection_with_metrics(&settings.redis, metrics.redis())
            .map_err(|err| match err {
                RedisBackendError::ConfirmationTooSlow { .. } => {
                    StartupError::RedisConfirmation(err)
                }
                other => StartupError::RedisUrl(other),
            })?;

        let set = BackendSet::build(&settings, &redis, secret, jwt_keys, clock, &metrics)
            .map_err(StartupError::RedisCache)?;
        let shared = web::Data::new(Shared {
            users,
            redis: redis.clone(),
            needs_redis: BackendSet::needs_redis(&settings),
            backends: set.all(),
            session_transport: set.session.transport,
            introspection,
            jwks_ready,
        });
        // Login throttling and audit events: one of each per app, shared by its workers.
        let proxies: Arc<[_]> = settings.trusted_proxies.clone().into();
        let limits = Limits {
            name_max_failures: settings.login_max_failures,
            ip_max_failures: settings.login_ip_max_failures,
            register_ip_max: settings.register_ip_max,
            window: settings.login_window,
        };
        let throttle = web::Data::new(Throttle::new(
            shared.redis.clone(),
            &settings.redis_prefix,
            limits,
            proxies.clone(),
        ));
        let instance = settings
            .instance_id
            .clone()
            .unwrap_or_else(audit::random_instance_id);
        let instance_header = HeaderValue::from_str(&instance)
            .unwrap_or_else(|_| HeaderValue::from_static("unnamed"));
        let audit = web::Data::new(Audit::new(instance.clone(), proxies));
        set.watch(&mut metrics);
        let upkeep = metrics.handle().map(spawn_metrics_upkeep);
        let metrics = web::Data::new(metrics);
        let mounted = routes::Mounted {
            shared,
            backends: set.routes(),
            metrics: metrics.clone(),
        };

        let listener = TcpListener::bind(&settings.bind).map_err(|source| StartupError::Bind {
            address: settings.bind.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                address: settings.bind.clone(),
                source,
            })?
            .port();

        let csrf_policy = web::Data::new(CsrfPolicy::new(
            set.session.transport,
            &settings.cors_origins,
        ));
        let security_headers = web::Data::new(SecurityHeaders {
            hsts: settings.cookie_secure,
            instance: instance_header,
        });
        let cors_origins = settings.cors_origins.clone();
        let api_document = web::Data::new(ApiDocument::new(routes::mounted_routes));
        let jwt = set.jwt.clone();
        let jwks = web::Data::new(routes::jwks::Jwks::new(move || jwt.auth.jwks()));
        let sweep_sessions = set.session.clone();
        let verifier = settings.role == Role::Verifier;
        let mut server = HttpServer::new(move || {
            // Outermost last: headers on everything, then CORS (answers preflights), then CSRF.
            App::new()
                .app_data(throttle.clone())
                .app_data(audit.clone())
                .app_data(metrics.clone())
                .app_data(csrf_policy.clone())
                .app_data(security_headers.clone())
                .app_data(api_document.clone())
                .app_data(jwks.clone())
                .wrap(Condition::new(verifier, from_fn(refuse_issuing_routes)))
                .wrap(from_fn(csrf::csrf))
                .wrap(Condition::new(
                    !cors_origins.is_empty(),
                    cors::cors(&cors_origins),
                ))
                .wrap(Condition::new(
                    !cors_origins.is_empty(),
                    from_fn(cors::cors_guard),
                ))
                .wrap(from_fn(access_log))
                .wrap(from_fn(headers::security_headers))
                .app_data(
                    web::JsonConfig::default()
                        .limit(MAX_BODY_BYTES)
                        .error_handler(|err, _req| ApiError::from(err).into()),
                )
                .app_data(
                    web::FormConfig::default()
                        .limit(MAX_BODY_BYTES)
                        .error_handler(|err, _req| ApiError::from(err).into()),
                )
                .configure(|cfg| routes::configure(cfg, &mounted, &DOCUMENT_ROUTES))
                .default_service(web::to(routes::not_found))
        })
        .listen(listener)
        .map_err(|source| StartupError::Bind {
            address: settings.bind.clone(),
            source,
        })?;
        if let Some(workers) = settings.workers {
            server = server.workers(workers.max(1));
        }
        let server = server.run();

        let sweeper = spawn_session_sweeper(sweep_sessions, settings.session_sweep_interval);
        if generated_secret {
            tracing::warn!(
                "no JWT secret configured (--jwt-secret-file or AUTHLAB_JWT_SECRET): generated a random one. \
                 JWTs issued now will not survive a restart and will not verify on another instance."
            );
        }
        tracing::info!("{:>18} = {instance}", "instance");
        Ok(Self {
            port,
            server,
            sweeper,
            redis,
            upkeep,
            hangup,
        })
    }

    /// The port the server listens on (useful with `--bind 127.0.0.1:0`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether Redis answers a `PING` within a second (start-up uses it to warn early: Redis is a
    /// dependency of /redis and of the JWT denylist and refresh tokens, not of start-up).
    pub async fn redis_answers(&self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(1), self.redis.ping()).await,
            Ok(Ok(()))
        )
    }

    /// A handle that can stop the server gracefully.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until the server is stopped (Ctrl-C, SIGTERM, or [`ServerHandle::stop`]).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.sweeper.abort();
        if let Some(upkeep) = self.upkeep {
            upkeep.abort();
        }
        if let Some(hangup) = self.hangup {
            hangup.abort();
        }
        result
    }
}

/// Forgets expired sessions periodically, so memory tracks active sessions, not every login ever.
fn spawn_session_sweeper(
    sessions: web::Data<MountedBackend<SessionAuthenticator>>,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            let removed = sessions.auth.sweep();
            if removed > 0 {
                tracing::debug!(
                    removed,
                    live = sessions.auth.len(),
                    "swept expired sessions"
                );
            }
        }
    })
}

/// Folds histogram samples into their buckets every few seconds, so that memory stays flat under
/// load even when nobody scrapes `/metrics`.
fn spawn_metrics_upkeep(handle: metrics_exporter_prometheus::PrometheusHandle) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(crate::metrics::UPKEEP_EVERY);
        loop {
            ticks.tick().await;
            handle.run_upkeep();
        }
    })
}

/// The flags each `--role` refuses (see [`Role`]): a verifier holds no private key and needs
/// `--jwks-url`; an issuer signs with a key pair; only a verifier fetches a JWKS.
fn check_role(settings: &Settings) -> Result<(), StartupError> {
    let refused = |why| Err(StartupError::RoleFlags(why));
    match settings.role {
        Role::Verifier if settings.jwt_secret_file.is_some() || settings.jwt_secret.is_some() => {
            refused(
                "--role verifier holds no private key: remove --jwt-secret-file / AUTHLAB_JWT_SECRET \
                 (the issuer keeps it)",
            )
        }
        Role::Verifier if settings.jwt_keys_dir.is_some() => refused(
            "--role verifier holds no private key: remove --jwt-keys-dir (the issuer keeps it) and \
             give the issuer's --jwks-url",
        ),
        Role::Verifier if settings.jwks_url.is_none() => {
            refused("--role verifier needs --jwks-url, the issuer's /.well-known/jwks.json")
        }
        Role::Issuer if settings.jwt_alg == JwtAlg::Hs256 => refused(
            "--role issuer signs with a key pair that verifiers can check without it: give \
             --jwt-alg EdDSA or ES256 and --jwt-keys-dir",
        ),
        Role::All | Role::Issuer if settings.jwks_url.is_some() => {
            refused("--jwks-url is for --role verifier")
        }
        _ => Ok(()),
    }
}

/// On SIGHUP: the key directory is read again at once (the periodic reload aside), and a
/// verifier fetches the issuer's JWKS at once. `None` when there is nothing to reload (HS256)
/// or no signal handler can be set up.
fn spawn_hangup_handler(
    ring: Option<Arc<KeyRing>>,
    fetcher: Option<Arc<JwksFetcher>>,
) -> Option<JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let ring = ring?;
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(stream) => stream,
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGHUP: keys reload on their timer only");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the JWT keys");
            match &fetcher {
                Some(fetcher) => fetcher.fetch_now(),
                None => {
                    let ring = ring.clone();
                    // A few small files: off the async thread all the same.
                    let _ = tokio::task::spawn_blocking(move || ring.reload()).await;
                }
            }
        }
    }))
}

/// On a verifier, the routes of `/jwt` that issue, refresh or end a login answer `501
/// not_an_issuer` (it holds no key that signs, and logins belong to the issuer); reads (`GET`,
/// `/jwt/me` and `/jwt/sessions`) and introspection are served.
async fn refuse_issuing_routes(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    let issuing = req.path().starts_with("/jwt/")
        && req.method() != actix_web::http::Method::GET
        && req.path() != "/jwt/introspect";
    if issuing {
        let response = actix_web::ResponseError::error_response(&ApiError::NotAnIssuer);
        return Ok(req.into_response(response).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

/// The HS256 key: from a file, from `AUTHLAB_JWT_SECRET`, or generated (`true`: the caller warns
/// loudly once start-up has succeeded).
fn load_jwt_secret(settings: &Settings) -> Result<(JwtSecret, bool), StartupError> {
    let bytes = match (&settings.jwt_secret_file, &settings.jwt_secret) {
        (Some(_), Some(_)) => return Err(StartupError::ConflictingSecrets),
        (Some(path), None) => {
            read_secret_file(path).map_err(|source| StartupError::SecretFile {
                path: path.to_owned(),
                source,
            })?
        }
        (None, Some(secret)) => secret.expose_secret().as_bytes().to_vec(),
        (None, None) => {
            return Ok((
                JwtSecret::generate().map_err(StartupError::JwtSecret)?,
                true,
            ));
        }
    };
    Ok((
        JwtSecret::new(bytes).map_err(StartupError::JwtSecret)?,
        false,
    ))
}

/// The key pairs of `--jwt-keys-dir` for `--jwt-alg EdDSA|ES256`, re-read every
/// `--jwt-keys-reload`; `None` with HS256. The active key must be of the configured algorithm.
fn load_jwt_keys(settings: &Settings) -> Result<Option<Arc<KeyRing>>, StartupError> {
    let configured = match (settings.jwt_alg, &settings.jwt_keys_dir) {
        (JwtAlg::Hs256, None) => return Ok(None),
        (JwtAlg::Hs256, Some(_)) => {
            return Err(StartupError::JwtKeysFlags(
                "--jwt-keys-dir is for --jwt-alg EdDSA or ES256 (HS256 signs with the JWT secret)",
            ));
        }
        (_, None) => {
            return Err(StartupError::JwtKeysFlags(
                "--jwt-alg EdDSA and ES256 need --jwt-keys-dir (make one with `authlab keys generate` then `authlab keys rotate`)",
            ));
        }
        (JwtAlg::EdDsa, Some(_)) => KeyAlg::EdDSA,
        (JwtAlg::Es256, Some(_)) => KeyAlg::ES256,
    };
    let path = settings.jwt_keys_dir.clone().unwrap_or_default();
    let failed = |source| StartupError::JwtKeys {
        path: path.clone(),
        source,
    };
    let ring = KeyRing::open(KeyDir::new(&path), Some(settings.jwt_keys_reload)).map_err(failed)?;
    let active = ring.current().active_alg();
    if let Some(active) = active
        && active != configured
    {
        return Err(failed(JwtError::KeyAlgMismatch { configured, active }));
    }
    Ok(Some(ring))
}

/// Who may introspect: the secret from `--introspection-secret-file`, or nobody.
fn load_introspection_clients(settings: &Settings) -> Result<IntrospectionClients, StartupError> {
    let Some(path) = &settings.introspection_secret_file else {
        return Ok(IntrospectionClients::closed());
    };
    let bytes = read_secret_file(path).map_err(|source| StartupError::IntrospectionSecretFile {
        path: path.clone(),
        source,
    })?;
    let len = bytes.len();
    IntrospectionClients::with_secret(bytes).ok_or(StartupError::IntrospectionSecretTooShort {
        path: path.clone(),
        bytes: len,
    })
}

fn read_secret_file(path: &Path) -> Result<Vec<u8>, std::io::Error> {
    let mut bytes = std::fs::read(path)?;
    // Editors and `echo` add a newline; it is not part of the secret.
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    Ok(bytes)
}

/// One debug line per request: method, path (never the query string, which may hold a token when
/// `--allow-query-token` is on), status and time taken.
async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return next.call(req).await;
    }
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let response = next.call(req).await?;
    tracing::debug!(
        %method,
        path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    Ok(response)
}
