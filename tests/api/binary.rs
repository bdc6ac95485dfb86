//! The `authlab` binary as a user runs it: flags, environment, start-up errors and what it logs.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::*;

pub(crate) fn authlab() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_authlab"));
    // Start from a clean slate: no AUTHLAB_* from the caller's environment leaks in.
    for (key, _) in std::env::vars() {
        if key.starts_with("AUTHLAB_") {
            command.env_remove(key);
        }
    }
    let db = std::env::temp_dir().join(format!("authlab-bin-{}.db", Uuid::new_v4()));
    command
        .env("AUTHLAB_DATABASE_URL", format!("sqlite://{}", db.display()))
        .env(
            "AUTHLAB_REDIS_PREFIX",
            format!("authlab-test:{}:", Uuid::new_v4().simple()),
        )
        .env("AUTHLAB_BIND", "127.0.0.1:0")
        .env("AUTHLAB_WORKERS", "1")
        .env("NO_COLOR", "1")
        .arg("serve");
    command
}

/// A running `authlab serve`, with everything it writes to standard error collected.
struct Served {
    child: Child,
    base: String,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Served {
    fn start(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut log = Vec::new();
        let base = loop {
            let line = lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no 'listening on' line; log so far: {log:#?}"));
            let found = line
                .split("listening on ")
                .nth(1)
                .map(|rest| rest.trim().to_owned());
            log.push(line);
            if let Some(base) = found {
                break base;
            }
        };
        Self {
            child,
            base,
            lines,
            log,
        }
    }

    /// Stops the server and returns all it logged.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.log.push(line);
        }
        self.log.join("\n")
    }
}

/// Runs the binary expecting it to fail at start-up; returns its standard error.
pub(crate) fn failing_start(mut command: Command) -> String {
    let output = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(!output.status.success(), "start-up should have failed");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn the_binary_serves_every_backend_and_logs_no_secret() {
    let secret = format!("env-secret-{}", Uuid::new_v4().simple());
    let mut command = authlab();
    command
        .env("AUTHLAB_JWT_SECRET", &secret)
        .env("AUTHLAB_ALLOW_QUERY_TOKEN", "true")
        .env("RUST_LOG", "debug");
    let served = Served::start(command);
    let client = reqwest::Client::new();
    let password = format!("pw-{}", Uuid::new_v4().simple());
    let username = format!("user-{}", Uuid::new_v4().simple());
    let created = client
        .post(format!("{}/users", served.base))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    let mut credentials = Vec::new();
    for backend in Backend::ALL {
        let login = client
            .post(format!("{}/{backend}/login", served.base))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap();
        let credential = credential_from_login(backend, login).await;
        let me = match &credential {
            Credential::Cookie(sid) => client
                .get(format!("{}/session/me", served.base))
                .header("cookie", format!("sid={sid}")),
            // Through the query string, the riskiest transport, to prove it stays out of logs.
            Credential::Bearer(token) => {
                client.get(format!("{}/{backend}/me?token={token}", served.base))
            }
        };
        let body: Value = me.send().await.unwrap().json().await.unwrap();
        assert_eq!(body["username"], username.as_str());
        credentials.push(credential.value().to_owned());
    }
    let log = served.stop();

    assert!(
        log.contains("jwt_secret = from AUTHLAB_JWT_SECRET"),
        "{log}"
    );
    assert!(
        log.contains(r#"path="/jwt/me""#),
        "debug access lines are written: {log}"
    );
    for (what, secret_value) in [("JWT secret", &secret), ("password", &password)]
        .into_iter()
        .chain(credentials.iter().map(|c| ("credential", c)))
    {
        assert!(
            !log.contains(secret_value.as_str()),
            "the log shows a {what}:\n{log}"
        );
    }
}

#[tokio::test]
async fn without_a_secret_one_is_generated_with_a_warning() {
    let served = Served::start(authlab());
    let log = served.stop();
    assert!(log.contains("generated a random one"), "{log}");
    assert!(log.contains("will not survive a restart"), "{log}");
}

#[tokio::test]
async fn a_secret_file_is_read_and_its_trailing_newline_ignored() {
    let file = std::env::temp_dir().join(format!("authlab-secret-{}", Uuid::new_v4()));
    // A random-looking secret: the start-up rules refuse a repeated byte such as 32 `k`s.
    std::fs::write(&file, "hoc2b/bodPIQ5auTaFnKMhG8aPWN8XxNZhDKP5N6j/oc\n").unwrap();
    let mut command = authlab();
    command.arg("--jwt-secret-file").arg(&file);
    let served = Served::start(command);
    let log = served.stop();
    let _ = std::fs::remove_file(&file);
    assert!(log.contains("jwt_secret = from file"), "{log}");
}

#[test]
fn a_short_secret_stops_start_up_with_a_clear_message() {
    let mut command = authlab();
    command.env("AUTHLAB_JWT_SECRET", "too-short");
    let stderr = failing_start(command);
    assert!(stderr.contains("9 bytes long"), "{stderr}");
    assert!(stderr.contains("at least 32 bytes"), "{stderr}");
    assert!(
        !stderr.contains("too-short"),
        "the secret itself is never printed: {stderr}"
    );

    let file = std::env::temp_dir().join(format!("authlab-secret-{}", Uuid::new_v4()));
    std::fs::write(&file, "short\n").unwrap();
    let mut command = authlab();
    command.arg("--jwt-secret-file").arg(&file);
    let stderr = failing_start(command);
    let _ = std::fs::remove_file(&file);
    assert!(stderr.contains("at least 32 bytes"), "{stderr}");
}

#[test]
fn a_published_secret_stops_start_up_and_says_how_to_make_a_good_one() {
    // The example secret of a popular JWT debugger, 38 bytes: long enough, and known to everyone.
    let published = "a-string-secret-at-least-256-bits-long";
    let mut command = authlab();
    command.env("AUTHLAB_JWT_SECRET", published);
    let stderr = failing_start(command);
    assert!(stderr.contains("unusable JWT secret"), "{stderr}");
    assert!(
        stderr.contains("a published example or a well-known weak secret"),
        "{stderr}"
    );
    assert!(
        stderr.contains("head -c 48 /dev/urandom | base64 > jwt.secret"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(published),
        "the secret itself is never printed: {stderr}"
    );

    // The same from a file, in capitals, with the newline an editor adds.
    let file = std::env::temp_dir().join(format!("authlab-secret-{}", Uuid::new_v4()));
    std::fs::write(&file, format!("{}\n", published.to_uppercase())).unwrap();
    let mut command = authlab();
    command.arg("--jwt-secret-file").arg(&file);
    let stderr = failing_start(command);
    let _ = std::fs::remove_file(&file);
    assert!(
        stderr.contains("a published example or a well-known weak secret"),
        "{stderr}"
    );
}

#[test]
fn a_secret_of_32_repeated_bytes_stops_start_up_and_says_why() {
    let mut command = authlab();
    command.env("AUTHLAB_JWT_SECRET", "a".repeat(32));
    let stderr = failing_start(command);
    assert!(stderr.contains("unusable JWT secret"), "{stderr}");
    assert!(
        stderr.contains("the JWT secret is one byte repeated"),
        "{stderr}"
    );
    assert!(
        stderr.contains("head -c 48 /dev/urandom | base64 > jwt.secret"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&"a".repeat(32)),
        "the secret itself is never printed: {stderr}"
    );
}

#[test]
fn a_secret_with_too_little_entropy_stops_start_up_with_its_estimate() {
    // The secret the test suite used to sign with: a word and a hexadecimal count, twice.
    let mut command = authlab();
    command.env(
        "AUTHLAB_JWT_SECRET",
        "test-secret-0123456789abcdef0123456789abcdef",
    );
    let stderr = failing_start(command);
    assert!(stderr.contains("bits of entropy"), "{stderr}");
    assert!(stderr.contains("at least 128 bits"), "{stderr}");
}

#[test]
fn conflicting_or_missing_secret_sources_are_refused() {
    let mut command = authlab();
    command
        .env("AUTHLAB_JWT_SECRET", "x".repeat(40))
        .arg("--jwt-secret-file")
        .arg("/nonexistent/secret");
    assert!(failing_start(command).contains("give one"));

    let mut command = authlab();
    command.arg("--jwt-secret-file").arg("/nonexistent/secret");
    let stderr = failing_start(command);
    assert!(
        stderr.contains("cannot read the JWT secret file /nonexistent/secret"),
        "{stderr}"
    );
}

#[test]
fn bad_settings_are_refused_before_anything_starts() {
    let mut command = authlab();
    command.env("AUTHLAB_ACCESS_TTL", "soon");
    assert!(failing_start(command).contains("--access-ttl"));
    let mut command = authlab();
    command.env("AUTHLAB_DATABASE_URL", "mysql://localhost/x");
    assert!(failing_start(command).contains("unsupported database URL"));
    let mut command = authlab();
    command.env("AUTHLAB_JWT_DENYLIST", "maybe");
    assert!(failing_start(command).contains("--jwt-denylist"));
}

#[test]
fn help_lists_every_setting_with_its_environment_variable() {
    let output = authlab().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for variable in [
        "AUTHLAB_BIND",
        "AUTHLAB_DATABASE_URL",
        "AUTHLAB_REDIS_URL",
        "AUTHLAB_REDIS_PREFIX",
        "AUTHLAB_JWT_SECRET_FILE",
        "AUTHLAB_JWT_SECRET",
        "AUTHLAB_JWT_DENYLIST",
        "AUTHLAB_ACCESS_TTL",
        "AUTHLAB_SESSION_TTL",
        "AUTHLAB_ALLOW_QUERY_TOKEN",
        "AUTHLAB_COOKIE_SECURE",
        "AUTHLAB_LOGIN_MAX_FAILURES",
        "AUTHLAB_LOGIN_WINDOW",
        "AUTHLAB_LOGIN_IP_MAX_FAILURES",
        "AUTHLAB_REGISTER_IP_MAX",
        "AUTHLAB_TRUSTED_PROXIES",
        "AUTHLAB_INSTANCE_ID",
        "AUTHLAB_CORS_ORIGINS",
        "AUTHLAB_INTROSPECTION_SECRET_FILE",
        "AUTHLAB_METRICS",
    ] {
        assert!(help.contains(variable), "--help lacks {variable}:\n{help}");
    }
}

#[test]
fn first_run_mistakes_are_refused_before_anything_else_is_printed() {
    for (flag, value, expected) in [
        ("--bind", "nonsense", "expected HOST:PORT"),
        ("--redis-url", "http://x", "expected redis://"),
        ("--workers", "0", "must be at least 1"),
        ("--refresh-grace", "500ms", "must be whole seconds"),
        ("--cors-origin", "*", "an origin is written `https://host`"),
        ("--cors-origin", "https://app.example/", "no trailing slash"),
    ] {
        let mut command = authlab();
        command.args([flag, value]);
        let stderr = failing_start(command);
        assert!(stderr.contains(expected), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
        // Refused while parsing: no settings were logged and no secret was generated.
        assert!(!stderr.contains("generated a random one"), "{stderr}");
        assert!(!stderr.contains("bind ="), "{stderr}");
    }
}

#[test]
fn a_bad_value_from_the_environment_names_the_variable() {
    let mut command = authlab();
    command.env("AUTHLAB_JWT_DENYLIST", "maybe");
    let stderr = failing_start(command);
    assert!(stderr.contains("'maybe'"), "{stderr}");
    assert!(
        stderr.contains("environment variable AUTHLAB_JWT_DENYLIST"),
        "{stderr}"
    );
    // Given on the command line, the note would be wrong: it is not added.
    let mut command = authlab();
    command.args(["--jwt-denylist", "maybe"]);
    let stderr = failing_start(command);
    assert!(!stderr.contains("environment variable"), "{stderr}");
}

// --- Errors first: a start-up that fails prints the error first, with its cause and remedy --

/// The lines of a failed start's standard error.
fn failing_start_lines(command: Command) -> Vec<String> {
    failing_start(command).lines().map(str::to_owned).collect()
}

#[test]
fn a_refused_secret_is_the_first_line_printed_and_no_settings_come_before_it() {
    let file = std::env::temp_dir().join(format!("authlab-secret-{}", Uuid::new_v4()));
    std::fs::write(&file, "hoc2b/bodPIQ5auTaFnKMhG8aPWN8XxNZhDKP5N6j/oc\n").unwrap();
    let mut too_short = authlab();
    too_short.env("AUTHLAB_JWT_SECRET", "too-short");
    let mut weak = authlab();
    weak.env("AUTHLAB_JWT_SECRET", "a".repeat(32));
    let mut both = authlab();
    both.env("AUTHLAB_JWT_SECRET", "x".repeat(40))
        .arg("--jwt-secret-file")
        .arg(&file);
    for (what, command, first) in [
        (
            "too short",
            too_short,
            "error: unusable JWT secret: the JWT secret is 9 bytes long",
        ),
        (
            "weak",
            weak,
            "error: unusable JWT secret: the JWT secret is one byte repeated",
        ),
        (
            "both",
            both,
            "error: both --jwt-secret-file and AUTHLAB_JWT_SECRET are set; give one",
        ),
    ] {
        let lines = failing_start_lines(command);
        assert!(lines[0].starts_with(first), "{what}: {lines:#?}");
        // The settings summary follows a successful start only.
        assert!(
            !lines.iter().any(|line| line.contains("bind =")),
            "{what}: {lines:#?}"
        );
    }
    let _ = std::fs::remove_file(&file);
}

#[test]
fn a_missing_secret_file_is_the_first_line_and_the_next_says_how_to_make_one() {
    let mut command = authlab();
    command.arg("--jwt-secret-file").arg("/nonexistent/secret");
    let lines = failing_start_lines(command);
    assert_eq!(
        lines[0],
        "error: cannot read the JWT secret file /nonexistent/secret: No such file or directory (os error 2)"
    );
    assert_eq!(
        lines[1],
        "help: make one with `head -c 48 /dev/urandom | base64 > /nonexistent/secret`, or give another file"
    );
    assert_eq!(lines.len(), 2, "{lines:#?}");
}

#[test]
fn a_postgresql_url_on_a_closed_port_names_the_address_and_refused_but_not_the_password() {
    let port = free_port();
    let mut command = authlab();
    command.env(
        "AUTHLAB_DATABASE_URL",
        format!("postgres://postgres:hunter2-pw@127.0.0.1:{port}/test"),
    );
    let lines = failing_start_lines(command);
    assert_eq!(
        lines[0],
        format!(
            "error: cannot open the user store: cannot connect to PostgreSQL at 127.0.0.1:{port}: \
             Connection refused (os error 111)"
        ),
        "{lines:#?}"
    );
    assert!(lines[1].starts_with("help: start PostgreSQL there, or correct --database-url"));
    // Nothing before the error: not the generated-secret warning, not the settings.
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(!lines.concat().contains("hunter2-pw"), "{lines:#?}");
}

#[test]
fn a_postgresql_server_that_never_answers_is_named_after_the_connect_timeout() {
    // Listening but never accepting: the kernel completes the handshake, then nothing answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut command = authlab();
    command.env(
        "AUTHLAB_DATABASE_URL",
        format!("postgres://postgres@127.0.0.1:{port}/test"),
    );
    let lines = failing_start_lines(command);
    drop(silent);
    assert_eq!(
        lines[0],
        format!(
            "error: cannot open the user store: cannot connect to PostgreSQL at 127.0.0.1:{port}: \
             no answer within 3 s"
        ),
        "{lines:#?}"
    );
}

#[test]
fn a_postgresql_server_that_turns_the_connection_down_is_quoted() {
    let admin = postgres_admin_url();
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    let database = format!("authlab_absent_{}", Uuid::new_v4().simple());
    let mut command = authlab();
    command.env("AUTHLAB_DATABASE_URL", format!("{base}/{database}"));
    let lines = failing_start_lines(command);
    assert!(
        lines[0].starts_with("error: cannot open the user store: PostgreSQL at "),
        "{lines:#?}"
    );
    assert!(
        lines[0].ends_with(&format!(
            "turned the connection down: database \"{database}\" does not exist"
        )),
        "{lines:#?}"
    );
    assert!(lines[1].starts_with("help: check the user, password and database name"));
}

#[test]
fn a_taken_address_is_named_with_the_way_out() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let mut command = authlab();
    command.env("AUTHLAB_BIND", &address);
    let lines = failing_start_lines(command);
    drop(taken);
    assert_eq!(
        lines[0],
        format!("error: cannot listen on {address}: Address already in use (os error 98)")
    );
    assert_eq!(
        lines[1],
        format!(
            "help: another process listens on {address}: stop it, or give --bind another \
             address (127.0.0.1:0 takes any free port)"
        )
    );
    assert_eq!(lines.len(), 2, "{lines:#?}");
}

/// Everything from `Examples:` on, as `authlab <args> --help` prints it at `columns` columns.
fn notes_of_help(args: &[&str], columns: usize) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_authlab"))
        .args(args)
        .arg("--help")
        .env("COLUMNS", columns.to_string())
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    let start = help.find("Examples:").expect("the help has examples");
    help[start..].to_owned()
}

#[test]
fn the_help_examples_are_never_wrapped_at_80_columns() {
    for args in [&[][..], &["serve"], &["compare"], &["drill"]] {
        let (narrow, wide) = (notes_of_help(args, 80), notes_of_help(args, 200));
        // Wrapped at 80, a note would differ from the same note at 200 columns.
        assert_eq!(narrow, wide, "{args:?}");
        // Each example is a comment line, a command or its continuation, never the tail of a
        // comment on a line of its own.
        let examples = narrow.lines().skip(1).take_while(|line| !line.is_empty());
        for line in examples {
            assert!(
                line.starts_with("  # ")
                    || line.starts_with("  authlab ")
                    || line.starts_with("      --"),
                "{args:?}: {line:?}"
            );
        }
    }
    assert!(
        notes_of_help(&[], 80).contains("\n  # users in the SQLite file ./authlab.db"),
        "the first example keeps its comment"
    );
}

#[tokio::test]
async fn start_up_warns_when_redis_does_not_answer_and_says_what_to_do_next() {
    let redis = PrivateRedis::not_started();
    let mut command = authlab();
    command.env("AUTHLAB_REDIS_URL", redis.url());
    let served = Served::start(command);
    // The session backend works without Redis.
    let health = reqwest::get(format!("{}/healthz", served.base))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = served.stop();
    assert!(log.contains("does not answer"), "{log}");
    assert!(log.contains("/session works without it"), "{log}");
    assert!(log.contains("next: open http://127.0.0.1:"), "{log}");
    assert!(log.contains("(the demo page)"), "{log}");
    assert!(log.contains("/hello"), "{log}");
    // Durations are logged as the flags spell them.
    assert!(log.contains("refresh_ttl = 14d"), "{log}");
    assert!(log.contains("session_sweep_interval = 1m"), "{log}");
}

/// The audit lines of a log: what the binary wrote under the `authlab::audit` target.
fn audit_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains("authlab::audit"))
        .collect()
}

/// The one audit line of `event`, asserting there is exactly one.
fn audit_event<'a>(lines: &[&'a str], event: &str) -> &'a str {
    let found: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|line| line.contains(&format!("event=\"{event}\"")))
        .collect();
    assert_eq!(found.len(), 1, "one {event} event in {lines:#?}");
    found[0]
}

#[tokio::test]
async fn the_binary_writes_audit_events_and_no_credential_in_them() {
    let mut command = authlab();
    command
        .env("AUTHLAB_INSTANCE_ID", "audit-test-1")
        .env("AUTHLAB_REFRESH_GRACE", "0s")
        .env("AUTHLAB_LOGIN_MAX_FAILURES", "2")
        .env("RUST_LOG", "info");
    let served = Served::start(command);
    let base = served.base.clone();
    let client = reqwest::Client::new();
    let username = format!("user-{}", Uuid::new_v4().simple());
    let password = format!("pw-{}", Uuid::new_v4().simple());
    let new_password = format!("new-pw-{}", Uuid::new_v4().simple());
    let post = |path: &str, body: Value| client.post(format!("{base}{path}")).json(&body);
    let login = |backend: Backend, password: &str| {
        post(
            &format!("/{backend}/login"),
            json!({ "username": username, "password": password }),
        )
    };

    let created = post(
        "/users",
        json!({ "username": username, "password": password }),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let user_id = created.json::<Value>().await.unwrap()["user_id"]
        .as_i64()
        .unwrap();
    let mut credentials = Vec::new();

    // A session login and its logout.
    let response = login(Backend::Session, &password).send().await.unwrap();
    let sid = credential_from_login(Backend::Session, response).await;
    credentials.push(sid.value().to_owned());
    let logout = client
        .post(format!("{base}/session/logout"))
        .header("cookie", format!("sid={}", sid.value()))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);

    // A redis login, a refresh, and the spent refresh token replayed.
    let tokens: Value = login(Backend::Redis, &password)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    credentials.push(tokens["access_token"].as_str().unwrap().to_owned());
    credentials.push(refresh_token.clone());
    let refreshed = post("/redis/refresh", json!({ "refresh_token": refresh_token }))
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    let successor: Value = refreshed.json().await.unwrap();
    credentials.push(successor["access_token"].as_str().unwrap().to_owned());
    credentials.push(successor["refresh_token"].as_str().unwrap().to_owned());
    let replayed = post("/redis/refresh", json!({ "refresh_token": refresh_token }))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::UNAUTHORIZED);

    // A JWT login, logout everywhere on /jwt, then a password change with the JWT of a new login.
    let jwt: Value = login(Backend::Jwt, &password)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = jwt["access_token"].as_str().unwrap().to_owned();
    credentials.push(access.clone());
    let all = client
        .post(format!("{base}/jwt/logout-all"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(all.status(), StatusCode::OK);
    let jwt: Value = login(Backend::Jwt, &password)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = jwt["access_token"].as_str().unwrap().to_owned();
    credentials.push(access.clone());
    let changed = client
        .post(format!("{base}/users/me/password"))
        .bearer_auth(&access)
        .json(&json!({ "old_password": password, "new_password": new_password }))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);

    // Two failed logins (the old password), and the third attempt is throttled.
    for _ in 0..2 {
        let failed = login(Backend::Session, &password).send().await.unwrap();
        assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);
    }
    let throttled = login(Backend::Session, &new_password).send().await.unwrap();
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);

    let log = served.stop();
    assert!(log.contains("instance = audit-test-1"), "{log}");
    let lines = audit_lines(&log);
    let with_user = format!("user_id={user_id}");
    for (event, backend, user) in [
        ("logout", "session", true),
        ("refresh", "redis", true),
        ("refresh_reuse_detected", "redis", false),
        ("logout_all", "jwt", true),
        ("password_changed", "users", true),
    ] {
        let line = audit_event(&lines, event);
        assert!(line.contains(&format!("backend=\"{backend}\"")), "{line}");
        assert_eq!(line.contains(&with_user), user, "{line}");
    }
    let successes: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("event=\"login_succeeded\""))
        .collect();
    assert_eq!(successes.len(), 4, "{lines:#?}");
    assert!(
        successes.iter().all(|l| l.contains(&with_user)),
        "{lines:#?}"
    );
    let failures: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("event=\"login_failed\""))
        .collect();
    assert_eq!(failures.len(), 2, "{lines:#?}");
    // A failed login names the account only by its hash, never by a user id.
    assert!(
        failures
            .iter()
            .all(|l| l.contains("account=\"") && !l.contains("user_id=")),
        "{lines:#?}"
    );
    let throttled = audit_event(&lines, "throttled");
    assert!(throttled.contains("scope=\"name\""), "{throttled}");
    for line in &lines {
        assert!(line.contains("client_ip=127.0.0.1"), "{line}");
        assert!(line.contains("instance=\"audit-test-1\""), "{line}");
        assert!(
            !line.contains(&username),
            "the user name is never logged: {line}"
        );
    }
    for (what, secret) in [("password", &password), ("new password", &new_password)]
        .into_iter()
        .chain(credentials.iter().map(|c| ("credential", c)))
    {
        assert!(
            !log.contains(secret.as_str()),
            "the log shows a {what}:\n{log}"
        );
    }
}
