//! The backends authlab mounts, named once.
//!
//! Everything that lists the backends follows from [`BackendKind::ALL`]: the URL scopes
//! (`/session`, `/redis`, `/jwt`), the `backend` label of the metrics, the `backend` field of the
//! audit events, the backends `/livez` reports, the OpenAPI paths (through the routes the router
//! mounted) and the demo page's list. How each backend is *built* and which routes it gets is
//! [`crate::backends`]; a fourth backend is one more variant here and one more entry there.
//!
//! Requests outside the backends' scopes are filed under a [`RouteGroup`] too: the user routes
//! (`/users`, `users`) and everything else (`none`).
//!
//! This module imports nothing of the server: it is the bottom of `src/`.

/// One of the mounted backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// Random session ids in this process's memory, sent as a cookie.
    Session,
    /// Opaque random tokens stored in Redis with a TTL.
    Redis,
    /// Signed JSON Web Tokens, verified without a lookup.
    Jwt,
}

impl BackendKind {
    /// Every backend, in the order they are mounted, listed and reported.
    pub const ALL: [Self; 3] = [Self::Session, Self::Redis, Self::Jwt];

    /// Its name: the URL scope (`/{name}/login`), the metrics label, the audit field, the key in
    /// `/livez`, the prefix of its OpenAPI operation ids.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Redis => "redis",
            Self::Jwt => "jwt",
        }
    }

    /// Whether it issues refresh tokens, and so can see a spent one presented again (the
    /// `reused` outcome). The router mounts `/refresh` exactly for these (a test checks it).
    pub const fn issues_refresh_tokens(self) -> bool {
        match self {
            Self::Session => false,
            Self::Redis | Self::Jwt => true,
        }
    }

    /// Its `/me` route (`/redis/me`): what a load test asks on every request.
    pub const fn me_path(self) -> &'static str {
        match self {
            Self::Session => "/session/me",
            Self::Redis => "/redis/me",
            Self::Jwt => "/jwt/me",
        }
    }

    /// The backend whose scope is `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// Writes the name, so `format!("/{kind}/login")` is a route.
impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a request is filed under in the metrics and the audit events: a backend's scope, the user
/// routes, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteGroup {
    /// `/{backend}/...`.
    Backend(BackendKind),
    /// `/users/...` (registration, password change).
    Users,
    /// Anything else (`/`, `/hello`, `/metrics`, ...).
    Other,
}

impl RouteGroup {
    /// How many groups there are.
    pub const COUNT: usize = BackendKind::ALL.len() + 2;

    /// Every group, in label order: the backends, then `users`, then `none`.
    pub const ALL: [Self; Self::COUNT] = {
        let mut all = [Self::Other; Self::COUNT];
        let mut i = 0;
        while i < BackendKind::ALL.len() {
            all[i] = Self::Backend(BackendKind::ALL[i]);
            i += 1;
        }
        all[i] = Self::Users;
        all
    };

    /// Its place in [`RouteGroup::ALL`].
    pub fn index(self) -> usize {
        match self {
            Self::Backend(kind) => kind as usize,
            Self::Users => BackendKind::ALL.len(),
            Self::Other => BackendKind::ALL.len() + 1,
        }
    }

    /// The label value: the backend's name, `users` or `none`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Backend(kind) => kind.name(),
            Self::Users => "users",
            Self::Other => "none",
        }
    }

    /// The group a request path belongs to, by its first segment.
    pub fn of_path(path: &str) -> Self {
        match path.trim_start_matches('/').split('/').next() {
            Some("users") => Self::Users,
            Some(first) => BackendKind::from_name(first).map_or(Self::Other, Self::Backend),
            None => Self::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_sits_at_its_own_index() {
        for (i, group) in RouteGroup::ALL.into_iter().enumerate() {
            assert_eq!(group.index(), i, "{group:?}");
        }
        let labels: Vec<_> = RouteGroup::ALL.map(RouteGroup::label).to_vec();
        assert_eq!(labels, ["session", "redis", "jwt", "users", "none"]);
    }

    #[test]
    fn every_backend_has_its_scope_and_me_route() {
        for kind in BackendKind::ALL {
            assert_eq!(kind.me_path(), format!("/{kind}/me"));
            assert_eq!(BackendKind::from_name(kind.name()), Some(kind));
        }
    }

    #[test]
    fn the_group_is_read_from_the_path() {
        let label = |path| RouteGroup::of_path(path).label();
        assert_eq!(label("/session/logout"), "session");
        assert_eq!(label("/redis/logout-all"), "redis");
        assert_eq!(label("/jwt/sessions/abc"), "jwt");
        assert_eq!(label("/users/me/password"), "users");
        assert_eq!(label("/elsewhere"), "none");
        assert_eq!(label("/"), "none");
        assert_eq!(label("/sessions"), "none");
    }
}
