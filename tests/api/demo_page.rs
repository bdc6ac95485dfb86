//! The demo page at `/`, in a real headless Chromium (Debian's `chromium` and `chromium-driver`).
//!
//! The browser is driven over the W3C WebDriver protocol by chromedriver. The client is the few
//! WebDriver commands below, written over reqwest (already a dev-dependency) rather than a
//! WebDriver crate: it adds no dependency to an offline build, and the one command a
//! console-error check needs, chromedriver's browser log (`goog:loggingPrefs`, `/se/log`), is an
//! extension that the WebDriver crates do not wrap anyway.
//!
//! chromedriver runs on a free port; it starts Chromium, and both are stopped by the guard
//! (the session deleted, which closes Chromium, then chromedriver killed by its pid), even when
//! the test fails.
//!
//! The screenshot goes to `target/tmp/demo.png`, and to `docs/demo.png` (the picture in
//! docs/demo.md) only with `AUTHLAB_DEMO_SCREENSHOT=1`, so CI never dirties the tree. The
//! committed picture is checked against the page instead: where the page now shows which
//! instance answered (the request log's instance column), the picture must show text too, so a
//! page that changes there fails the test until the picture is renewed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use reqwest::header;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Backend, PASSWORD, spawn_app, spawn_app_with, token_backends};

/// The Content-Security-Policy the page and its assets are served with.
const DEMO_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'self'";

/// The flags Chromium needs on these machines (the background-networking ones keep it from
/// calling home through a closed network); `--user-data-dir` is added per run.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1440,1900",
];

/// How long the page may take to show what a click asked for.
const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_demo_page_and_its_assets_are_served_with_a_strict_content_security_policy() {
    let app = spawn_app().await;
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/static/demo.js", "text/javascript; charset=utf-8"),
        ("/static/demo.css", "text/css; charset=utf-8"),
        ("/static/favicon.svg", "image/svg+xml"),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], content_type, "{path}");
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], DEMO_CSP, "{path}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{path}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
    }
    let html = app.get("/").await.text().await.expect("the page");
    assert!(html.contains(r#"<script src="/static/demo.js" defer></script>"#));
    // The page names the cookie's attributes as this server sets them.
    assert!(
        html.contains(r#"data-set-cookie="sid=(the session id); HttpOnly; SameSite=Lax; Path=/; Max-Age=28800""#),
        "{html}"
    );
}

#[tokio::test]
async fn the_demo_page_shows_the_secure_cookie_flag_when_the_server_sets_it() {
    let app = spawn_app_with(|s| s.cookie_secure = true).await;
    let html = app.get("/").await.text().await.expect("the page");
    assert!(
        html.contains(
            r#"data-set-cookie="__Host-sid=(the session id); HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=28800""#
        ),
        "{html}"
    );
}

#[tokio::test]
async fn the_demo_page_is_only_for_get() {
    let app = spawn_app().await;
    let response = app.post_json("/", &json!({})).await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "GET");
}

#[tokio::test]
async fn a_browser_walks_every_backend_through_the_demo_page_without_a_console_error() {
    let app = spawn_app_with(|s| s.instance_id = Some("demo-1".to_owned())).await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/")).await;
    let username = format!("demo-{}", &Uuid::new_v4().simple().to_string()[..12]);

    // A common password: the page shows the server's own 422 message.
    browser.type_into("#username", &username).await;
    browser.type_into("#password", "iloveyou1234567").await;
    browser.click("#register").await;
    browser
        .wait_text(
            "#register-result",
            "422 invalid_field: password: is too common or too easy to guess",
        )
        .await;
    browser.clear("#password").await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("#register").await;
    let registered = browser
        .wait_text(
            "#register-result",
            &format!("201 registered \"{username}\" as user "),
        )
        .await;
    let user_id: String = registered
        .split("as user ")
        .nth(1)
        .map(|rest| rest.chars().take_while(char::is_ascii_digit).collect())
        .unwrap_or_default();
    assert!(!user_id.is_empty(), "{registered}");
    // The page names the instance that answered (`X-Authlab-Instance`).
    browser
        .wait_text("#instance", "Last answer from instance demo-1")
        .await;

    for backend in Backend::ALL {
        browser.click(&format!("#{backend}-login")).await;
        browser
            .wait_text(&format!("#{backend}-whoami"), "logged in (200)")
            .await;
        browser.click(&format!("#{backend}-me")).await;
        let who = format!("200: user {user_id} \"{username}\" on {backend}");
        browser.wait_text(&format!("#{backend}-whoami"), &who).await;
        if backend != Backend::Session {
            browser.click(&format!("#{backend}-refresh")).await;
            browser
                .wait_text(&format!("#{backend}-result"), "refresh 200")
                .await;
            // The refreshed access token is the one /me now gets.
            browser.click(&format!("#{backend}-me")).await;
            browser.wait_text(&format!("#{backend}-whoami"), &who).await;
        }
        browser.click(&format!("#{backend}-sessions")).await;
        browser
            .wait_text(&format!("#{backend}-list"), "(this one)")
            .await;
    }

    // What travels: the cookie's attributes (not its value), the bearer header, the JWT's claims.
    let cookie = browser.text("#session-travel").await;
    assert!(
        cookie.contains(
            "Set-Cookie: sid=(the session id); HttpOnly; SameSite=Lax; Path=/; Max-Age=28800"
        ),
        "{cookie}"
    );
    assert!(cookie.contains("cannot show the id"), "{cookie}");
    for backend in token_backends() {
        let travel = browser.text(&format!("#{backend}-travel")).await;
        assert!(travel.contains("Authorization: Bearer "), "{travel}");
    }
    let claims = browser.text("#jwt-claims").await;
    for claim in [
        r#""iss": "authlab""#.to_owned(),
        format!(r#""sub": "{user_id}""#),
        format!(r#""username": "{username}""#),
        r#""exp": "#.to_owned(),
        r#""fam": "#.to_owned(),
        r#""alg":"HS256""#.to_owned(),
        "// no kid: HS256 uses one secret, which only the server holds".to_owned(),
    ] {
        assert!(claims.contains(&claim), "{claim} not in {claims}");
    }
    // The key that signs is named in the header; where its public half is published is linked.
    assert_eq!(browser.text("#jwt-jwks").await, "/.well-known/jwks.json");
    let expiry = browser.text("#jwt-expiry").await;
    // 15 minutes and 14 days from the last refresh, counting down each second.
    assert!(
        ["access token: 15:00 left", "access token: 14:5"]
            .iter()
            .any(|start| expiry.starts_with(start)),
        "{expiry}"
    );
    assert!(
        [
            "refresh token: 14d 00:00:00 left",
            "refresh token: 13d 23:5"
        ]
        .iter()
        .any(|part| expiry.contains(part)),
        "{expiry}"
    );

    // Two tabs refresh at once, within the grace window: the same successor for both.
    browser.click("#jwt-race").await;
    browser
        .wait_text(
            "#jwt-result",
            "both got the same successor refresh token (and an access token each): the grace \
             window at work",
        )
        .await;
    browser.click("#jwt-me").await;
    browser
        .wait_text("#jwt-whoami", &format!("200: user {user_id}"))
        .await;

    // Every backend logged in, the JWT decoded, the race shown: the picture for the docs.
    browser.screenshot().await;
    // The committed picture must show what the page shows now where a stale one went wrong
    // (an older page announced no instance): text in the instance column of the request log.
    let cell = browser.rect("#log-body tr:first-child td:last-child").await;
    let committed = Png::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/demo.png"));
    assert!(
        committed.has_ink(cell),
        "docs/demo.png shows no instance in the request log's instance column at {cell:?}, where \
         the page now shows one: renew it with `AUTHLAB_DEMO_SCREENSHOT=1 cargo test -p \
         authlab-cli --test api demo_page` and look at it"
    );

    // Logout: the session's cookie is gone, the redis token dead.
    browser.click("#session-logout").await;
    browser
        .wait_text("#session-whoami", "logged out (204)")
        .await;
    browser.click("#session-me").await;
    browser
        .wait_text("#session-whoami", "401 missing_credentials")
        .await;
    browser.click("#redis-logout").await;
    browser.wait_text("#redis-whoami", "logged out (204)").await;

    // Revoke and probe: with the denylist on (the default), the old JWT is refused at once.
    browser.click("#jwt-probe").await;
    let probed = browser.wait_text("#jwt-result", "Revoked at once.").await;
    assert!(
        probed.contains("probes after logout were accepted"),
        "{probed}"
    );
    assert!(probed.starts_with("0 of "), "{probed}");
    assert!(probed.contains("401 token_revoked"), "{probed}");

    // The log shows every request with its status code.
    let log = browser.text("#log-body").await;
    for (request, status) in [
        ("POST /users", "422"),
        ("POST /users", "201"),
        ("POST /session/login", "200"),
        ("GET /session/me", "200"),
        ("GET /session/sessions", "200"),
        ("POST /session/logout", "204"),
        ("GET /session/me", "401"),
        ("POST /redis/login", "200"),
        ("GET /redis/me", "200"),
        ("POST /redis/refresh", "200"),
        ("POST /redis/logout", "204"),
        ("POST /jwt/login", "200"),
        ("POST /jwt/refresh (tab A)", "200"),
        ("POST /jwt/refresh (tab B)", "200"),
        ("POST /jwt/logout (revoke)", "204"),
        ("GET /jwt/me (probe 1)", "401"),
    ] {
        assert!(
            log.lines()
                .any(|line| line.contains(&format!("{request} {status} "))),
            "no `{request} {status}` in the log:\n{log}"
        );
    }

    // The same probe against a server without the denylist: the logged-out JWT keeps working.
    let stateless = spawn_app_with(|s| s.jwt_denylist = authlab::config::DenylistMode::Off).await;
    browser.goto(&stateless.url("/")).await;
    browser.type_into("#username", &username).await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("#register").await;
    browser
        .wait_text("#register-result", "201 registered")
        .await;
    browser.click("#jwt-login").await;
    browser.wait_text("#jwt-whoami", "logged in (200)").await;
    browser.click("#jwt-probe").await;
    let probed = browser
        .wait_text("#jwt-result", "a stateless JWT stays valid until exp")
        .await;
    let counts: Vec<&str> = probed
        .split(" probes")
        .next()
        .unwrap_or_default()
        .split(" of ")
        .collect();
    assert!(
        counts.len() == 2 && counts[0] == counts[1] && counts[0] != "0",
        "every probe accepted: {probed}"
    );

    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// Swagger UI at `/docs/` (see `tests/api/openapi.rs`) in the same browser: it renders every
/// operation of the document under its own Content-Security-Policy, from files this server
/// serves, with no console error and no CSP violation.
#[tokio::test]
async fn a_browser_renders_every_operation_in_the_swagger_ui_without_a_console_error() {
    let app = spawn_app().await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/docs/")).await;
    let operations = authlab::routes::mounted_routes().len();
    let deadline = Instant::now() + PATIENCE;
    let mut rendered = 0;
    while rendered < operations && Instant::now() < deadline {
        let found = browser
            .command(
                reqwest::Method::POST,
                &format!("{}/elements", browser.session),
                Some(json!({ "using": "css selector", "value": ".opblock" })),
            )
            .await;
        rendered = found.as_array().map_or(0, Vec::len);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let errors = browser.console_errors().await;
    assert_eq!(
        rendered, operations,
        "operations shown; console errors: {errors:#?}"
    );
    assert!(
        browser
            .text(".information-container .title")
            .await
            .contains("authlab")
    );
    assert!(
        browser
            .text("#operations-jwt-jwt_me")
            .await
            .contains("/jwt/me")
    );
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// A headless Chromium under chromedriver, with one WebDriver session.
struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT`, chromedriver's address.
    driver: String,
    driver_port: u16,
    /// `/session/ID`.
    session: String,
    process: Child,
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a Chromium session with a fresh profile.
    async fn start() -> Self {
        let chromedriver = find_on_path("chromedriver");
        let chromium = find_on_path("chromium");
        let (Some(chromedriver), Some(chromium)) = (chromedriver, chromium) else {
            panic!(
                "the demo page test needs Chromium and chromedriver (Debian: \
                 `apt-get install chromium chromium-driver`; scripts/test installs them)"
            );
        };
        let port = free_port();
        let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let profile = scratch.join(format!("chromium-profile-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&profile).expect("a fresh Chromium profile folder");
        let process = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                scratch.join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut browser = Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a reqwest client"),
            driver: format!("http://127.0.0.1:{port}"),
            driver_port: port,
            session: String::new(),
            process,
            profile,
        };
        browser.wait_for_driver().await;
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", browser.profile.display()));
        let created = browser
            .command(
                reqwest::Method::POST,
                "/session",
                Some(json!({ "capabilities": { "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": chromium, "args": args },
                    "goog:loggingPrefs": { "browser": "ALL" },
                }}})),
            )
            .await;
        let id = created["sessionId"]
            .as_str()
            .expect("a WebDriver session id");
        browser.session = format!("/session/{id}");
        browser
    }

    async fn wait_for_driver(&self) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(response) = self
                .http
                .get(format!("{}/status", self.driver))
                .send()
                .await
                && let Ok(status) = response.json::<Value>().await
                && status["value"]["ready"] == true
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "chromedriver did not answer on {} within {PATIENCE:?}",
            self.driver
        );
    }

    /// One WebDriver command; its `value`, or a panic naming the command and the driver's error.
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.driver);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| {
            panic!("WebDriver {method} {path}: {e}");
        });
        let status = response.status();
        let mut answer: Value = response.json().await.expect("WebDriver answers JSON");
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: {status} {answer}"
        );
        answer["value"].take()
    }

    async fn goto(&self, url: &str) {
        self.command(
            reqwest::Method::POST,
            &format!("{}/url", self.session),
            Some(json!({ "url": url })),
        )
        .await;
    }

    /// The WebDriver id of the element `css` selects.
    async fn element(&self, css: &str) -> String {
        let found = self
            .command(
                reqwest::Method::POST,
                &format!("{}/element", self.session),
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        found["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_owned()
    }

    async fn on_element(&self, css: &str, action: &str, body: Value) {
        let id = self.element(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("{}/element/{id}/{action}", self.session),
            Some(body),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        self.on_element(css, "click", json!({})).await;
    }

    async fn clear(&self, css: &str) {
        self.on_element(css, "clear", json!({})).await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, "value", json!({ "text": text })).await;
    }

    /// The element's rendered text.
    async fn text(&self, css: &str) -> String {
        let id = self.element(css).await;
        let text = self
            .command(
                reqwest::Method::GET,
                &format!("{}/element/{id}/text", self.session),
                None,
            )
            .await;
        text.as_str().unwrap_or_default().to_owned()
    }

    /// Where the element is drawn, in CSS pixels of the page (the screenshot's pixels too: the
    /// headless browser draws one pixel per CSS pixel).
    async fn rect(&self, css: &str) -> Rect {
        let id = self.element(css).await;
        let rect = self
            .command(
                reqwest::Method::GET,
                &format!("{}/element/{id}/rect", self.session),
                None,
            )
            .await;
        // Truncating to whole pixels is the point: the rectangle indexes an image.
        let pixels = |key: &str| {
            rect[key]
                .as_f64()
                .unwrap_or_else(|| panic!("{key} in {rect}")) as usize
        };
        Rect {
            x: pixels("x"),
            y: pixels("y"),
            width: pixels("width"),
            height: pixels("height"),
        }
    }

    /// Waits until the element's text contains `needle`, and returns that text.
    async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = self.text(css).await;
            if text.contains(needle) {
                return text;
            }
            if Instant::now() > deadline {
                let errors = self.console_errors().await;
                panic!(
                    "{css} never showed {needle:?}; it shows {text:?}\nconsole errors: {errors:#?}\nlog:\n{}",
                    self.text("#log-body").await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The browser console's errors since the last call: everything at level SEVERE, except the
    /// line Chromium prints for each HTTP 4xx answer to `fetch` (the page shows those itself:
    /// refusals are what it demonstrates).
    async fn console_errors(&self) -> Vec<String> {
        let entries = self
            .command(
                reqwest::Method::POST,
                &format!("{}/se/log", self.session),
                Some(json!({ "type": "browser" })),
            )
            .await;
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| {
                let message = entry["message"].as_str().unwrap_or_default();
                let refused_request = entry["source"] == "network"
                    && message.contains("the server responded with a status of 4");
                (entry["level"] == "SEVERE" && !refused_request)
                    || message.contains("Content Security Policy")
            })
            .map(Value::to_string)
            .collect()
    }

    /// Saves the page as it is now: to target/tmp/demo.png, and to docs/demo.png with
    /// `AUTHLAB_DEMO_SCREENSHOT=1`.
    async fn screenshot(&self) {
        let png = self
            .command(
                reqwest::Method::GET,
                &format!("{}/screenshot", self.session),
                None,
            )
            .await;
        let png = STANDARD
            .decode(png.as_str().expect("a base64 screenshot"))
            .expect("base64");
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo.png");
        std::fs::write(&scratch, &png).expect("the screenshot is written");
        if std::env::var("AUTHLAB_DEMO_SCREENSHOT").as_deref() == Ok("1") {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/demo.png");
            std::fs::write(&docs, &png).expect("docs/demo.png is written");
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium (chromedriver waits for it). Drop cannot await, so
        // this is one plain HTTP/1.1 request.
        if !self.session.is_empty()
            && let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.driver_port))
        {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let request = format!(
                "DELETE {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session, self.driver_port
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer);
            }
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// `name`'s full path if it is an executable on `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// A rectangle of the page, in pixels.
#[derive(Debug, Clone, Copy)]
struct Rect {
    x: usize,
    y: usize,
    width: usize,
    height: usize,
}

/// A PNG as the browser writes its screenshots (8-bit RGB or RGBA, not interlaced), decoded to
/// one luminance byte per pixel: enough to tell text from background.
struct Png {
    width: usize,
    height: usize,
    luminance: Vec<u8>,
}

impl Png {
    fn read(path: &Path) -> Self {
        let bytes =
            std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        Self::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The chunks (length, type, data, CRC) after the signature: the header, then the image
    /// data, zlib-compressed across every IDAT chunk, one filter byte before each row.
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut rest = bytes
            .strip_prefix(b"\x89PNG\r\n\x1a\n")
            .ok_or("not a PNG")?;
        let (mut width, mut height, mut channels) = (0, 0, 0);
        let mut compressed = Vec::new();
        while rest.len() >= 12 {
            let length = u32::from_be_bytes(rest[..4].try_into().map_err(|_| "short")?) as usize;
            let kind = &rest[4..8];
            let data = rest.get(8..8 + length).ok_or("a chunk runs past the end")?;
            match kind {
                b"IHDR" => {
                    width = u32::from_be_bytes(data[..4].try_into().map_err(|_| "short")?) as usize;
                    height =
                        u32::from_be_bytes(data[4..8].try_into().map_err(|_| "short")?) as usize;
                    channels = match (data[8], data[9], data[12]) {
                        (8, 2, 0) => 3,
                        (8, 6, 0) => 4,
                        other => return Err(format!("unsupported PNG format {other:?}")),
                    };
                }
                b"IDAT" => compressed.extend_from_slice(data),
                b"IEND" => break,
                _ => {}
            }
            rest = &rest[12 + length..];
        }
        let mut raw = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::ZlibDecoder::new(&compressed[..]),
            &mut raw,
        )
        .map_err(|e| format!("image data: {e}"))?;
        let stride = width * channels;
        if raw.len() != height * (stride + 1) {
            return Err(format!(
                "{} bytes of image data for {width}x{height}",
                raw.len()
            ));
        }
        // Undo each row's filter (PNG spec, section 9), against the row above.
        let mut pixels = vec![0u8; height * stride];
        for row in 0..height {
            let filter = raw[row * (stride + 1)];
            let line = &raw[row * (stride + 1) + 1..(row + 1) * (stride + 1)];
            for i in 0..stride {
                let left = if i >= channels {
                    pixels[row * stride + i - channels]
                } else {
                    0
                };
                let up = if row > 0 {
                    pixels[(row - 1) * stride + i]
                } else {
                    0
                };
                let up_left = if row > 0 && i >= channels {
                    pixels[(row - 1) * stride + i - channels]
                } else {
                    0
                };
                let predicted = match filter {
                    0 => 0,
                    1 => left,
                    2 => up,
                    3 => ((u16::from(left) + u16::from(up)) / 2) as u8,
                    4 => paeth(left, up, up_left),
                    other => return Err(format!("unknown row filter {other}")),
                };
                pixels[row * stride + i] = line[i].wrapping_add(predicted);
            }
        }
        let luminance = pixels
            .chunks(channels)
            .map(|p| ((u16::from(p[0]) * 3 + u16::from(p[1]) * 6 + u16::from(p[2])) / 10) as u8)
            .collect();
        Ok(Self {
            width,
            height,
            luminance,
        })
    }

    /// Whether anything is drawn in the rectangle: a pixel much darker than the lightest one
    /// there (text on a light background).
    fn has_ink(&self, rect: Rect) -> bool {
        let rows = rect.y..(rect.y + rect.height).min(self.height);
        let columns = rect.x..(rect.x + rect.width).min(self.width);
        let values: Vec<u8> = rows
            .flat_map(|y| columns.clone().map(move |x| (x, y)))
            .map(|(x, y)| self.luminance[y * self.width + x])
            .collect();
        let lightest = values.iter().copied().max().unwrap_or(0);
        values
            .iter()
            .any(|&v| u16::from(v) + 96 < u16::from(lightest))
    }
}

/// The Paeth predictor: whichever of left, up and up-left is closest to left + up - up-left.
fn paeth(left: u8, up: u8, up_left: u8) -> u8 {
    let estimate = i16::from(left) + i16::from(up) - i16::from(up_left);
    let distance = |v: u8| (estimate - i16::from(v)).abs();
    if distance(left) <= distance(up) && distance(left) <= distance(up_left) {
        left
    } else if distance(up) <= distance(up_left) {
        up
    } else {
        up_left
    }
}
