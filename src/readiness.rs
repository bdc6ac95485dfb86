//! What `/readyz` and `/livez` report: each dependency's state ([`Readiness`]) and what each
//! backend can do given those ([`BackendStates`]). The probes themselves are in
//! `routes::health`; `/readyz`'s 503 carries a [`Readiness`] through the one error mapping.

use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::backend_kind::BackendKind;

/// What `/readyz` found: each dependency, `ok` or `unavailable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = Checks)]
pub struct Readiness {
    /// Redis (the redis backend, refresh tokens, the JWT denylist).
    pub redis: DependencyState,
    /// The user store.
    pub database: DependencyState,
    /// A verifier's keys (`--role verifier` only): `ok` once the issuer's JWKS has been fetched
    /// and while it is not older than `--jwks-max-stale`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks: Option<DependencyState>,
}

/// One dependency's answer to a readiness probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DependencyState {
    /// It answered in time.
    Ok,
    /// It did not answer, or not in time.
    Unavailable,
}

impl Readiness {
    /// The names of the dependencies that are down, in a fixed order.
    pub fn failing(&self) -> Vec<&'static str> {
        [("redis", self.redis), ("database", self.database)]
            .into_iter()
            .chain(self.jwks.map(|state| ("jwks", state)))
            .filter(|(_, state)| *state != DependencyState::Ok)
            .map(|(name, _)| name)
            .collect()
    }
}

/// What each backend can do, as `/livez` reports it: `ok`, `degraded` (it verifies credentials
/// it issued but cannot issue new ones: the user store is down) or `unavailable`. Serialised as
/// an object keyed by the backends' names, in [`BackendKind::ALL`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStates(Vec<(BackendKind, BackendState)>);

/// One backend's state on `/livez`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// Everything works.
    Ok,
    /// Credentials already issued work; logins do not (the user store is down).
    Degraded,
    /// Nothing works (Redis is down and this backend needs it on every request).
    Unavailable,
}

impl BackendStates {
    /// What the backends can do given what the dependency checks found. `needs_redis`: the
    /// backends that cannot serve without Redis with the settings in force (the redis backend
    /// always; the JWT backend with its denylist or stored refresh tokens; sessions never).
    pub fn from_checks(checks: &Readiness, needs_redis: &[BackendKind]) -> Self {
        let logins = checks.database == DependencyState::Ok;
        let redis = checks.redis == DependencyState::Ok;
        let state = |kind: BackendKind| match (needs_redis.contains(&kind) && !redis, logins) {
            (true, _) => BackendState::Unavailable,
            (false, false) => BackendState::Degraded,
            (false, true) => BackendState::Ok,
        };
        Self(BackendKind::ALL.map(|kind| (kind, state(kind))).to_vec())
    }

    /// Whether every backend is fully `ok`.
    pub fn all_ok(&self) -> bool {
        self.0.iter().all(|(_, s)| *s == BackendState::Ok)
    }
}

impl Serialize for BackendStates {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (kind, state) in &self.0 {
            map.serialize_entry(kind.name(), state)?;
        }
        map.end()
    }
}

/// An object with one [`BackendState`] per backend, as [`BackendStates`] serialises.
impl PartialSchema for BackendStates {
    fn schema() -> RefOr<Schema> {
        let state = Ref::from_schema_name(BackendState::name());
        BackendKind::ALL
            .iter()
            .fold(
                ObjectBuilder::new().description(Some(
                    "`/livez`: what each backend can do now (`ok`, `degraded` or `unavailable`).",
                )),
                |object, kind| {
                    object
                        .property(kind.name(), state.clone())
                        .required(kind.name())
                },
            )
            .into()
    }
}

impl ToSchema for BackendStates {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((BackendState::name().into(), BackendState::schema()));
    }
}
