//! The rules a *new* password must meet, after NIST SP 800-63B rev. 4 section 3.1.1.2. They are
//! applied when a password is chosen (registration, password change), never at login: a password
//! that was accepted once keeps working.
//!
//! After NFKC normalisation, a new password is refused when
//! - it is shorter than the configured minimum (15 by default, never under 8) or longer than
//!   [`MAX_PASSWORD_CHARS`], counted in Unicode code points, not bytes;
//! - it contains the user name, whatever the case (names of at least
//!   [`MIN_USERNAME_CHARS_CHECKED`] characters);
//! - zxcvbn estimates that it falls in fewer guesses than [`PasswordPolicy::min_guesses`]: common
//!   and breached passwords, words with digits or a sequence appended (`iloveyou1234567`), repeats,
//!   sequences, keyboard walks, dates, l33t spellings, the user name and the service name.
//!
//! There are no composition rules (NIST: verifiers SHALL NOT impose them).

use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

use crate::{Password, UserStoreError};

/// The lowest minimum length the policy can be given (NIST: SHALL be at least 8).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The minimum length when none is configured: NIST's for a password that is the only factor.
pub const DEFAULT_MIN_PASSWORD_CHARS: usize = 15;
/// The highest minimum length the policy can be given: every password of 64 characters must be
/// acceptable (NIST: verifiers SHOULD permit at least 64).
pub const MAX_MIN_PASSWORD_CHARS: usize = 64;
/// Longest accepted password, in characters: long enough for any passphrase, short enough that
/// nobody can make us hash a megabyte.
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// How many leading characters zxcvbn judges. Its cost grows faster than the length (about
/// 130 ms for the worst 64-character input measured, 420 ms at its own cap of 100), and a
/// password whose first 64 characters are hard to guess is hard to guess. The length and user
/// name rules see the whole password.
pub const ESTIMATED_CHARS: usize = 64;
/// User names shorter than this are not looked for inside passwords: too many ordinary words
/// contain a three-letter name ("tom" in "custom"). zxcvbn still weighs them as a known word.
pub const MIN_USERNAME_CHARS_CHECKED: usize = 4;
/// The service's own name, which NIST lists among the context-specific words to refuse.
const SERVICE_NAME: &str = "authlab";
/// The most guesses the estimator's bar asks for: 10^10, zxcvbn's top score (4).
const MAX_GUESSES_LOG10: usize = 10;

/// What a new password must meet. Built from the configured minimum length; everything else is
/// fixed by this module.
///
/// ```
/// use authlab_users::PasswordPolicy;
/// use secrecy::SecretString;
///
/// let policy = PasswordPolicy::default();
/// assert_eq!(policy.min_chars(), 15);
/// let refused = policy.check(SecretString::from("iloveyou1234567"), "alice");
/// assert_eq!(
///     refused.unwrap_err().to_string(),
///     "password: is too common or too easy to guess"
/// );
/// assert!(policy.check(SecretString::from("sawdust lantern orbit pickle"), "alice").is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    min_chars: usize,
}

impl Default for PasswordPolicy {
    /// A 15-character minimum.
    fn default() -> Self {
        Self {
            min_chars: DEFAULT_MIN_PASSWORD_CHARS,
        }
    }
}

impl PasswordPolicy {
    /// A policy with this minimum length, which must lie in
    /// [`MIN_PASSWORD_CHARS`]`..=`[`MAX_MIN_PASSWORD_CHARS`].
    pub fn new(min_chars: usize) -> Result<Self, UserStoreError> {
        if !(MIN_PASSWORD_CHARS..=MAX_MIN_PASSWORD_CHARS).contains(&min_chars) {
            return Err(UserStoreError::PolicyOutOfRange { min_chars });
        }
        Ok(Self { min_chars })
    }

    /// The shortest acceptable password, in characters after NFKC normalisation.
    pub fn min_chars(self) -> usize {
        self.min_chars
    }

    /// The fewest guesses zxcvbn must estimate for a password: 10^n for a minimum length of n,
    /// capped at 10^10 (zxcvbn's score 4). zxcvbn prices a character it finds no pattern in at
    /// 10 guesses, so the bar reads "as hard to guess as a patternless password of the minimum
    /// length": 10^10 with the default 15, and 10^8 with a minimum of 8, which a patternless
    /// 8-character password just reaches (a fixed score 3, "more than 10^8", would refuse every
    /// 8-character password and silently make the minimum 9).
    pub fn min_guesses(self) -> u64 {
        let exponent = self.min_chars.min(MAX_GUESSES_LOG10);
        10u64.pow(u32::try_from(exponent).unwrap_or(10))
    }

    /// Checks a new password chosen by (or for) `username`, and returns it in the form that is
    /// hashed (NFKC). The message of a refusal names the rule.
    ///
    /// This is CPU work of up to a few hundred microseconds for an ordinary password and about
    /// 130 ms for the worst input: run it off the async workers, as
    /// [`UserStore::check_new_password`](crate::UserStore::check_new_password) does.
    pub fn check(self, password: SecretString, username: &str) -> Result<Password, UserStoreError> {
        let invalid = |reason: String| UserStoreError::InvalidField {
            field: "password",
            reason,
        };
        // A character is at most 4 bytes: more bytes than this cannot be few enough characters,
        // and refusing them first bounds the normalisation's work.
        if password.expose_secret().len() > 4 * MAX_PASSWORD_CHARS {
            return Err(invalid(format!(
                "must be at most {MAX_PASSWORD_CHARS} characters"
            )));
        }
        let normalized = nfkc(password);
        let chars = normalized.expose_secret().chars().count();
        if chars == 0 {
            return Err(invalid("must not be empty".to_owned()));
        }
        if chars < self.min_chars {
            return Err(invalid(format!(
                "must be at least {} characters",
                self.min_chars
            )));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(invalid(format!(
                "must be at most {MAX_PASSWORD_CHARS} characters"
            )));
        }
        if contains_username(normalized.expose_secret(), username) {
            return Err(invalid("must not contain the user name".to_owned()));
        }
        let judged: Zeroizing<String> = Zeroizing::new(
            normalized
                .expose_secret()
                .chars()
                .take(ESTIMATED_CHARS)
                .collect(),
        );
        let estimate = zxcvbn::zxcvbn(&judged, &[username, SERVICE_NAME]);
        if estimate.guesses() < self.min_guesses() {
            return Err(invalid("is too common or too easy to guess".to_owned()));
        }
        Ok(Password(normalized))
    }
}

/// Whether `password` contains `username`, ignoring case (both already NFKC or about to be).
fn contains_username(password: &str, username: &str) -> bool {
    let name: String = username.nfkc().collect::<String>().to_lowercase();
    if name.chars().count() < MIN_USERNAME_CHARS_CHECKED {
        return false;
    }
    let lowered = Zeroizing::new(password.to_lowercase());
    lowered.contains(&name)
}

/// The NFKC form of a password (NIST 3.1.1.2: normalise before hashing), so that the same
/// password typed as composed or decomposed characters, or with compatibility forms such as
/// full-width letters or ligatures, is the same password.
pub(crate) fn nfkc(password: SecretString) -> SecretString {
    if is_nfkc_quick(password.expose_secret().chars()) == IsNormalized::Yes {
        return password;
    }
    SecretString::from(password.expose_secret().nfkc().collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(policy: PasswordPolicy, password: &str, username: &str) -> Result<(), String> {
        policy
            .check(SecretString::from(password), username)
            .map(drop)
            .map_err(|e| e.to_string())
    }

    const TOO_EASY: &str = "password: is too common or too easy to guess";

    #[test]
    fn the_minimum_length_is_15_by_default_and_never_under_8_or_over_64() {
        assert_eq!(PasswordPolicy::default().min_chars(), 15);
        assert_eq!(PasswordPolicy::new(8).unwrap().min_chars(), 8);
        for bad in [0, 7, 65] {
            assert_eq!(
                PasswordPolicy::new(bad).map_err(|e| e.to_string()),
                Err(format!(
                    "the minimum password length must be 8 to 64 characters, not {bad}"
                ))
            );
        }
    }

    #[test]
    fn the_estimator_bar_follows_the_minimum_length_up_to_score_4() {
        let bar = |n| PasswordPolicy::new(n).map(PasswordPolicy::min_guesses).ok();
        assert_eq!(bar(8), Some(100_000_000));
        assert_eq!(bar(9), Some(1_000_000_000));
        assert_eq!(bar(15), Some(10_000_000_000));
        assert_eq!(bar(64), Some(10_000_000_000));
    }

    #[test]
    fn length_is_counted_in_characters_after_nfkc_not_in_bytes() {
        let policy = PasswordPolicy::default();
        // 14 two-byte characters: 28 bytes, still too short.
        assert_eq!(
            check(policy, &"é".repeat(14), "alice"),
            Err("password: must be at least 15 characters".to_owned())
        );
        // "ﬃ" (one code point) is "ffi" (three) after NFKC.
        let ligatures = "ﬃ".repeat(5);
        assert_eq!(ligatures.chars().count(), 5);
        assert_eq!(
            check(policy, &ligatures, "alice"),
            Err(TOO_EASY.to_owned()),
            "15 characters after NFKC: long enough, then judged (and refused) as a repeat"
        );
    }

    #[test]
    fn the_weak_passwords_of_issue_11_are_refused_at_the_lowest_minimum() {
        let policy = PasswordPolicy::new(8).unwrap();
        for weak in [
            "password1",
            "12345678",
            "        ",
            "iloveyou1234567",
            "aaaaaaaaaaaaaaaa",
            "123456789012345",
            "qwertyuiopasdfgh",
            "P@ssw0rd",
            "1qaz2wsx3edc",
        ] {
            assert_eq!(
                check(policy, weak, "alice"),
                Err(TOO_EASY.to_owned()),
                "{weak:?}"
            );
        }
        assert_eq!(
            check(policy, "Alexandrax", "alexandra"),
            Err("password: must not contain the user name".to_owned())
        );
    }

    #[test]
    fn the_default_refuses_two_common_words_and_accepts_random_passphrases() {
        let policy = PasswordPolicy::default();
        for weak in ["Winter2025Winter", "another password", "correcthorse1234"] {
            assert_eq!(
                check(policy, weak, "alice"),
                Err(TOO_EASY.to_owned()),
                "{weak:?}"
            );
        }
        for good in [
            "sawdust lantern orbit pickle",
            "quiet maple ferry cobalt",
            "blue cactus jam",
        ] {
            assert_eq!(check(policy, good, "alice"), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn the_user_name_is_found_in_any_case_but_short_names_are_left_to_the_estimator() {
        let policy = PasswordPolicy::default();
        assert_eq!(
            check(policy, "orbit ALICE lantern pickle", "Alice"),
            Err("password: must not contain the user name".to_owned())
        );
        assert_eq!(check(policy, "sawdust custom orbit pickle", "tom"), Ok(()));
    }

    #[test]
    fn a_long_password_is_judged_by_its_first_64_characters() {
        let policy = PasswordPolicy::default();
        let strong_start = format!("sawdust lantern orbit pickle {}", "a".repeat(900));
        assert_eq!(check(policy, &strong_start, "alice"), Ok(()));
        let weak_start = format!("{}sawdust lantern orbit pickle", "a".repeat(64));
        assert_eq!(
            check(policy, &weak_start, "alice"),
            Err(TOO_EASY.to_owned())
        );
        assert_eq!(
            check(policy, &"sawdust lantern ".repeat(65), "alice"),
            Err("password: must be at most 1024 characters".to_owned())
        );
    }

    #[test]
    fn the_accepted_password_is_the_nfkc_form() {
        let policy = PasswordPolicy::default();
        let decomposed = "cafe\u{301} lantern orbit pickle";
        let accepted = policy.check(SecretString::from(decomposed), "alice");
        assert_eq!(
            accepted
                .map(|p| p.0.expose_secret().to_owned())
                .ok()
                .as_deref(),
            Some("café lantern orbit pickle")
        );
    }
}
