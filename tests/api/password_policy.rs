//! The password policy (issue #11, NIST SP 800-63B rev. 4): what `POST /users` and
//! `POST /users/me/password` refuse, with `422 invalid_field` naming the rule, and what they
//! accept; and that login never applies it.

use authlab_users::{PasswordPolicy, UserStore, Username, dangerous};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::json;

use crate::binary::{authlab, failing_start};
use crate::helpers::*;

const TOO_EASY: &str = "password: is too common or too easy to guess";
const HAS_NAME: &str = "password: must not contain the user name";

/// Four random words: what the policy is meant to let through.
const PASSPHRASE: &str = "sawdust lantern orbit pickle";

async fn spawn_app_with_min_length(min_chars: usize) -> TestApp {
    spawn_app_with(|s| {
        s.password_policy = PasswordPolicy::new(min_chars).expect("a minimum NIST allows");
    })
    .await
}

impl TestApp {
    async fn register_as(&self, username: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/users",
            &json!({ "username": username, "password": password }),
        )
        .await
    }

    /// How many users the app's database holds.
    async fn users_count(&self) -> i64 {
        let pool = sqlx::SqlitePool::connect(&self.settings.database_url)
            .await
            .expect("the app's SQLite file");
        let count = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&pool)
            .await
            .expect("a count");
        pool.close().await;
        count
    }
}

/// Asserts `422 invalid_field` with exactly this message.
async fn assert_refused(response: reqwest::Response, message: &str, what: &str) {
    let body = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field").await;
    assert_eq!(body["message"], message, "{what}");
}

#[tokio::test]
async fn the_weak_passwords_of_the_audit_are_refused_as_too_easy_to_guess_even_at_a_minimum_of_8() {
    let app = spawn_app_with_min_length(8).await;
    for weak in [
        "password1",
        "12345678",
        "        ",
        "iloveyou1234567",
        "aaaaaaaaaaaaaaaa",
        "123456789012345",
        "qwertyuiopasdfgh",
    ] {
        assert_refused(app.register_as("alexandra", weak).await, TOO_EASY, weak).await;
    }
}

#[tokio::test]
async fn at_the_default_minimum_short_passwords_are_refused_for_their_length_and_long_weak_ones_as_too_easy()
 {
    let app = spawn_app().await;
    for short in ["password1", "12345678", "        "] {
        assert_refused(
            app.register_as("alexandra", short).await,
            "password: must be at least 15 characters",
            short,
        )
        .await;
    }
    for weak in [
        "iloveyou1234567",
        "aaaaaaaaaaaaaaaa",
        "123456789012345",
        "qwertyuiopasdfgh",
        "Winter2025Winter",
    ] {
        assert_refused(app.register_as("alexandra", weak).await, TOO_EASY, weak).await;
    }
    assert_eq!(app.users_count().await, 0, "nothing was registered");
}

#[tokio::test]
async fn a_password_containing_the_user_name_is_refused_whatever_its_case() {
    let app = spawn_app_with_min_length(8).await;
    assert_refused(
        app.register_as("alexandra", "alexandrax").await,
        HAS_NAME,
        "the name plus one letter",
    )
    .await;
    let default = spawn_app().await;
    assert_refused(
        default
            .register_as("Alexandra", "lantern ALEXANDRA orbit pickle")
            .await,
        HAS_NAME,
        "the name in capitals inside a passphrase",
    )
    .await;
}

#[tokio::test]
async fn a_passphrase_of_four_random_words_is_accepted_and_logs_in() {
    let app = spawn_app().await;
    let created = app.register_as("alexandra", PASSPHRASE).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    for backend in Backend::ALL {
        let login = app.login_response(backend, "alexandra", PASSPHRASE).await;
        assert_eq!(login.status(), StatusCode::OK, "{backend}");
    }
}

#[tokio::test]
async fn the_minimum_length_is_15_by_default_and_8_when_set() {
    let default = spawn_app().await;
    assert_refused(
        default.register_as("alexandra", "k7#Qv9!mZ2@pL4").await,
        "password: must be at least 15 characters",
        "14 characters",
    )
    .await;
    let fifteen = default.register_as("alexandra", "k7#Qv9!mZ2@pL4x").await;
    assert_eq!(fifteen.status(), StatusCode::CREATED);

    let eight = spawn_app_with_min_length(8).await;
    assert_refused(
        eight.register_as("alexandra", "k7#Qv9!").await,
        "password: must be at least 8 characters",
        "7 characters",
    )
    .await;
    let created = eight.register_as("alexandra", "k7#Qv9!m").await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let login = eight
        .login_response(Backend::Session, "alexandra", "k7#Qv9!m")
        .await;
    assert_eq!(login.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_64_character_password_is_accepted_and_so_is_one_of_1024() {
    let app = spawn_app().await;
    let sixty_four = "sawdust lantern orbit pickle quiet maple ferry cobalt umbra tarn";
    assert_eq!(sixty_four.chars().count(), 64);
    let created = app.register_as("alexandra", sixty_four).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let login = app
        .login_response(Backend::Jwt, "alexandra", sixty_four)
        .await;
    assert_eq!(login.status(), StatusCode::OK);

    let longest = format!("{PASSPHRASE} {}", "x".repeat(1024 - PASSPHRASE.len() - 1));
    assert_eq!(longest.chars().count(), 1024);
    let created = app.register_as("bartholomew", &longest).await;
    assert_eq!(created.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn length_counts_characters_not_bytes_and_any_unicode_form_of_a_password_logs_in() {
    let app = spawn_app().await;
    let fourteen = "日本語のパスワードは安全です";
    assert_eq!((fourteen.chars().count(), fourteen.len()), (14, 42));
    assert_refused(
        app.register_as("alexandra", fourteen).await,
        "password: must be at least 15 characters",
        "14 characters in 42 bytes",
    )
    .await;

    // Registered with "é" as e + a combining accent, typed later as the single character é.
    let decomposed = "cafe\u{301} lantern orbit pickle";
    let composed = "caf\u{e9} lantern orbit pickle";
    let created = app.register_as("alexandra", decomposed).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    for typed in [composed, decomposed] {
        let login = app.login_response(Backend::Redis, "alexandra", typed).await;
        assert_eq!(login.status(), StatusCode::OK, "{typed:?}");
    }
}

#[tokio::test]
async fn a_weak_password_already_on_record_still_logs_in_on_every_backend() {
    let app = spawn_app().await;
    // A user from before the policy, written through the store's API for exactly that.
    let store = UserStore::connect(&app.settings.database_url)
        .await
        .expect("the app's user store");
    store
        .register(
            Username::parse("old-timer".to_owned()).expect("a valid name"),
            dangerous::unchecked_password(SecretString::from("password1")),
        )
        .await
        .expect("the old user is written");
    store.close().await;

    for backend in Backend::ALL {
        let login = app.login_response(backend, "old-timer", "password1").await;
        assert_eq!(login.status(), StatusCode::OK, "{backend}");
    }
    // The same password is refused to anyone choosing it now.
    assert_refused(
        app.register_as("newcomer", "password1").await,
        "password: must be at least 15 characters",
        "password1",
    )
    .await;
}

#[tokio::test]
async fn a_password_change_applies_the_same_rules_and_a_refused_one_changes_nothing() {
    let app = spawn_app().await;
    let (user, credential) = app.logged_in(Backend::Redis).await;
    let change = |new: String| {
        app.authed(Method::POST, "/users/me/password", &credential)
            .json(&json!({ "old_password": user.password, "new_password": new }))
            .send()
    };
    let cases = [
        ("iloveyou1234567".to_owned(), TOO_EASY),
        (
            format!("{} orbit pickle", user.username.to_uppercase()),
            HAS_NAME,
        ),
        (
            "short".to_owned(),
            "password: must be at least 15 characters",
        ),
    ];
    for (new, message) in cases {
        assert_refused(change(new.clone()).await.expect("sent"), message, &new).await;
    }
    // Nothing happened: the credential lives and the old password still logs in.
    assert_eq!(
        app.me(Backend::Redis, &credential).await.status(),
        StatusCode::OK
    );
    let old = app
        .login_response(Backend::Session, &user.username, &user.password)
        .await;
    assert_eq!(old.status(), StatusCode::OK);

    let changed = change(PASSPHRASE.to_owned()).await.expect("sent");
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    let new = app
        .login_response(Backend::Session, &user.username, PASSPHRASE)
        .await;
    assert_eq!(new.status(), StatusCode::OK);
}

#[test]
fn a_minimum_under_8_or_over_64_stops_start_up_with_a_clear_message_and_help_lists_the_flag() {
    for (value, message) in [
        (
            "7",
            "the minimum password length must be 8 to 64 characters, not 7",
        ),
        (
            "65",
            "the minimum password length must be 8 to 64 characters, not 65",
        ),
    ] {
        let mut command = authlab();
        command.env("AUTHLAB_PASSWORD_MIN_LENGTH", value);
        let stderr = failing_start(command);
        assert!(stderr.contains("--password-min-length"), "{stderr}");
        assert!(stderr.contains(message), "{stderr}");
    }
    let mut command = authlab();
    command.args(["--password-min-length", "7"]);
    let stderr = failing_start(command);
    assert!(
        stderr.contains("must be 8 to 64 characters, not 7"),
        "{stderr}"
    );
    let help = authlab().arg("--help").output().expect("--help runs");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--password-min-length") && help.contains("AUTHLAB_PASSWORD_MIN_LENGTH"),
        "{help}"
    );
}
