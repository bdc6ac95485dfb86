//! Getting a run ready: the in-process instances, one user, a credential per backend, and the
//! scale-out/revocation checks. Everything here goes through HTTP, as a client would, except the
//! instances' construction, which is [`Application::build`] itself.
//!
//! Logins hash a password with argon2id (about 20-30 ms each, on purpose), so setup registers
//! exactly one user and logs it in once per backend; the load that follows reuses those
//! credentials on every request.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use authlab_loadgen::{FetchedResponse, RequestSpec, fetch, header};
use secrecy::SecretString;
use serde::Serialize;

use authlab::backends;
use authlab::config::{JwtAlg, RedisSettings, Settings, redact_url};
use authlab::startup::Application;
use authlab_core::Clock as _;
use authlab_jwt::{KeyAlg, KeyDir};

use crate::modes::{self, Mode};
use crate::{CompareArgs, CompareError};

pub use crate::modes::{JWT_METRICS_OFF, JWT_OFF, JWT_ON, REDIS, SESSION, SESSION_METRICS_OFF};

/// The one user every backend logs in.
pub const USERNAME: &str = "compare-user";
/// Its password (the run's database is a temporary file, deleted at the end).
pub const PASSWORD: &str = "compare-password-0123456789";

/// A credential as the route's transport carries it, ready to be sent as a header.
#[derive(Debug, Clone)]
pub enum CredentialHeader {
    /// The whole `Cookie` header value, `sid=<id>`.
    Cookie(header::HeaderValue),
    /// The whole `Authorization` header value, `Bearer <token>`.
    Bearer(header::HeaderValue),
}

impl CredentialHeader {
    /// The header that carries it: `Cookie` or `Authorization`, and its value.
    pub fn header(&self) -> (header::HeaderName, header::HeaderValue) {
        match self {
            Self::Cookie(value) => (header::COOKIE, value.clone()),
            Self::Bearer(value) => (header::AUTHORIZATION, value.clone()),
        }
    }

    /// Bytes of the credential itself (the id or token, without `sid=` or `Bearer `).
    pub fn credential_bytes(&self) -> usize {
        match self {
            Self::Cookie(v) => v.len() - "sid=".len(),
            Self::Bearer(v) => v.len() - "Bearer ".len(),
        }
    }

    /// Bytes the credential adds to each request: the header line, `Name: value\r\n`.
    pub fn header_bytes(&self) -> usize {
        match self {
            Self::Cookie(v) => "Cookie: ".len() + v.len() + 2,
            Self::Bearer(v) => "Authorization: ".len() + v.len() + 2,
        }
    }
}

/// One mode's server(s): the instance its row is measured on, and for the scale-out and
/// revocation checks a second instance with the same settings.
#[derive(Debug, Clone)]
pub struct ModeInstance {
    /// The mode.
    pub mode: &'static Mode,
    /// Where its row is measured.
    pub addr: SocketAddr,
    /// A second instance with the same settings, sharing Redis, the JWT secret and the user
    /// database (in-process runs of modes with [`Mode::scale_out`] or [`Mode::revocable`]).
    pub twin: Option<SocketAddr>,
    /// For a mode with an [`Mode::issuer`]: the issuer instance its credential is logged in on
    /// (`addr` is then a verifier, which answers a login with 501).
    pub issuer: Option<SocketAddr>,
}

impl ModeInstance {
    /// Where the mode's credential is obtained: its issuer's instance, or its own.
    pub fn login_addr(&self) -> SocketAddr {
        self.issuer.unwrap_or(self.addr)
    }
}

/// The servers a run talks to. In-process: an instance per mode ([`crate::modes`]) and a twin
/// where a check needs a second one, all sharing Redis, the JWT secret and the user database.
/// External: one address for every row.
pub struct Instances {
    /// The instance `/hello` and the login cost are measured on (the first mode's, its issuer's
    /// when that mode is a verifier, or the target).
    pub hello: SocketAddr,
    /// Every mode of the run, in the order of a round.
    pub modes: Vec<ModeInstance>,
    /// The Redis key prefix every instance uses (removed at the end of an in-process run).
    pub redis_prefix: String,
    handles: Vec<ServerHandle>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The run's temporary directory (the SQLite user database), removed by [`Instances::stop`].
    run_dir: Option<PathBuf>,
}

/// What every run's temporary directory is called: `authlab-compare-<pid>-<run id>`, so a later
/// run can tell whether the process that made it is still alive.
const RUN_DIR_PREFIX: &str = "authlab-compare-";

/// Removes what crashed or killed runs left in `dir`: every `authlab-compare-<pid>-...` entry whose
/// process no longer exists (`/proc/<pid>` is gone). Entries of live processes, and anything not
/// named that way, are kept. Returns what was removed. Does nothing where there is no `/proc`.
pub fn remove_stale_runs(dir: &Path) -> Vec<PathBuf> {
    let proc_fs = Path::new("/proc/self");
    if !proc_fs.exists() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(RUN_DIR_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let path = entry.path();
        let gone = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if gone.is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// A new, empty temporary directory for this run: `<dir>/authlab-compare-<pid>-<run id>`.
fn create_run_dir(dir: &Path, run: &str) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("{RUN_DIR_PREFIX}{}-{run}", std::process::id()));
    std::fs::create_dir(&path)?;
    Ok(path)
}

impl Instances {
    /// A server that is already running: one row per backend, as that server is configured.
    pub fn external(addr: SocketAddr) -> Self {
        Self {
            hello: addr,
            modes: modes::AS_SERVED
                .iter()
                .map(|mode| ModeInstance {
                    mode,
                    addr,
                    twin: None,
                    issuer: None,
                })
                .collect(),
            redis_prefix: String::new(),
            handles: Vec::new(),
            thread: None,
            run_dir: None,
        }
    }

    /// Whether the instances were started here (and so each mode has its own).
    pub fn in_process(&self) -> bool {
        self.thread.is_some()
    }

    /// Starts an instance per selected mode (and the twins) in this process, on an actix system
    /// thread of their own.
    pub fn start(args: &CompareArgs) -> Result<Self, CompareError> {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let run_dir = create_run_dir(&std::env::temp_dir(), &run).map_err(CompareError::Io)?;
        let started = Self::start_in(args, &run, &run_dir);
        if started.is_err() {
            let _ = std::fs::remove_dir_all(&run_dir);
        }
        started
    }

    fn start_in(args: &CompareArgs, run: &str, run_dir: &Path) -> Result<Self, CompareError> {
        let database = run_dir.join("users.db");
        let redis_prefix = format!("authlab-compare:{run}:");
        let mut base = Settings::defaults();
        base.bind = "127.0.0.1:0".to_owned();
        base.database_url = format!("sqlite://{}", database.display());
        base.redis = args.redis.clone();
        base.redis_prefix = redis_prefix.clone();
        base.workers = Some(args.workers.max(1));
        // One random secret for every instance (two v4 UUIDs: 244 random bits, 64 characters).
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        base.jwt_secret = Some(SecretString::from(secret));

        let mut configured = Vec::new();
        for mode in modes::selected(&args.modes) {
            let mut settings = mode.settings(&base).map_err(CompareError::Mode)?;
            settings.jwt_keys_dir = key_dir(run_dir, settings.jwt_alg)?;
            let issuer = mode.issuer_settings(&base).map_err(CompareError::Mode)?;
            let issuer = match issuer {
                Some(mut issuer) => {
                    issuer.jwt_keys_dir = key_dir(run_dir, issuer.jwt_alg)?;
                    Some(issuer)
                }
                None => None,
            };
            configured.push((mode, settings, issuer));
        }
        // What to build, in order: each mode's issuer if it has one, the mode, its twin if it
        // has one. A verifier names the index of its issuer, whose JWKS URL it gets once that
        // issuer is built and serving (`/readyz` tells when the verifier's first fetch landed).
        let mut to_build: Vec<(Settings, Option<usize>)> = Vec::new();
        for (mode, settings, issuer) in &configured {
            let jwks_of = issuer.as_ref().map(|issuer| {
                to_build.push((issuer.clone(), None));
                to_build.len() - 1
            });
            to_build.push((settings.clone(), jwks_of));
            if mode.needs_twin() {
                to_build.push((settings.clone(), jwks_of));
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("compare-servers".to_owned())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let mut ready: Vec<(u16, ServerHandle)> = Vec::new();
                    let mut running = Vec::new();
                    for (mut settings, jwks_of) in to_build {
                        if let Some((issuer, _)) = jwks_of.and_then(|i| ready.get(i)) {
                            settings.jwks_url =
                                Some(format!("http://127.0.0.1:{issuer}/.well-known/jwks.json"));
                        }
                        match Application::build(settings).await {
                            Ok(app) => {
                                ready.push((app.port(), app.handle()));
                                // Served at once: a verifier built later fetches its JWKS from
                                // an issuer built before it.
                                running.push(actix_web::rt::spawn(app.run_until_stopped()));
                            }
                            Err(err) => {
                                for (_, handle) in &ready {
                                    handle.stop(false).await;
                                }
                                return drop(tx.send(Err(err)));
                            }
                        }
                    }
                    let handles: Vec<ServerHandle> =
                        ready.iter().map(|(_, handle)| handle.clone()).collect();
                    if tx.send(Ok(ready)).is_err() {
                        for handle in &handles {
                            handle.stop(false).await;
                        }
                    }
                    for server in running {
                        let _ = server.await;
                    }
                });
            })
            .map_err(CompareError::Io)?;
        let ready = rx
            .recv()
            .map_err(|_| CompareError::ServerThread)?
            .map_err(CompareError::Startup)?;
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        // The servers were built in `to_build`'s order: each mode's issuer if it has one, the
        // mode, then its twin if it has one.
        let mut ports = ready.iter().map(|(port, _)| addr(*port));
        let mut instances = Vec::new();
        for (mode, _, issuer) in configured {
            let issuer = match issuer {
                Some(_) => Some(ports.next().ok_or(CompareError::ServerThread)?),
                None => None,
            };
            let first = ports.next().ok_or(CompareError::ServerThread)?;
            let twin = match mode.needs_twin() {
                true => Some(ports.next().ok_or(CompareError::ServerThread)?),
                false => None,
            };
            instances.push(ModeInstance {
                mode,
                addr: first,
                twin,
                issuer,
            });
        }
        Ok(Self {
            hello: instances.first().ok_or(CompareError::NoModes)?.login_addr(),
            modes: instances,
            redis_prefix,
            handles: ready.into_iter().map(|(_, handle)| handle).collect(),
            thread: Some(thread),
            run_dir: Some(run_dir.to_owned()),
        })
    }

    /// Stops the in-process servers and removes the run's temporary directory.
    pub async fn stop(&self) {
        for handle in &self.handles {
            handle.stop(false).await;
        }
        if let Some(run_dir) = &self.run_dir {
            let _ = std::fs::remove_dir_all(run_dir);
        }
    }
}

impl Drop for Instances {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Checks, before anything starts, that the Redis the in-process servers will share answers a
/// `PING` (within `--redis-timeout`): without it, a run would measure memory for a minute and
/// then stop at its first redis or jwt login with a bare 503.
pub async fn check_redis(redis: &RedisSettings) -> Result<(), CompareError> {
    let unreachable = |source| CompareError::RedisUnreachable {
        url: redact_url(&redis.url),
        source,
    };
    backends::redis_connection(redis)
        .map_err(unreachable)?
        .ping()
        .await
        .map_err(unreachable)
}

/// Reads `http://host:port` into an address.
pub fn parse_target(url: &str) -> Result<SocketAddr, CompareError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or(CompareError::BadTarget("only http:// is supported"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let with_port = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    with_port
        .to_socket_addrs()
        .map_err(|_| CompareError::BadTarget("the host does not resolve"))?
        .next()
        .ok_or(CompareError::BadTarget("the host does not resolve"))
}

/// For a mode signing with a key pair (`--jwt-alg EdDSA|ES256`): a key directory of the run's
/// own for that algorithm, with an active key and a next key (as `authlab keys generate` then
/// `rotate` leave it), made on first use and shared by every mode of that algorithm.
fn key_dir(run_dir: &Path, alg: JwtAlg) -> Result<Option<PathBuf>, CompareError> {
    let alg = match alg {
        JwtAlg::Hs256 => return Ok(None),
        JwtAlg::EdDsa => KeyAlg::EdDSA,
        JwtAlg::Es256 => KeyAlg::ES256,
    };
    let path = run_dir.join(format!("keys-{}", alg.name()));
    if !path.exists() {
        let dir = KeyDir::new(&path);
        let now = authlab_core::SystemClock.now_unix();
        dir.generate(alg, now)
            .and_then(|_| dir.rotate(None, Duration::from_secs(900), now))
            .map_err(|err| CompareError::Io(std::io::Error::other(err)))?;
    }
    Ok(Some(path))
}

/// The body of a login (and of registration).
fn credentials_json() -> String {
    format!(r#"{{"username":"{USERNAME}","password":"{PASSWORD}"}}"#)
}

/// `POST /<backend>/login` for the compare user.
pub fn login_request(addr: SocketAddr, backend: &str) -> RequestSpec {
    RequestSpec::post_json(addr, format!("/{backend}/login"), credentials_json())
}

/// One credential per mode, issued by the mode's own instance, in the order of
/// [`Instances::modes`].
pub struct Logins {
    /// The credential of each mode (a `sid` cookie or a bearer token).
    pub credentials: Vec<CredentialHeader>,
}

async fn send(
    request: &RequestSpec,
    timeout: Duration,
    step: &'static str,
) -> Result<FetchedResponse, CompareError> {
    fetch(request, timeout)
        .await
        .map_err(CompareError::Load)
        .and_then(|answer| success(answer, step))
}

/// `answer` if it is a 2xx; otherwise the setup error that names `step`.
pub(crate) fn success(
    answer: FetchedResponse,
    step: &'static str,
) -> Result<FetchedResponse, CompareError> {
    if (200..300).contains(&answer.status) {
        Ok(answer)
    } else {
        Err(CompareError::Setup {
            step,
            status: answer.status,
        })
    }
}

/// Registers the compare user (once; "taken" is fine against a long-running target).
async fn register(addr: SocketAddr, timeout: Duration) -> Result<(), CompareError> {
    let request = RequestSpec::post_json(addr, "/users", credentials_json());
    let answer = fetch(&request, timeout).await.map_err(CompareError::Load)?;
    match answer.status {
        201 | 409 => Ok(()),
        status => Err(CompareError::Setup {
            step: "register the compare user",
            status,
        }),
    }
}

/// Logs in on `backend` at `addr` and returns the credential as its transport carries it.
async fn log_in(
    addr: SocketAddr,
    backend: &'static str,
    timeout: Duration,
    step: &'static str,
) -> Result<CredentialHeader, CompareError> {
    let answer = send(&login_request(addr, backend), timeout, step).await?;
    if backend == "session" {
        let sid = answer
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|cookie| {
                let pair = cookie.split(';').next()?;
                pair.strip_prefix("sid=").filter(|v| !v.is_empty())
            })
            .ok_or(CompareError::NoCredential { step })?;
        let value = header::HeaderValue::from_str(&format!("sid={sid}"))
            .map_err(|_| CompareError::NoCredential { step })?;
        return Ok(CredentialHeader::Cookie(value));
    }
    let body: serde_json::Value =
        serde_json::from_slice(&answer.body).map_err(|_| CompareError::NoCredential { step })?;
    let token = body["access_token"]
        .as_str()
        .ok_or(CompareError::NoCredential { step })?;
    let value = header::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| CompareError::NoCredential { step })?;
    Ok(CredentialHeader::Bearer(value))
}

/// How long a verifier may take to become ready (its first JWKS fetch from its issuer, on this
/// machine) before the run gives up on it.
const VERIFIER_READY_WITHIN: Duration = Duration::from_secs(10);

/// Waits until the verifier at `addr` answers `/readyz` with 200: its first JWKS fetch has
/// landed, so its `/me` checks tokens instead of answering 503.
async fn wait_ready(addr: SocketAddr, timeout: Duration) -> Result<(), CompareError> {
    let started = Instant::now();
    loop {
        let answer = status(&RequestSpec::get(addr, "/readyz"), timeout).await?;
        if answer == 200 {
            return Ok(());
        }
        if started.elapsed() >= VERIFIER_READY_WITHIN {
            return Err(CompareError::Setup {
                step: "wait for the verifier's first JWKS fetch (/readyz)",
                status: answer,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Registers the user and logs it in on every mode's instance (a verifier's mode: on its
/// issuer, once the verifier is ready).
pub async fn log_in_everywhere(
    instances: &Instances,
    timeout: Duration,
) -> Result<Logins, CompareError> {
    register(instances.hello, timeout).await?;
    let mut credentials = Vec::new();
    for instance in &instances.modes {
        if instance.issuer.is_some() {
            wait_ready(instance.addr, timeout).await?;
        }
        let backend = instance.mode.backend.name();
        credentials.push(log_in(instance.login_addr(), backend, timeout, "log in").await?);
    }
    Ok(Logins { credentials })
}

/// What one backend did when its credential met the other instance, and a logout.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ScaleOutCheck {
    /// Which backend, and where the credential was issued.
    pub backend: String,
    /// The route of the main table this credential's backend is measured on.
    pub route: String,
    /// Status of `/me` on the issuing instance before logout.
    pub issuer_before: u16,
    /// Status of `/me` on the other instance before logout (200: the credential travels).
    pub other_before: u16,
    /// Status of the logout on the issuing instance.
    pub logout: u16,
    /// Status of `/me` on the issuing instance right after logout (401: revoked).
    pub issuer_after: u16,
    /// Status of `/me` on the other instance right after logout.
    pub other_after: u16,
    /// Microseconds from sending the logout to the first rejected `/me` on the issuing
    /// instance (polled for up to a second); `None` if it was never rejected.
    pub revocation_us: Option<u64>,
}

/// `GET /<backend>/me` with `credential`.
pub fn me(addr: SocketAddr, backend: &str, credential: &CredentialHeader) -> RequestSpec {
    let (name, value) = credential.header();
    RequestSpec::get(addr, format!("/{backend}/me")).header(name, value)
}

async fn status(request: &RequestSpec, timeout: Duration) -> Result<u16, CompareError> {
    Ok(fetch(request, timeout)
        .await
        .map_err(CompareError::Load)?
        .status)
}

/// `POST /<backend>/logout` with `credential`.
pub fn logout(addr: SocketAddr, backend: &str, credential: &CredentialHeader) -> RequestSpec {
    let mut request = me(addr, backend, credential);
    request.method = authlab_loadgen::Method::POST;
    request.path = format!("/{backend}/logout");
    request
}

/// Logs in on one instance, presents the credential to both, logs out, presents it again.
async fn check(
    backend: &'static str,
    label: &str,
    route: &str,
    issuer: SocketAddr,
    other: SocketAddr,
    timeout: Duration,
) -> Result<ScaleOutCheck, CompareError> {
    let credential = log_in(issuer, backend, timeout, "log in (scale-out check)").await?;
    let issuer_before = status(&me(issuer, backend, &credential), timeout).await?;
    let other_before = status(&me(other, backend, &credential), timeout).await?;
    let logout_request = logout(issuer, backend, &credential);
    let started = Instant::now();
    let logout = status(&logout_request, timeout).await?;
    let mut revocation_us = None;
    let mut issuer_after = 200;
    while started.elapsed() < Duration::from_secs(1) {
        issuer_after = status(&me(issuer, backend, &credential), timeout).await?;
        if issuer_after != 200 {
            revocation_us = Some(started.elapsed().as_micros() as u64);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let other_after = status(&me(other, backend, &credential), timeout).await?;
    Ok(ScaleOutCheck {
        backend: label.to_owned(),
        route: route.to_owned(),
        issuer_before,
        other_before,
        logout,
        issuer_after,
        other_after,
        revocation_us,
    })
}

/// The scale-out and revocation check of every mode that has a twin (in-process runs only).
pub async fn scale_out(
    instances: &Instances,
    timeout: Duration,
) -> Result<Vec<ScaleOutCheck>, CompareError> {
    let mut checks = Vec::new();
    for instance in &instances.modes {
        let Some(twin) = instance.twin.filter(|_| instance.mode.scale_out) else {
            continue;
        };
        let mode = instance.mode;
        let label = format!("{} ({})", mode.backend.name(), mode.flags_text());
        checks.push(
            check(
                mode.backend.name(),
                &label,
                mode.row,
                instance.addr,
                twin,
                timeout,
            )
            .await?,
        );
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("authlab-stale-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    /// A pid no process can have: above the kernel's `pid_max`.
    fn dead_pid() -> u64 {
        let max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4_194_304);
        max + 1
    }

    #[test]
    fn a_leftover_of_a_dead_process_is_removed_and_a_live_ones_is_kept() {
        let dir = scratch();
        let dead = dir.join(format!("authlab-compare-{}-0123abcd", dead_pid()));
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join("users.db"), b"x").unwrap();
        let live = create_run_dir(&dir, "4567ef").unwrap();
        let unrelated = dir.join("authlab-compare-notapid.db");
        std::fs::write(&unrelated, b"x").unwrap();

        let removed = remove_stale_runs(&dir);

        assert_eq!(removed, vec![dead.clone()]);
        assert!(!dead.exists());
        assert!(live.exists(), "this process is alive: its directory stays");
        assert!(unrelated.exists(), "not named by a pid: not ours to remove");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_run_directory_carries_this_processs_pid() {
        let dir = scratch();
        let run_dir = create_run_dir(&dir, "feed").unwrap();
        let name = run_dir.file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(name, format!("authlab-compare-{}-feed", std::process::id()));
        assert_eq!(remove_stale_runs(&dir), Vec::<PathBuf>::new());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
