//! The route table as it is built: [`Mount`] makes each resource and writes it down as a
//! [`MountedRoute`], so that the list of what the app serves (for the OpenAPI document and its
//! test) comes from the mounting itself, never from a second list.

use actix_web::http::header;
use actix_web::{ResponseError, web};

use crate::backend_kind::BackendKind;
use crate::error::ApiError;
use crate::transport::Transport;

/// A route as the router mounted it: its method, its path template (`/redis/sessions/{id}`,
/// without any regex a parameter has) and the backend whose scope it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountedRoute {
    /// `GET`, `POST`, `DELETE`.
    pub method: &'static str,
    /// The full path, with `{name}` parameters.
    pub path: String,
    /// The backend whose scope holds the route; `None` outside the scopes.
    pub backend: Option<MountedScope>,
}

/// The backend of a scope, as a [`MountedRoute`] names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountedScope {
    /// Which backend (its name is the scope's: `redis` for `/redis/...`).
    pub kind: BackendKind,
    /// How the backend's credential travels.
    pub transport: Transport,
}

/// Makes resources under a prefix and lists each one as it is made ([`MountedRoute`]).
pub struct Mount<'a> {
    prefix: String,
    backend: Option<MountedScope>,
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
        Self {
            prefix,
            backend: None,
            list,
        }
    }

    /// The resources made from now on are in `backend`'s scope.
    pub fn in_backend(&mut self, backend: MountedScope) {
        self.backend = Some(backend);
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
            backend: self.backend,
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
