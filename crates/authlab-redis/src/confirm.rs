//! Write confirmation: a write that ends a credential is acknowledged only once it will survive
//! a failover.
//!
//! # Why
//! Redis replicates asynchronously. A master answers a write as soon as it has applied it, before
//! any replica has it; if that master dies (or is demoted, as in a planned switchover) before the
//! write has reached the replica that takes over, the write never happened. For most writes that
//! is a lost login at worst. For a write that *ends* a credential (logout, logout-all, a reuse
//! revocation, a password change, RFC 7009, a JWT denylist entry, deleting a session from the
//! list) it is worse: a logout answered `204` comes back to life, and the user who logged out of a
//! shared computer is logged in again.
//!
//! # How
//! After such a write, on the same connection, `WAIT <replicas> <timeout ms>`: Redis answers once
//! that many replicas have acknowledged every write this connection made so far, or when the
//! timeout runs out, with the number that did. Fewer than asked means the write may not survive a
//! failover, so the request fails with [`RedisBackendError::NotConfirmed`], which the server
//! answers `503 backend_unavailable` (with `Retry-After`): the client learns the logout may not
//! have happened and can try again, instead of being told it did.
//!
//! `WAIT` must run on the *same* connection as the write (Redis counts a client's own writes),
//! so [`crate::RedisConnection`] sends it in the same pipeline as a command, or right after a
//! script, on the connection the write went out on. While `WAIT` waits, Redis holds that
//! connection's later commands back; the replica's acknowledgement is one round trip on a
//! healthy link (see `docs/scale-out.md`, "Sentinel", for the measured cost per logout).
//!
//! What `WAIT` does not do: it does not make the write durable on disk, and a write refused by
//! `WAIT`'s count is *not* rolled back on the master (it may still be replicated later). The
//! refusal only stops the server from claiming a revocation it cannot vouch for. Redis's
//! `min-replicas-to-write` is the server-side counterpart: a master with fewer healthy replicas
//! than that refuses *every* write up front (`NOREPLICAS`), which also stops a master cut off from
//! its replicas from accepting writes nobody will ever see.

use std::time::Duration;

use crate::RedisBackendError;

/// How many replicas must have a credential-ending write before it is acknowledged, and how long
/// to wait for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteConfirmation {
    /// Replicas that must acknowledge the write (`0`: none, no `WAIT` is sent).
    pub replicas: u32,
    /// The longest `WAIT` blocks; must stay below the response timeout, or the connection would
    /// be dropped as timed out while Redis is still waiting.
    pub timeout: Duration,
}

impl WriteConfirmation {
    /// No confirmation: right for one Redis with no replica, where there is nothing to fail over
    /// to (and `WAIT 1` could never succeed).
    pub const NONE: Self = Self {
        replicas: 0,
        timeout: Duration::ZERO,
    };

    /// Whether a `WAIT` is sent at all.
    pub fn is_required(&self) -> bool {
        self.replicas > 0
    }

    /// The `WAIT` command for this policy (`WAIT 0 0` would block forever: never sent).
    pub(crate) fn wait_command(&self) -> redis::Cmd {
        // A zero timeout means "forever" to Redis: at least one millisecond.
        let millis = u64::try_from(self.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(self.replicas).arg(millis);
        cmd
    }

    /// Judges `WAIT`'s answer: how many replicas acknowledged the write.
    pub(crate) fn judge(&self, confirmed: i64) -> Result<(), RedisBackendError> {
        if confirmed >= i64::from(self.replicas) {
            Ok(())
        } else {
            Err(RedisBackendError::NotConfirmed {
                wanted: self.replicas,
                confirmed,
            })
        }
    }
}

impl Default for WriteConfirmation {
    fn default() -> Self {
        Self::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewer_replicas_than_asked_is_not_confirmed() {
        let policy = WriteConfirmation {
            replicas: 1,
            timeout: Duration::from_millis(200),
        };
        assert!(policy.judge(1).is_ok());
        assert!(policy.judge(2).is_ok());
        assert!(matches!(
            policy.judge(0),
            Err(RedisBackendError::NotConfirmed {
                wanted: 1,
                confirmed: 0
            })
        ));
    }

    #[test]
    fn the_wait_command_never_blocks_forever() {
        let policy = WriteConfirmation {
            replicas: 1,
            timeout: Duration::ZERO,
        };
        let packed = policy.wait_command().get_packed_command();
        let text = String::from_utf8_lossy(&packed);
        assert!(text.ends_with("$1\r\n1\r\n$1\r\n1\r\n"), "{text}");
        assert!(!WriteConfirmation::NONE.is_required());
    }
}
