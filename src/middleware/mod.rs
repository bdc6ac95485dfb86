//! The HTTP defences every request passes through, outermost first, as [`crate::startup`] wraps
//! them around the app:
//!
//! 1. [`headers`]: the security headers on every response, errors and 404s included;
//! 2. [`cors`]: the CORS allow-list (`--cors-origin`), when one is configured;
//! 3. [`csrf`]: unsafe requests that carry the session cookie must come from this origin (Fetch
//!    Metadata, then `Origin`) or from a trusted one.
//!
//! Each is a small `middleware::from_fn` function reading its policy from app data, and each
//! refusal is an [`crate::error::ApiError`], so it answers JSON through the one error mapping.

pub mod cors;
pub mod csrf;
pub mod headers;
