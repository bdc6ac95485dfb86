//! The route table as it is built: [`Mount`] makes each resource and writes it down as a
//! [`MountedRoute`], so that the list of what the app serves (for the OpenAPI document and its
//! test) comes from the mounting itself, never from a second list.

use actix_web::http::header;
use actix_web::{ResponseError, web};

use crate::error::ApiError;

/// A route as the router mounted it: its method and its path template (`/redis/sessions/{id}`,
/// without any regex a parameter has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedRoute {
    /// `GET`, `POST`, `DELETE`.
    pub method: &'static str,
    /// The full path, with `{name}` parameters.
    pub path: String,
}

/// Makes resources under a prefix and lists each one as it is made ([`MountedRoute`]).
pub struct Mount<'a> {
    prefix: String,
    list: &'a mut Vec<MountedRoute>,
}

impl<'a> Mount<'a> {
    /// Resources under `/{scope}` (the root for `""`).
    pub fn under(scope: &str, list: &'a mut Vec<MountedRoute>) -> Self {
        let prefix = if scope.is_empty() {
            String::new()
        } else {
            format!("/{scope}")
        };
        Self { prefix, list }
    }

    /// A resource whose other methods answer a JSON 405 (see `resource` below), listed.
    pub fn resource(&mut self, path: &str, allow: &'static str) -> actix_web::Resource {
        // `{file:.*}` is `{file}` to anybody reading the list.
        let template: String = path
            .split('/')
            .map(|segment| match segment.split_once(':') {
                Some((name, _)) if segment.starts_with('{') => format!("{name}}}"),
                _ => segment.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/");
        self.list.push(MountedRoute {
            method: allow,
            path: format!("{}{template}", self.prefix),
        });
        resource(path, allow)
    }
}

/// A resource whose other methods get a JSON 405 with an `Allow` header, rather than a bare 404.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        let mut response = ApiError::MethodNotAllowed.error_response();
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
        response
    }))
}
