//! The demo page at `/`: the three backends side by side in a browser, served by authlab itself.
//!
//! Everything the page needs is compiled into the binary ([`include_str!`]): one HTML file, one
//! script and one style sheet, plain HTML and vanilla JavaScript with no build step, nothing
//! fetched from a network. The page talks to the same API as every other client, from the same
//! origin, so the CSRF defence lets its unsafe requests pass.
//!
//! Its answers carry their own strict Content-Security-Policy ([`DEMO_CSP`]): scripts, styles,
//! images and `fetch` from this origin only, no inline script or style (the markup has none),
//! no framing, no `<base>`, forms only to this origin. An injected `<script>` would not run.

use actix_web::HttpResponse;
use actix_web::http::header;
use actix_web::web;

use super::mounted::Shared;

/// The page's Content-Security-Policy: everything from this origin only, nothing inline.
pub const DEMO_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
    form-action 'self'";

/// The page, with `{{SESSION_SET_COOKIE}}` to fill in (see [`page`]).
const INDEX_HTML: &str = include_str!("demo/index.html");
/// The page's script.
const DEMO_JS: &str = include_str!("demo/demo.js");
/// The page's style sheet.
const DEMO_CSS: &str = include_str!("demo/demo.css");
/// The page's icon (so the browser's automatic `/favicon.ico` request is never made).
const FAVICON_SVG: &str = include_str!("demo/favicon.svg");

/// Mounts `/` and its three assets.
pub(super) fn configure(cfg: &mut web::ServiceConfig, at: &mut super::mount::Mount<'_>) {
    cfg.service(at.resource("/", "GET").route(web::get().to(page)))
        .service(
            at.resource("/static/demo.js", "GET")
                .route(web::get().to(script)),
        )
        .service(
            at.resource("/static/demo.css", "GET")
                .route(web::get().to(style)),
        )
        .service(
            at.resource("/static/favicon.svg", "GET")
                .route(web::get().to(icon)),
        );
}

/// `GET /`: the demo page. The session cookie's `Set-Cookie` is written in from the running
/// server's own settings (name, `Max-Age`, `Secure`), since the page cannot read that cookie: it
/// is `HttpOnly`, which is the point.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "demo",
    summary = "The demo page",
    description = "The three backends side by side in a browser (HTML, compiled into the binary, \
                   with its own strict Content-Security-Policy).",
    responses((status = 200, description = "The page"))
)]
pub async fn page(shared: web::Data<Shared>) -> HttpResponse {
    let html = INDEX_HTML.replace(
        "{{SESSION_SET_COOKIE}}",
        &escape_html(&session_set_cookie(&shared)),
    );
    asset("text/html; charset=utf-8", html)
}

/// `GET /static/demo.js`.
#[utoipa::path(
    get,
    path = "/static/demo.js",
    operation_id = "demo_script",
    summary = "A file of the demo page",
    description = "Compiled into the binary.",
    responses((status = 200, description = "The file"))
)]
pub async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", DEMO_JS)
}

/// `GET /static/demo.css`.
#[utoipa::path(
    get,
    path = "/static/demo.css",
    operation_id = "demo_style",
    summary = "A file of the demo page",
    description = "Compiled into the binary.",
    responses((status = 200, description = "The file"))
)]
pub async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", DEMO_CSS)
}

/// `GET /static/favicon.svg`.
#[utoipa::path(
    get,
    path = "/static/favicon.svg",
    operation_id = "demo_icon",
    summary = "A file of the demo page",
    description = "Compiled into the binary.",
    responses((status = 200, description = "The file"))
)]
pub async fn icon() -> HttpResponse {
    asset("image/svg+xml", FAVICON_SVG)
}

/// One of the page's files, under the page's policy. `no-store`, as every answer of this server:
/// a new build's page never runs an old script.
fn asset(content_type: &'static str, body: impl Into<String>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CONTENT_SECURITY_POLICY, DEMO_CSP))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body.into())
}

/// The `Set-Cookie` a session login sends, as this server is configured (the name, `sid` or
/// `__Host-sid`, then `HttpOnly; SameSite=Lax; Path=/; Max-Age=...`, and `Secure` when it is on),
/// with a placeholder where the id goes.
fn session_set_cookie(shared: &Shared) -> String {
    let cookie = shared.session_transport.session_cookie("x");
    let rendered = cookie.to_string();
    let attributes = rendered.split_once("; ").map_or("", |(_, rest)| rest);
    format!("{}=(the session id); {attributes}", cookie.name())
}

/// Escapes text for an HTML text node or a quoted attribute.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend_kind::BackendKind;

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let lower = INDEX_HTML.to_ascii_lowercase();
        for script in lower.split("<script").skip(1) {
            let tag_end = script.find('>').unwrap_or(script.len());
            assert!(
                script[..tag_end].contains("src="),
                "inline <script>: {script}"
            );
            assert!(
                script[tag_end..].starts_with("></script>"),
                "inline <script> body"
            );
        }
        assert!(!lower.contains("<style"), "inline <style>");
        assert!(!lower.contains(" style="), "style attribute");
        // An inline event handler is an attribute ` on<event>=`.
        for (at, _) in lower.match_indices(" on") {
            let name: String = lower[at + 3..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase())
                .collect();
            let after = &lower[at + 3 + name.len()..];
            assert!(
                name.is_empty() || !after.starts_with('='),
                "inline event handler on{name}="
            );
        }
        assert!(!lower.contains("http://") && !lower.contains("https://"));
    }

    #[test]
    fn the_page_has_one_card_per_backend_in_order() {
        let cards: Vec<&str> = INDEX_HTML
            .split("data-backend=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        let backends: Vec<&str> = BackendKind::ALL.map(BackendKind::name).to_vec();
        assert_eq!(cards, backends);
        // The script takes its list from the cards, not from a list of its own.
        assert!(DEMO_JS.contains("querySelectorAll('section.card[data-backend]')"));
    }

    #[test]
    fn html_special_characters_are_escaped() {
        assert_eq!(
            escape_html(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
