//! `/openapi.json` describes every mounted route, and `/docs/` serves the bundled Swagger UI.

use reqwest::{StatusCode, header};
use serde_json::Value;

use authlab::error::{ApiError, ErrorCode};

use crate::helpers::*;

async fn document(app: &TestApp) -> Value {
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    response.json().await.expect("the document is JSON")
}

#[tokio::test]
async fn every_mounted_route_is_described_in_an_openapi_3_1_document() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "version: {}",
        doc["openapi"]
    );
    // The list `routes::configure` recorded while it mounted this very app.
    let mounted = authlab::routes::mounted_routes();
    assert!(mounted.len() >= 30, "mounted: {mounted:?}");
    let mut described = 0;
    for route in mounted {
        let operation = &doc["paths"][&route.path][route.method.to_lowercase()];
        assert!(
            operation["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{} {} is mounted but not described",
            route.method,
            route.path
        );
        assert!(
            operation["responses"]
                .as_object()
                .is_some_and(|r| !r.is_empty()),
            "{} {} has no responses",
            route.method,
            route.path
        );
        described += 1;
    }
    // Nothing described that is not mounted.
    let operations: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().map_or(0, |ops| ops.len()))
        .sum();
    assert_eq!(operations, described);
}

#[tokio::test]
async fn operation_ids_are_unique_across_the_three_scopes() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let mut ids: Vec<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("path item").values())
        .map(|op| {
            op["operationId"]
                .as_str()
                .expect("every operation has an id")
        })
        .collect();
    let all = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all, "duplicate operationIds");
    for id in [
        "session_me",
        "redis_me",
        "jwt_me",
        "jwt_refresh",
        "session_rotate",
    ] {
        assert!(ids.contains(&id), "{id} missing");
    }
}

#[tokio::test]
async fn the_session_scope_has_no_refresh_revoke_or_introspect_and_the_document_says_so() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    for route in ["/session/refresh", "/session/revoke", "/session/introspect"] {
        assert!(doc["paths"][route].is_null(), "{route} is described");
        let response = app.client.post(app.url(route)).send().await.unwrap();
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let session_tag = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .find(|t| t["name"] == "session")
        .expect("a session tag");
    assert!(
        session_tag["description"]
            .as_str()
            .is_some_and(|d| d.contains("no `/session/refresh`")),
        "{session_tag}"
    );
}

#[tokio::test]
async fn both_security_schemes_and_every_error_code_are_described() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["cookie"]["type"], "apiKey");
    assert_eq!(schemes["cookie"]["in"], "cookie");
    assert_eq!(schemes["cookie"]["name"], "sid");
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(
        doc["paths"]["/session/me"]["get"]["security"][0]["cookie"],
        serde_json::json!([])
    );
    assert_eq!(
        doc["paths"]["/jwt/me"]["get"]["security"][0]["bearer"],
        serde_json::json!([])
    );
    let codes: Vec<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("the ErrorCode enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for code in ErrorCode::ALL {
        assert!(
            codes.contains(&code.as_str()),
            "{code:?} missing from ErrorCode"
        );
    }
    assert_eq!(codes.len(), ErrorCode::ALL.len());
    let me_401 = &doc["paths"]["/redis/me"]["get"]["responses"]["401"];
    assert_eq!(
        me_401["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Error"
    );
    assert!(
        me_401["description"]
            .as_str()
            .is_some_and(|d| d.contains("`token_expired`")),
        "{me_401}"
    );
    let login_body = &doc["paths"]["/jwt/login"]["post"]["requestBody"];
    assert_eq!(
        login_body["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Credentials"
    );
}

#[tokio::test]
async fn docs_serves_the_bundled_swagger_ui_with_its_own_content_security_policy() {
    let app = spawn_app().await;
    let redirect = app.get("/docs").await;
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.headers()[header::LOCATION], "/docs/");

    let page = app.get("/docs/").await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(csp, authlab::openapi::DOCS_CSP);
    assert!(csp.contains("script-src 'self'") && !csp.contains("script-src 'self' 'unsafe"));
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui-bundle.js"), "{html}");
    // No script in the page itself, nothing loaded from another origin.
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );

    // Every asset the page names is served by this binary.
    for asset in [
        "swagger-ui.css",
        "index.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "swagger-initializer.js",
        "favicon-32x32.png",
    ] {
        let response = app.get(&format!("/docs/{asset}")).await;
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        assert!(
            response.bytes().await.unwrap().len() > 100,
            "{asset} is empty"
        );
    }
    let init = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(init.contains("\"/openapi.json\""), "{init}");
    assert!(init.contains("\"validatorUrl\": \"none\""), "{init}");

    let missing = app.get("/docs/no-such-file.js").await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn every_mounted_route_and_every_error_code_appear_in_the_document() {
    let app = spawn_app().await;
    let doc = document(&app).await;

    // Every route the router mounted, at its full path, under its scope's tag and operationId.
    let mounted = authlab::routes::mounted_routes();
    assert!(
        mounted.iter().any(|r| r.path == "/openapi.json")
            && mounted.iter().any(|r| r.backend.is_some()),
        "mounted: {mounted:?}"
    );
    for route in mounted {
        let operation = &doc["paths"][&route.path][route.method.to_lowercase()];
        let id = operation["operationId"].as_str().unwrap_or_default();
        let tag = route
            .backend
            .map_or("service", |backend| backend.kind.name());
        assert_eq!(operation["tags"], serde_json::json!([tag]), "{route:?}");
        if let Some(backend) = route.backend {
            assert!(
                id.starts_with(&format!("{}_", backend.kind.name())),
                "{route:?}: {id}"
            );
        }
        // What the router and the middleware answer on every route is listed on every route.
        let responses = &operation["responses"];
        assert!(
            responses["405"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("`method_not_allowed`")),
            "{route:?}"
        );
        if route.method != "GET" {
            assert!(
                responses["403"]["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("`csrf_rejected`")),
                "{route:?}"
            );
        }
    }

    // Every code of the error table: in the ErrorCode schema with what it means, and in the
    // introduction with its status.
    let schema = &doc["components"]["schemas"]["ErrorCode"];
    let listed = schema["description"]
        .as_str()
        .expect("ErrorCode's description");
    let intro = doc["info"]["description"]
        .as_str()
        .expect("the introduction");
    for code in ErrorCode::ALL {
        let status = code.status().as_u16();
        assert!(
            listed.contains(&format!(
                "`{}` ({status}): {}",
                code.as_str(),
                code.meaning()
            )),
            "{code:?}: {listed}"
        );
        assert!(
            intro.contains(&format!("`{}` {status}", code.as_str())),
            "{code:?}: {intro}"
        );
    }

    // Every code an operation names sits under the status that code is answered with.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            for (status, response) in operation["responses"].as_object().expect("responses") {
                let description = response["description"].as_str().unwrap_or_default();
                for named in description.split('`').skip(1).step_by(2) {
                    let Some(code) = ErrorCode::ALL.iter().find(|c| c.as_str() == named) else {
                        continue;
                    };
                    assert_eq!(
                        code.status().as_u16().to_string(),
                        *status,
                        "{method} {path}: {named}"
                    );
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/Error",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }

    // The table is ApiError's own: an error answers with the code and status the document gives.
    use actix_web::ResponseError;
    for error in [
        ApiError::InvalidCredentials,
        ApiError::UsernameTaken,
        ApiError::PayloadTooLarge,
        ApiError::UnsupportedMediaType,
        ApiError::InvalidClient,
        ApiError::NotFound,
        ApiError::SessionNotFound,
        ApiError::MethodNotAllowed,
        ApiError::CsrfRejected,
        ApiError::MalformedJson("x".into()),
        ApiError::InvalidRequest("x".into()),
        ApiError::Internal("x".into()),
    ] {
        let answer = format!("`{}` {}", error.code(), error.status_code().as_u16());
        assert!(intro.contains(&answer), "{answer}: {intro}");
    }
}
