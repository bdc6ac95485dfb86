//! Registration and the user store, through `POST /users`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn registering_answers_201_with_the_new_user() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/users",
            &json!({ "username": "alice", "password": PASSWORD }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["username"], "alice");
    assert!(body["user_id"].as_i64().is_some_and(|id| id > 0), "{body}");
}

#[tokio::test]
async fn a_taken_name_is_409() {
    let app = spawn_app().await;
    let user = app.register().await;
    let again = app
        .post_json(
            "/users",
            &json!({ "username": user.username, "password": "quiet maple ferry cobalt" }),
        )
        .await;
    assert_error(again, StatusCode::CONFLICT, "username_taken").await;
}

#[tokio::test]
async fn empty_or_oversize_fields_are_422() {
    let app = spawn_app().await;
    let cases = [
        json!({ "username": "", "password": PASSWORD }),
        json!({ "username": "u".repeat(65), "password": PASSWORD }),
        json!({ "username": " padded", "password": PASSWORD }),
        json!({ "username": "ok-name", "password": "" }),
        json!({ "username": "ok-name", "password": "short" }),
        json!({ "username": "ok-name", "password": "p".repeat(1025) }),
    ];
    for case in cases {
        let body = assert_error(
            app.post_json("/users", &case).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        )
        .await;
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with("username:") || message.starts_with("password:"),
            "the message names the field: {message}"
        );
    }
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    for raw in [
        "{",
        "not json",
        "[]",
        r#"{"username":"a"}"#,
        r#"{"username":1,"password":"x"}"#,
    ] {
        let response = app
            .client
            .post(app.url("/users"))
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::BAD_REQUEST, "malformed_json").await;
    }
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_415() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/users"))
        .header("content-type", "text/plain")
        .body(r#"{"username":"alice","password":"correct horse"}"#)
        .send()
        .await
        .unwrap();
    assert_error(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test]
async fn passwords_are_stored_as_argon2id_hashes_only() {
    let app = spawn_app().await;
    let user = app.register().await;
    let pool = sqlx::SqlitePool::connect(&app.settings.database_url)
        .await
        .unwrap();
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE username = ?")
        .bind(&user.username)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    // OWASP's argon2id parameters: 19 MiB, 2 passes, 1 lane.
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    assert!(!stored.contains(&user.password));
}

#[tokio::test]
async fn a_user_registered_once_logs_in_on_every_backend() {
    let app = spawn_app().await;
    let user = app.register().await;
    for backend in Backend::ALL {
        let credential = app.login(backend, &user).await;
        let body: Value = app.me(backend, &credential).await.json().await.unwrap();
        assert_eq!(body["user_id"], user.user_id);
        assert_eq!(body["backend"], backend.name());
    }
}
