//! Refresh-token families: the lifecycle both token backends share, written once.
//!
//! A login starts a *family*. Its refresh token is exchanged at `/refresh` for a new access
//! credential and a successor refresh token; the old one is spent. A spent refresh token presented
//! again means two parties hold it (the client and a thief), so the whole family dies, and with it
//! every access credential issued from it.
//!
//! Two traits split the work by who knows what:
//! - [`RefreshFamilies`] is the family *store* (in authlab, Redis): it owns the refresh-token
//!   format, rotation, reuse detection and each user's registry of families;
//! - [`FamilyAccess`] is the part each token backend adds: what else dies with a family (the
//!   opaque backend deletes the attached access tokens; the JWT backend denylists the family).
//!
//! [`FamilyLifecycle`] joins the two and holds the logic both backends share: a reuse ends the
//! family, ending one session, ending all of a user's sessions, and RFC 7009 for refresh tokens.

use std::future::Future;
use std::time::Duration;

use secrecy::SecretString;

use crate::{AuthError, ClientInfo, Identity, SessionInfo, TokenInfo};

/// A login's refresh-token family, just started.
pub struct NewFamily {
    /// The family's public id (also the session id users see in their list).
    pub id: String,
    /// The first refresh token of the family.
    pub refresh_token: SecretString,
    /// How long it can be exchanged.
    pub refresh_ttl: Duration,
}

/// A successful refresh-token exchange.
pub struct Rotated {
    /// Whose family it is (with [`Identity::session_id`] set to the family id).
    pub identity: Identity,
    /// The successor refresh token (the same one again for a retry within the grace window).
    pub refresh_token: SecretString,
    /// How long the successor can be exchanged.
    pub refresh_ttl: Duration,
}

/// What presenting a refresh token to the store led to.
pub enum Exchange {
    /// The token was the live one (or a retry within the grace window): here is its successor.
    Rotated(Rotated),
    /// The token had already been spent: theft evidence. The store names the family, so that the
    /// caller can end it without knowing the token's format.
    Reused {
        /// The family the spent token belongs to.
        family: String,
    },
}

/// A family that was just revoked.
pub struct RevokedFamily {
    /// Whose it was.
    pub user_id: i64,
    /// The access-token ids that had been [attached](RefreshFamilies::attach) to it, for the
    /// backend to revoke in turn.
    pub attached: Vec<String>,
}

/// The family store: refresh-token rotation, reuse detection, and the per-user registry.
///
/// Both token backends (opaque and JWT) keep their families in one of these, so they share the
/// exact same lifecycle and differ only in their access credentials.
pub trait RefreshFamilies: Send + Sync + 'static {
    /// Starts a family at login.
    fn start(
        &self,
        identity: &Identity,
        client: &ClientInfo,
    ) -> impl Future<Output = Result<NewFamily, AuthError>> + Send;

    /// Spends `refresh_token` and returns its successor, or [`Exchange::Reused`] for a spent
    /// token presented again outside the grace window (the family is then still to be ended:
    /// [`FamilyLifecycle::exchange`] does that). Anything else that is not live is
    /// [`AuthError::Invalid`].
    fn exchange(
        &self,
        refresh_token: &str,
    ) -> impl Future<Output = Result<Exchange, AuthError>> + Send;

    /// Remembers that the access credential `access_id` (valid for `ttl`) came from `family`,
    /// so that revoking the family can revoke it too. [`AuthError::Invalid`] if the family is no
    /// longer live (revoked while the credential was being minted): the caller must then discard
    /// the credential.
    fn attach(
        &self,
        family: &str,
        access_id: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), AuthError>> + Send;

    /// Forgets a family's refresh token and registry entry; `Ok(None)` if it was not live.
    fn revoke_family(
        &self,
        family: &str,
    ) -> impl Future<Output = Result<Option<RevokedFamily>, AuthError>> + Send;

    /// The ids of the user's live families (expired ones are pruned on the way).
    fn family_ids(
        &self,
        user_id: i64,
    ) -> impl Future<Output = Result<Vec<String>, AuthError>> + Send;

    /// Whether `family` is one of the user's live families (somebody else's is "no").
    fn owns(
        &self,
        user_id: i64,
        family: &str,
    ) -> impl Future<Output = Result<bool, AuthError>> + Send {
        async move { Ok(self.family_ids(user_id).await?.iter().any(|f| f == family)) }
    }

    /// The user's live families, newest first (expired ones are pruned on the way).
    fn list(
        &self,
        user_id: i64,
    ) -> impl Future<Output = Result<Vec<SessionInfo>, AuthError>> + Send;

    /// What a refresh token is, if it is the live one of its family.
    fn inspect(
        &self,
        refresh_token: &str,
    ) -> impl Future<Output = Result<Option<TokenInfo>, AuthError>> + Send;
}

/// What a token backend revokes when one of its families ends, besides the refresh token.
pub trait FamilyAccess: Send + Sync {
    /// Revokes the access credentials issued from `family`. `ended` is what the store revoked,
    /// or `None` when the family was no longer live there (expired, already revoked, or kept in
    /// no store at all): a backend that can still act on the family id alone does so.
    fn revoke_access(
        &self,
        family: &str,
        ended: Option<&RevokedFamily>,
    ) -> impl Future<Output = Result<(), AuthError>> + Send;
}

/// A family store and a backend's access side, joined: the family logic both token backends share.
pub struct FamilyLifecycle<'a, F, A> {
    /// Where the families live.
    pub families: &'a F,
    /// What dies with a family.
    pub access: &'a A,
}

impl<F: RefreshFamilies, A: FamilyAccess> FamilyLifecycle<'_, F, A> {
    /// Ends a whole family: its refresh token, its registry entry and its access credentials.
    /// `Ok(false)` if the store no longer had it live.
    pub async fn end(&self, family: &str) -> Result<bool, AuthError> {
        let ended = self.families.revoke_family(family).await?;
        self.access.revoke_access(family, ended.as_ref()).await?;
        Ok(ended.is_some())
    }

    /// Exchanges a refresh token; a reused one ends its whole family (access credentials
    /// included) before the caller hears [`AuthError::Reused`].
    pub async fn exchange(&self, refresh_token: &str) -> Result<Rotated, AuthError> {
        match self.families.exchange(refresh_token).await? {
            Exchange::Rotated(rotated) => Ok(rotated),
            Exchange::Reused { family } => {
                self.end(&family).await?;
                Err(AuthError::Reused)
            }
        }
    }

    /// Ends one of the user's families; somebody else's is "no such session" (`Ok(false)`).
    pub async fn revoke_session(&self, user_id: i64, family: &str) -> Result<bool, AuthError> {
        if !self.families.owns(user_id, family).await? {
            return Ok(false);
        }
        self.end(family).await
    }

    /// Ends every family of the user; returns how many were live.
    pub async fn revoke_all(&self, user_id: i64) -> Result<usize, AuthError> {
        let mut revoked = 0;
        for family in self.families.family_ids(user_id).await? {
            if self.end(&family).await? {
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    /// RFC 7009 for a refresh token: if it is the live one of its family, the family ends (RFC 7009
    /// §2.1: revoking a refresh token also revokes what was issued with it). Returns whether it was.
    pub async fn revoke_refresh_token(&self, refresh_token: &str) -> Result<bool, AuthError> {
        let Some(info) = self.families.inspect(refresh_token).await? else {
            return Ok(false);
        };
        match info.identity.session_id {
            Some(family) => self.end(&family).await,
            None => Ok(false),
        }
    }
}
