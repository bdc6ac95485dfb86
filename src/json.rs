//! JSON response bodies, ended by a newline.
//!
//! `curl` prints a body as it is: without a final newline, the next prompt (or the next
//! `curl`'s output) lands on the same line. Every JSON answer of authlab goes through
//! [`JsonLine::json_line`], which serializes exactly as actix's `.json()` does and adds `\n`.

use actix_web::http::header::ContentType;
use actix_web::{HttpResponse, HttpResponseBuilder};
use serde::Serialize;

/// `.json_line(value)`: the body is `value` as JSON, then a newline.
pub trait JsonLine {
    /// Finishes the response with `value` as its JSON body and a trailing newline.
    fn json_line(&mut self, value: impl Serialize) -> HttpResponse;
}

impl JsonLine for HttpResponseBuilder {
    fn json_line(&mut self, value: impl Serialize) -> HttpResponse {
        match serde_json::to_vec(&value) {
            Ok(mut body) => {
                body.push(b'\n');
                self.insert_header(ContentType::json()).body(body)
            }
            // Our own types always serialize; if one ever did not, the client gets a bare 500.
            Err(err) => {
                tracing::error!(error = %err, "a response body did not serialize");
                HttpResponse::InternalServerError().finish()
            }
        }
    }
}
