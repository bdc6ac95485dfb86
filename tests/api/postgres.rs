//! The same service against PostgreSQL: a fresh database per test, dropped afterwards.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;
use uuid::Uuid;

use crate::helpers::*;

/// A database of its own on the test PostgreSQL server, so runs never see each other's users.
struct FreshDatabase {
    name: String,
    admin_url: String,
}

impl FreshDatabase {
    async fn create() -> Self {
        let admin_url = postgres_admin_url();
        let name = format!("authlab_test_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .expect("PostgreSQL is reachable (see README: the tests need it)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        Self { name, admin_url }
    }

    fn url(&self) -> String {
        let base = self
            .admin_url
            .rsplit_once('/')
            .map_or(self.admin_url.as_str(), |(b, _)| b);
        format!("{base}/{}", self.name)
    }

    async fn drop_now(self) {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await.unwrap();
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .unwrap();
        admin.close().await.unwrap();
    }
}

#[tokio::test]
async fn the_whole_flow_works_on_postgresql() {
    let database = FreshDatabase::create().await;
    let url = database.url();
    let app = spawn_app_with(|s| s.database_url = url).await;

    let user = app.register().await;
    let again = app
        .post_json(
            "/users",
            &json!({ "username": user.username, "password": PASSWORD }),
        )
        .await;
    assert_error(again, StatusCode::CONFLICT, "username_taken").await;
    let wrong = app
        .login_response(Backend::Redis, &user.username, "wrong password")
        .await;
    assert_error(wrong, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    for backend in Backend::ALL {
        let credential = app.login(backend, &user).await;
        let body: Value = app.me(backend, &credential).await.json().await.unwrap();
        assert_eq!(body["user_id"], user.user_id);
        assert_eq!(
            app.logout(backend, &credential).await.status(),
            StatusCode::NO_CONTENT
        );
    }

    let mut conn = sqlx::PgConnection::connect(&database.url()).await.unwrap();
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE username = $1")
        .bind(&user.username)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");

    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["checks"]["database"], "ok");
    drop(app);
    database.drop_now().await;
}
