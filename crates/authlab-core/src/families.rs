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
//!
//! # Ending a family is idempotent
//! Ending a family takes several writes that no one transaction can hold (the family, then each
//! access credential, each in a store or a slot of its own), and any of them can fail or, worse,
//! land after the caller was told it failed (a store that answered too late). So it goes in three
//! steps, and a store that can be interrupted keeps a *tombstone* between the first and the last:
//! 1. [`RefreshFamilies::revoke_family`] ends the family and keeps the list of what must still die
//!    with it; a family already ended but not yet finished is answered from that list again;
//! 2. [`FamilyAccess::revoke_access`] revokes those access credentials;
//! 3. [`RefreshFamilies::forget_revocation`] drops the list, and the family's registry entry.
//!
//! Whatever stopped an attempt, the next one (a retry, or any other revocation that reaches the
//! family) finds the tombstone and finishes the job before it answers success: an acknowledged
//! revocation is never partial.

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

/// A family that was just revoked, or whose revocation an earlier attempt left unfinished.
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
    /// token presented again outside the grace window, also while the family's revocation is
    /// unfinished (the family is then still to be ended, or finished: [`FamilyLifecycle::exchange`]
    /// does that). Anything else that is not live is
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

    /// Ends a family: its refresh token can no longer be exchanged and nothing new can attach to
    /// it. Returns what must die with it, and keeps that (the tombstone) until
    /// [`RefreshFamilies::forget_revocation`]: a family already ended but not forgotten is
    /// answered the same way again, so a retry can finish what an interrupted attempt started.
    /// `Ok(None)` if the family was neither live nor ending (expired, or revoked and forgotten).
    fn revoke_family(
        &self,
        family: &str,
    ) -> impl Future<Output = Result<Option<RevokedFamily>, AuthError>> + Send;

    /// Called once everything [`RefreshFamilies::revoke_family`] returned has been revoked: drops
    /// the tombstone and the family's registry entry. Until then, the registry keeps listing the
    /// family to "log out everywhere" (but not to the user), so that a retry finds it.
    fn forget_revocation(
        &self,
        family: &str,
        ended: &RevokedFamily,
    ) -> impl Future<Output = Result<(), AuthError>> + Send;

    /// The family of `refresh_token` if that token was the family's live one when a revocation
    /// of the family began that has not been [forgotten](RefreshFamilies::forget_revocation):
    /// RFC 7009 presenting it again must finish that revocation. The default, for a store that
    /// keeps no tombstones, is `None`.
    fn unfinished_revocation(
        &self,
        refresh_token: &str,
    ) -> impl Future<Output = Result<Option<String>, AuthError>> + Send {
        let _ = refresh_token;
        async { Ok(None) }
    }

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
    /// Revokes the access credentials issued from `family`. `ended` is what the store revoked
    /// (or had left to revoke from an unfinished attempt), or `None` when the family was neither
    /// live nor ending there (expired, revoked and forgotten, or kept in no store at all): a
    /// backend that can still act on the family id alone does so. It may run more than once for
    /// one family (a retry), so it must be idempotent.
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
    /// Ends a whole family: its refresh token, its access credentials and its registry entry, in
    /// that order (see the module docs), finishing an earlier attempt's unfinished revocation.
    /// `Ok(false)` if the store had it neither live nor ending.
    pub async fn end(&self, family: &str) -> Result<bool, AuthError> {
        let ended = self.families.revoke_family(family).await?;
        self.access.revoke_access(family, ended.as_ref()).await?;
        let Some(ended) = ended else {
            return Ok(false);
        };
        // Only now: until every access credential is gone, a retry must still find the family.
        self.families.forget_revocation(family, &ended).await?;
        Ok(true)
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
    /// §2.1: revoking a refresh token also revokes what was issued with it); if it was, and that
    /// family's revocation is unfinished (an earlier attempt failed), it is finished. Returns
    /// whether the family was live or ending.
    pub async fn revoke_refresh_token(&self, refresh_token: &str) -> Result<bool, AuthError> {
        let family = match self.families.inspect(refresh_token).await? {
            Some(info) => info.identity.session_id.map(|id| id.to_string()),
            None => self.families.unfinished_revocation(refresh_token).await?,
        };
        match family {
            Some(family) => self.end(&family).await,
            None => Ok(false),
        }
    }
}
