//! The user store: who may log in, and the proof that they are who they say.
//!
//! Every backend starts from the same login: a name and a password checked against this store.
//! It is consulted *only* at login and registration, never on the per-request hot path, so its cost
//! (argon2id, deliberately slow) is measured apart from verification.
//!
//! # Layout
//! - [`Username`]: a name parsed at the edge; a value of this type is valid.
//! - [`PasswordPolicy`] (module [`policy`]): the rules a new password must meet (NIST SP 800-63B
//!   rev. 4: a minimum length, no user name, zxcvbn's estimate against common and breached
//!   passwords and patterns), checked by [`UserStore::check_new_password`] into a [`Password`].
//!   Login never applies them: a password accepted once keeps working.
//! - [`UserStore`]: sqlx over SQLite (a file, the default) or PostgreSQL (a `postgres://` URL),
//!   with migrations for each dialect run at start-up.
//! - Password hashing: argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane), run on
//!   Tokio's blocking pool with at most one hash per core in flight, so logins cannot starve the
//!   async workers that serve everybody else.
//!
//! Passwords are NFKC-normalised before hashing, so the same password typed with composed or
//! decomposed characters is the same password. Hashes made before that (raw bytes) still verify.
//!
//! A real deployment would add login throttling and might also query a breach corpus (Have I Been
//! Pwned's k-anonymity API) at registration; see docs/security.md.
#![deny(missing_docs)]

pub mod policy;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::password_hash::SaltString;
use argon2::password_hash::rand_core::OsRng;
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use authlab_core::Identity;
use policy::MAX_MIN_PASSWORD_CHARS;
pub use policy::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, PasswordPolicy};
use secrecy::{ExposeSecret, SecretString};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use tokio::sync::Semaphore;

/// How long start-up waits for the PostgreSQL server to accept one connection. Short, so that an
/// unreachable host fails start-up in seconds, with its address, rather than after the TCP
/// timeout (about two minutes) or as the pool's cause-less "pool timed out".
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest accepted user name, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// What can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum UserStoreError {
    /// A field of the request breaks a rule (empty, too long, ...). The message says which.
    #[error("{field}: {reason}")]
    InvalidField {
        /// The offending field's name as the client sent it.
        field: &'static str,
        /// What is wrong with it, for a human.
        reason: String,
    },
    /// Registration with a name somebody already has.
    #[error("the user name is already taken")]
    UsernameTaken,
    /// The database URL names neither SQLite nor PostgreSQL.
    #[error("unsupported database URL (use sqlite:// or postgres://)")]
    UnsupportedUrl,
    /// The database could not be reached or did not answer in time.
    #[error("the user database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// At start-up, no connection to the PostgreSQL server could be opened: refused, unreachable,
    /// a host that does not resolve, or no answer within [`CONNECT_TIMEOUT`].
    #[error("cannot connect to PostgreSQL at {server}")]
    Connect {
        /// `host:port` (or the socket path): never the URL, which may hold a password.
        server: String,
        /// Why, as the operating system says it (`Connection refused`, ...).
        #[source]
        source: std::io::Error,
    },
    /// At start-up, the PostgreSQL server answered but would not let us in (authentication, a
    /// database that does not exist, too many connections).
    #[error("PostgreSQL at {server} turned the connection down: {message}")]
    Refused {
        /// `host:port` (or the socket path).
        server: String,
        /// The server's own message (it never repeats the password).
        message: String,
    },
    /// Migrations failed at start-up.
    #[error("could not migrate the user database")]
    Migration(#[source] sqlx::migrate::MigrateError),
    /// Any other database error.
    #[error("the user database failed")]
    Database(#[source] sqlx::Error),
    /// Hashing failed (argon2 rejected its inputs; does not happen with valid parameters).
    #[error("password hashing failed")]
    Hashing(#[source] argon2::password_hash::Error),
    /// The blocking task that hashes or checks a password did not finish (it panicked, or the
    /// runtime is shutting down).
    #[error("the password worker failed")]
    Worker(#[source] tokio::task::JoinError),
    /// The permits that bound concurrent hashing were closed (the store is shutting down).
    #[error("the password workers are closed")]
    WorkersClosed(#[source] tokio::sync::AcquireError),
    /// A password policy was asked for with a minimum length outside what NIST allows and what
    /// the policy can honour.
    #[error(
        "the minimum password length must be {MIN_PASSWORD_CHARS} to {MAX_MIN_PASSWORD_CHARS} characters, not {min_chars}"
    )]
    PolicyOutOfRange {
        /// The refused minimum.
        min_chars: usize,
    },
}

/// Opens (and closes) one connection to the PostgreSQL server at `url`, within
/// [`CONNECT_TIMEOUT`], so that a server that cannot be used is reported with its address and the
/// cause. The pool alone would retry until its acquire timeout and then say only "pool timed out
/// while waiting for an open connection".
async fn reach_postgres(url: &str) -> Result<(), UserStoreError> {
    use sqlx::ConnectOptions as _;
    use sqlx::Connection as _;
    let options: sqlx::postgres::PgConnectOptions =
        url.parse().map_err(UserStoreError::Unavailable)?;
    let server = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None if options.get_host().contains(':') => {
            format!("[{}]:{}", options.get_host(), options.get_port())
        }
        None => format!("{}:{}", options.get_host(), options.get_port()),
    };
    let timed_out = || {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        )
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(sqlx::Error::Io(source))) => Err(UserStoreError::Connect { server, source }),
        Ok(Err(sqlx::Error::Database(refusal))) => Err(UserStoreError::Refused {
            server,
            message: refusal.message().to_owned(),
        }),
        Ok(Err(other)) => Err(UserStoreError::Unavailable(other)),
        Err(_) => Err(UserStoreError::Connect {
            server,
            source: timed_out(),
        }),
    }
}

impl From<sqlx::Error> for UserStoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::UsernameTaken,
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Self::Unavailable(err),
            _ => Self::Database(err),
        }
    }
}

/// A user name that passed the rules: 1 to 64 characters, no control characters, no leading or
/// trailing white space (so "alice" and "alice " cannot be two people).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// Checks the rules.
    pub fn parse(raw: String) -> Result<Self, UserStoreError> {
        let invalid = |reason: &str| UserStoreError::InvalidField {
            field: "username",
            reason: reason.to_owned(),
        };
        if raw.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if raw.chars().count() > MAX_USERNAME_CHARS {
            return Err(invalid(&format!(
                "must be at most {MAX_USERNAME_CHARS} characters"
            )));
        }
        if raw.chars().any(char::is_control) {
            return Err(invalid("must not contain control characters"));
        }
        if raw.trim() != raw {
            return Err(invalid("must not start or end with white space"));
        }
        Ok(Self(raw))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password that passed the [`PasswordPolicy`], in NFKC form (the form that is hashed);
/// kept secret (zeroed on drop, never printed). Made by [`UserStore::check_new_password`] or
/// [`PasswordPolicy::check`]; [`dangerous::unchecked_password`] skips the rules.
pub struct Password(SecretString);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// argon2id with OWASP's recommended minimum: m = 19 MiB, t = 2, p = 1.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Password hashing off the async workers, at most one hash per core at a time.
#[derive(Clone)]
struct Hasher {
    permits: Arc<Semaphore>,
}

impl Hasher {
    fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            permits: Arc::new(Semaphore::new(cores)),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, UserStoreError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(UserStoreError::WorkersClosed)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(UserStoreError::Worker)
    }

    async fn hash(&self, password: Password) -> Result<String, UserStoreError> {
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2()
                .hash_password(password.0.expose_secret().as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(UserStoreError::Hashing)
        })
        .await?
    }

    /// Checks a presented password against a hash: its NFKC form first (how every hash since the
    /// password policy is made), then, if that differs and fails, the bytes as typed (how older
    /// hashes were made), so that no existing user is locked out. The unknown-user path runs
    /// this too, so both answers cost the same for the same input.
    async fn verify(&self, password: SecretString, hash: String) -> Result<bool, UserStoreError> {
        self.run(move || {
            let Ok(parsed) = PasswordHash::new(&hash) else {
                return false;
            };
            let matches = |candidate: &SecretString| {
                argon2()
                    .verify_password(candidate.expose_secret().as_bytes(), &parsed)
                    .is_ok()
            };
            let normalized = policy::nfkc(password.clone());
            matches(&normalized)
                || (normalized.expose_secret() != password.expose_secret() && matches(&password))
        })
        .await
    }
}

/// Users in SQL, with their argon2id hashes.
#[derive(Clone)]
pub struct UserStore {
    pool: AnyPool,
    hasher: Hasher,
    policy: PasswordPolicy,
    /// The hash of a random password nobody knows. Logging in as a user that does not exist is
    /// checked against it, so an unknown name costs the same time as a wrong password and the
    /// response time does not reveal which names are registered.
    dummy_hash: Arc<str>,
}

impl UserStore {
    /// Connects to `url`, creating a SQLite file if it does not exist, and runs migrations. New
    /// passwords must meet [`PasswordPolicy::default`] unless [`Self::with_password_policy`]
    /// says otherwise.
    ///
    /// `sqlite://authlab.db` is a file in the working directory, `sqlite::memory:` a throwaway
    /// database, `postgres://user@host/db` a PostgreSQL database.
    pub async fn connect(url: &str) -> Result<Self, UserStoreError> {
        sqlx::any::install_default_drivers();
        let (url, migrator) = if url.starts_with("sqlite:") {
            (sqlite_url_creating_file(url), &SQLITE_MIGRATIONS)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            reach_postgres(url).await?;
            (url.to_owned(), &POSTGRES_MIGRATIONS)
        } else {
            return Err(UserStoreError::UnsupportedUrl);
        };
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = AnyPoolOptions::new()
            // One in-memory SQLite database per connection would be several databases: keep one.
            .max_connections(if in_memory { 1 } else { 8 })
            .min_connections(if in_memory { 1 } else { 0 })
            .idle_timeout(if in_memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if in_memory {
                None
            } else {
                Some(Duration::from_secs(1800))
            })
            .acquire_timeout(Duration::from_secs(3))
            .connect(&url)
            .await
            .map_err(UserStoreError::Unavailable)?;
        migrator
            .run(&pool)
            .await
            .map_err(UserStoreError::Migration)?;
        let hasher = Hasher::new();
        let mut random = [0u8; 32];
        argon2::password_hash::rand_core::RngCore::fill_bytes(&mut OsRng, &mut random);
        let dummy_password = Password(SecretString::from(
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
        ));
        let dummy_hash = hasher.hash(dummy_password).await?.into();
        // zxcvbn builds its dictionaries (about 95,000 words) on first use: do it now, off the
        // async workers, rather than in the first registration.
        hasher.run(|| drop(zxcvbn::zxcvbn("warm-up", &[]))).await?;
        Ok(Self {
            pool,
            hasher,
            policy: PasswordPolicy::default(),
            dummy_hash,
        })
    }

    /// The same store, judging new passwords by `policy`.
    #[must_use]
    pub fn with_password_policy(mut self, policy: PasswordPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The policy new passwords are judged by.
    pub fn password_policy(&self) -> PasswordPolicy {
        self.policy
    }

    /// Checks a password chosen by (or for) `username` against the policy, on the blocking pool
    /// and within the same one-per-core limit as hashing: zxcvbn takes up to about 130 ms on a
    /// hostile 64-character input, too long for an async worker. Call it before anything that
    /// cannot be undone (a password change revokes every credential), so a refusal changes
    /// nothing. Existing passwords are never checked: login does not call this.
    pub async fn check_new_password(
        &self,
        username: &str,
        password: SecretString,
    ) -> Result<Password, UserStoreError> {
        let policy = self.policy;
        let username = username.to_owned();
        self.hasher
            .run(move || policy.check(password, &username))
            .await?
    }

    /// Creates a user. The password is hashed before anything touches the database. It passed
    /// the policy when it became a [`Password`] ([`Self::check_new_password`]).
    pub async fn register(
        &self,
        username: Username,
        password: Password,
    ) -> Result<Identity, UserStoreError> {
        let hash = self.hasher.hash(password).await?;
        let created_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let user_id: i64 = sqlx::query_scalar(
            "INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(username.as_str())
        .bind(hash)
        .bind(created_at)
        .fetch_one(&self.pool)
        .await?;
        Ok(Identity::new(user_id, username.0))
    }

    /// Checks a name and password. `Ok(None)` means "no": an unknown name and a wrong password
    /// are the same answer, reached in the same time.
    pub async fn authenticate(
        &self,
        username: &str,
        password: SecretString,
    ) -> Result<Option<Identity>, UserStoreError> {
        let row: Option<(i64, String, String)> =
            sqlx::query_as("SELECT id, username, password_hash FROM users WHERE username = $1")
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
        match row {
            Some((user_id, name, hash)) => {
                let ok = self.hasher.verify(password, hash).await?;
                Ok(ok.then(|| Identity::new(user_id, name)))
            }
            None => {
                // Timing equalizer: do the same work as for a real user, then say no.
                let _ = self
                    .hasher
                    .verify(password, self.dummy_hash.to_string())
                    .await?;
                Ok(None)
            }
        }
    }

    /// Checks a user's current password (before a sensitive change such as a new password).
    pub async fn verify_password(
        &self,
        user_id: i64,
        password: SecretString,
    ) -> Result<bool, UserStoreError> {
        let hash: Option<String> =
            sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        match hash {
            Some(hash) => self.hasher.verify(password, hash).await,
            None => Ok(false),
        }
    }

    /// Replaces a user's password hash. Check the old password first ([`Self::verify_password`]);
    /// revoking the user's credentials is the caller's job: the store knows nothing of sessions
    /// or tokens.
    pub async fn set_password(&self, user_id: i64, new: Password) -> Result<bool, UserStoreError> {
        let new_hash = self.hasher.hash(new).await?;
        let updated = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(new_hash)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// `SELECT 1`: the readiness check.
    pub async fn ping(&self) -> Result<(), UserStoreError> {
        let _: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection (tests drop their databases afterwards).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Ways around the password policy, for what is not a user choosing a password.
pub mod dangerous {
    use secrecy::SecretString;

    use crate::Password;

    /// A [`Password`] that skips every rule of the policy (it is still NFKC-normalised). For
    /// importing existing users and for tests that need a weak password on record; never for a
    /// password a client has just chosen.
    pub fn unchecked_password(password: SecretString) -> Password {
        Password(crate::policy::nfkc(password))
    }
}

/// sqlx opens SQLite files read-write but does not create them unless asked with `mode=rwc`.
/// A user who names a file expects it to be created, so unless the URL says otherwise, ask.
fn sqlite_url_creating_file(url: &str) -> String {
    if url.contains(":memory:") || url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    /// A password the default policy accepts, and another.
    const GOOD: &str = "sawdust lantern orbit pickle";
    const OTHER: &str = "quiet maple ferry cobalt";

    fn good(password: &str) -> Password {
        PasswordPolicy::default()
            .check(secret(password), "alice")
            .unwrap()
    }

    fn temp_sqlite() -> (String, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("authlab-users-{}.db", uuid::Uuid::new_v4()));
        (format!("sqlite://{}", path.display()), path)
    }

    #[test]
    fn username_rules() {
        assert!(Username::parse("alice".into()).is_ok());
        assert!(Username::parse("a".repeat(64)).is_ok());
        for bad in ["", " alice", "alice ", "al\nice", &"a".repeat(65)] {
            assert!(
                matches!(
                    Username::parse(bad.to_owned()),
                    Err(UserStoreError::InvalidField {
                        field: "username",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_store_checks_new_passwords_by_its_policy() {
        let store = UserStore::connect("sqlite::memory:").await.unwrap();
        assert_eq!(store.password_policy(), PasswordPolicy::default());
        let refused = store
            .check_new_password("alice", secret("iloveyou1234567"))
            .await;
        assert_eq!(
            refused.map(drop).map_err(|e| e.to_string()),
            Err("password: is too common or too easy to guess".to_owned())
        );
        let short = secret("k7#Qv9!m");
        assert!(matches!(
            store.check_new_password("alice", short).await,
            Err(UserStoreError::InvalidField {
                field: "password",
                ..
            })
        ));
        let eight = store.with_password_policy(PasswordPolicy::new(8).unwrap());
        assert!(
            eight
                .check_new_password("alice", secret("k7#Qv9!m"))
                .await
                .is_ok()
        );
    }

    #[test]
    fn sqlite_urls_create_their_file_unless_told_otherwise() {
        assert_eq!(
            sqlite_url_creating_file("sqlite://a.db"),
            "sqlite://a.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url_creating_file("sqlite://a.db?cache=shared"),
            "sqlite://a.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            sqlite_url_creating_file("sqlite://a.db?mode=ro"),
            "sqlite://a.db?mode=ro"
        );
        assert_eq!(
            sqlite_url_creating_file("sqlite::memory:"),
            "sqlite::memory:"
        );
    }

    #[tokio::test]
    async fn a_named_sqlite_file_is_created_and_stores_only_a_hash() {
        let (url, path) = temp_sqlite();
        let store = UserStore::connect(&url).await.unwrap();
        assert!(path.exists());
        let alice = store
            .register(Username::parse("alice".into()).unwrap(), good(GOOD))
            .await
            .unwrap();
        let stored: String = sqlx::query_scalar("SELECT password_hash FROM users")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(!stored.contains(GOOD));

        let ok = store.authenticate("alice", secret(GOOD)).await.unwrap();
        assert_eq!(ok, Some(alice));
        assert_eq!(
            store
                .authenticate("alice", secret("wrong horse"))
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.authenticate("bob", secret(GOOD)).await.unwrap(), None);
        store.close().await;
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn a_password_is_checked_and_replaced() {
        let store = UserStore::connect("sqlite::memory:").await.unwrap();
        let alice = store
            .register(Username::parse("alice".into()).unwrap(), good(GOOD))
            .await
            .unwrap();
        let check = |password: &str, user_id: i64| store.verify_password(user_id, secret(password));
        assert!(!check("wrong", alice.user_id).await.unwrap());
        assert!(check(GOOD, alice.user_id).await.unwrap());
        assert!(!check(GOOD, alice.user_id + 1).await.unwrap());
        let new = good(OTHER);
        assert!(store.set_password(alice.user_id, new).await.unwrap());
        assert_eq!(
            store.authenticate("alice", secret(GOOD)).await.unwrap(),
            None
        );
        assert!(
            store
                .authenticate("alice", secret(OTHER))
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_taken_name_is_refused() {
        let store = UserStore::connect("sqlite::memory:").await.unwrap();
        let name = || Username::parse("alice".into()).unwrap();
        let pass = || good(GOOD);
        store.register(name(), pass()).await.unwrap();
        assert!(matches!(
            store.register(name(), pass()).await,
            Err(UserStoreError::UsernameTaken)
        ));
    }

    #[tokio::test]
    async fn a_password_is_the_same_password_composed_or_decomposed() {
        let store = UserStore::connect("sqlite::memory:").await.unwrap();
        let decomposed = "cafe\u{301} lantern orbit pickle";
        let composed = "caf\u{e9} lantern orbit pickle";
        let password = store
            .check_new_password("alice", secret(decomposed))
            .await
            .unwrap();
        let alice = store
            .register(Username::parse("alice".into()).unwrap(), password)
            .await
            .unwrap();
        for typed in [composed, decomposed] {
            assert_eq!(
                store.authenticate("alice", secret(typed)).await.unwrap(),
                Some(alice.clone()),
                "{typed:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_hash_of_the_raw_bytes_made_before_normalisation_still_verifies() {
        let store = UserStore::connect("sqlite::memory:").await.unwrap();
        // What registration stored before passwords were normalised: a hash of the bytes typed.
        let typed = "cafe\u{301} lantern orbit pickle";
        let legacy = store.hasher.hash(Password(secret(typed))).await.unwrap();
        sqlx::query("INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, 0)")
            .bind("old-timer")
            .bind(legacy)
            .execute(&store.pool)
            .await
            .unwrap();
        let found = store
            .authenticate("old-timer", secret(typed))
            .await
            .unwrap();
        assert_eq!(
            found.map(|i| i.username.to_string()).as_deref(),
            Some("old-timer")
        );
        let wrong = store
            .authenticate("old-timer", secret("cafe lantern orbit pickle"))
            .await;
        assert_eq!(wrong.unwrap(), None);
    }

    #[tokio::test]
    async fn a_weak_password_on_record_keeps_logging_in() {
        let store = UserStore::connect("sqlite::memory:").await.unwrap();
        let weak = dangerous::unchecked_password(secret("password1"));
        let old = store
            .register(Username::parse("old-timer".into()).unwrap(), weak)
            .await
            .unwrap();
        let found = store
            .authenticate("old-timer", secret("password1"))
            .await
            .unwrap();
        assert_eq!(found, Some(old));
    }

    #[tokio::test]
    async fn other_url_schemes_are_refused() {
        assert!(matches!(
            UserStore::connect("mysql://localhost/test").await,
            Err(UserStoreError::UnsupportedUrl)
        ));
    }
}
