//! `spawn_app()` and the test clients: every test talks to a real server over HTTP, backed by real
//! Redis and a real SQL database, exactly as a user's client would.
//!
//! Each app reads the time from a clock of its own ([`TestApp::clock`]): the system clock until
//! the test moves it forward, so a test of expiry advances the clock instead of sleeping. Only
//! what the app times itself follows it (sessions, JWT `exp`); Redis expires keys by real time.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use authlab::config::Settings;
use authlab::startup::Application;
use authlab_core::OffsetClock;
use reqwest::{Response, StatusCode, header};
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

/// The HS256 key every test app signs with, so tests can also forge tokens with it. Random-looking
/// (`head -c 36 /dev/urandom | base64`), as the secret rules at start-up require.
pub const TEST_JWT_SECRET: &str = "rj4kfogxwFJt4jXD4dxKm6A3zifLgCF1ypdF610/rK7ZnaWk";

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// The mounted backends, each named as its scope (`/session`, `/redis`, `/jwt`): the server's own
/// list, so a test that loops over `Backend::ALL` covers a backend added to it.
pub use authlab::backend_kind::BackendKind as Backend;

/// The backends that hand out bearer and refresh tokens.
pub fn token_backends() -> impl Iterator<Item = Backend> {
    Backend::ALL
        .into_iter()
        .filter(|backend| backend.issues_refresh_tokens())
}

/// PostgreSQL for the tests: `AUTHLAB_TEST_POSTGRES_URL`, or the machine's local server.
pub fn postgres_admin_url() -> String {
    std::env::var("AUTHLAB_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A running authlab on a random port, with its own SQLite file and its own Redis key prefix.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub settings: Settings,
    /// The app's clock: [`OffsetClock::advance`] moves it forward for this app alone.
    pub clock: OffsetClock,
    handle: actix_web::dev::ServerHandle,
    sqlite_file: Option<PathBuf>,
}

/// How a client proves who it is after login.
#[derive(Debug, Clone)]
pub enum Credential {
    /// The `sid` cookie of the session backend.
    Cookie(String),
    /// A bearer token of the redis or jwt backend.
    Bearer(String),
}

impl Credential {
    pub fn value(&self) -> &str {
        match self {
            Self::Cookie(v) | Self::Bearer(v) => v,
        }
    }

    /// The same kind of credential carrying another value (for tampering).
    pub fn with_value(&self, value: String) -> Self {
        match self {
            Self::Cookie(_) => Self::Cookie(value),
            Self::Bearer(_) => Self::Bearer(value),
        }
    }

    /// Attaches the credential the way its backend expects it (cookie or `Authorization`).
    pub fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::Cookie(sid) => request.header(header::COOKIE, format!("sid={sid}")),
            Self::Bearer(token) => request.bearer_auth(token),
        }
    }
}

/// Settings for a test app: a random port, a fresh SQLite file, a unique Redis prefix, a known
/// JWT secret, one worker.
pub fn test_settings() -> Settings {
    let mut settings = Settings::defaults();
    settings.bind = "127.0.0.1:0".to_owned();
    let file = std::env::temp_dir().join(format!("authlab-test-{}.db", Uuid::new_v4()));
    settings.database_url = format!("sqlite://{}", file.display());
    settings.redis_prefix = format!("authlab-test:{}:", Uuid::new_v4().simple());
    settings.jwt_secret = Some(SecretString::from(TEST_JWT_SECRET));
    settings.jwt_denylist = authlab::config::DenylistMode::On;
    settings.workers = Some(1);
    settings
}

/// Which Redis an app is given: the machine's own, or a Redis Cluster. The contract and
/// lifecycle suites take one, so the same test bodies run on both.
#[derive(Clone)]
pub enum Store {
    /// `redis://127.0.0.1:6379`, the default.
    Standalone,
    /// A 6-node cluster of the tests' own (kept alive while the store is held).
    Cluster(std::sync::Arc<crate::redis_cluster::RedisCluster>),
}

impl Store {
    /// The shared test cluster.
    pub fn cluster() -> Self {
        Store::Cluster(crate::redis_cluster::RedisCluster::shared())
    }

    pub async fn spawn(&self) -> TestApp {
        self.spawn_with(|_| {}).await
    }

    /// [`spawn_app_with`] on this store.
    pub async fn spawn_with(&self, customise: impl FnOnce(&mut Settings)) -> TestApp {
        let url = match self {
            Store::Standalone => None,
            Store::Cluster(cluster) => Some(cluster.url()),
        };
        spawn_app_with(|settings| {
            if let Some(url) = url {
                settings.redis.url = url;
            }
            customise(settings);
        })
        .await
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the real application with `customise` applied to the test settings.
pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings();
    customise(&mut settings);
    let sqlite_file = settings
        .database_url
        .strip_prefix("sqlite://")
        .map(PathBuf::from);
    let clock = OffsetClock::new();
    let app = Application::build_with_clock(settings.clone(), Arc::new(clock.clone()))
        .await
        .expect("the test app builds");
    let port = app.port();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a reqwest client"),
        settings,
        clock,
        handle,
        sqlite_file,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop serving; the SQLite file is ours alone, so remove it.
        drop(self.handle.stop(false));
        // So is an introspection secret file that `with_introspection_secret` wrote.
        if let Some(file) = &self.settings.introspection_secret_file
            && file
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(INTROSPECTION_SECRET_FILE_PREFIX))
        {
            let _ = std::fs::remove_file(file);
        }
        if let Some(file) = &self.sqlite_file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
    }
}

/// A user the test registered, with a name unique to this run.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub user_id: i64,
    pub username: String,
    pub password: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// Registers a fresh user and returns it.
    pub async fn register(&self) -> TestUser {
        let username = format!("user-{}", Uuid::new_v4().simple());
        let response = self
            .post_json(
                "/users",
                &json!({ "username": username, "password": PASSWORD }),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("json");
        TestUser {
            user_id: body["user_id"].as_i64().expect("user_id"),
            username,
            password: PASSWORD.to_owned(),
        }
    }

    pub async fn login_response(
        &self,
        backend: Backend,
        username: &str,
        password: &str,
    ) -> Response {
        self.post_json(
            &format!("/{backend}/login"),
            &json!({ "username": username, "password": password }),
        )
        .await
    }

    /// Logs `user` in on `backend` and returns the credential it was given.
    pub async fn login(&self, backend: Backend, user: &TestUser) -> Credential {
        let response = self
            .login_response(backend, &user.username, &user.password)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "login on {backend}");
        credential_from_login(backend, response).await
    }

    /// Registers a user and logs in on `backend`.
    pub async fn logged_in(&self, backend: Backend) -> (TestUser, Credential) {
        let user = self.register().await;
        let credential = self.login(backend, &user).await;
        (user, credential)
    }

    /// A request to `path` carrying `credential`, ready for a body and `send()`.
    pub fn authed(
        &self,
        method: reqwest::Method,
        path: &str,
        credential: &Credential,
    ) -> reqwest::RequestBuilder {
        credential.apply(self.client.request(method, self.url(path)))
    }

    pub async fn me(&self, backend: Backend, credential: &Credential) -> Response {
        let path = format!("/{backend}/me");
        self.authed(reqwest::Method::GET, &path, credential)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn logout(&self, backend: Backend, credential: &Credential) -> Response {
        let path = format!("/{backend}/logout");
        self.authed(reqwest::Method::POST, &path, credential)
            .send()
            .await
            .expect("request sent")
    }
}

/// Reads the credential out of a successful login response.
pub async fn credential_from_login(backend: Backend, response: Response) -> Credential {
    if backend == Backend::Session {
        let cookie = response
            .headers()
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .expect("a session login sets a cookie")
            .to_owned();
        let sid = cookie
            .split(';')
            .next()
            .and_then(|pair| pair.strip_prefix("sid="))
            .expect("the cookie is sid=...");
        Credential::Cookie(sid.to_owned())
    } else {
        let body: Value = response.json().await.expect("json");
        Credential::Bearer(
            body["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
        )
    }
}

/// Asserts an error response: status, `error` code, and a non-empty human message.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> Value {
    let got = response.status();
    let body: Value = response.json().await.expect("error bodies are JSON");
    assert_eq!(got, status, "body: {body}");
    assert_eq!(body["error"], code, "body: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "body: {body}"
    );
    body
}

/// A `redis-server` of the test's own on a free port, so a test can stop and restart it without
/// touching the machine's shared Redis.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
    /// More `redis-server` arguments, kept across restarts.
    extra: Vec<String>,
}

impl PrivateRedis {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with more `redis-server` arguments (e.g. `--enable-debug-command yes`).
    pub fn start_with(extra: &[&str]) -> Self {
        let port = free_port();
        let extra = extra.iter().map(|arg| (*arg).to_owned()).collect();
        let mut redis = Self {
            port,
            child: None,
            extra,
        };
        redis.restart();
        redis
    }

    /// A Redis that is not running (yet), on a free port.
    pub fn not_started() -> Self {
        Self {
            port: free_port(),
            child: None,
            extra: Vec::new(),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, and waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is on PATH (see README: the tests need it)");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("private redis-server on port {} did not start", self.port);
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Freezes the server (`SIGSTOP`: a hung Redis, its sockets open) until the guard is dropped
    /// (`SIGCONT`), so a failing assertion never leaves it stopped.
    pub fn pause(&self) -> Resume {
        let pid = self.pid().expect("the private Redis runs").to_string();
        assert!(
            Command::new("kill")
                .args(["-STOP", &pid])
                .status()
                .expect("kill is on PATH")
                .success()
        );
        Resume(pid)
    }

    /// Kills the server (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nobody listens on: bound, read, and released.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Polls `probe` until it returns true, for at most `limit`; used where recovery is asynchronous.
pub async fn eventually<F, Fut>(limit: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if probe().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The secret resource servers send to `/{backend}/introspect` in test apps that have one.
pub const INTROSPECTION_SECRET: &str = "introspection-secret-0123456789abcdef";

const INTROSPECTION_SECRET_FILE_PREFIX: &str = "authlab-test-introspection-";

/// For `spawn_app_with`: writes [`INTROSPECTION_SECRET`] (with the trailing newline an editor
/// adds) to a file of its own and points the settings at it. The app removes it when dropped.
pub fn with_introspection_secret(settings: &mut Settings) {
    let file = std::env::temp_dir().join(format!(
        "{INTROSPECTION_SECRET_FILE_PREFIX}{}.secret",
        Uuid::new_v4().simple()
    ));
    std::fs::write(&file, format!("{INTROSPECTION_SECRET}\n")).expect("the secret file is written");
    settings.introspection_secret_file = Some(file);
}

/// Sends `SIGCONT` to a paused private Redis when dropped ([`PrivateRedis::pause`]).
pub struct Resume(pub(crate) String);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0]).status();
    }
}
