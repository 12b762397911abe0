//! The services: what the HTTP routes call, and the only callers of the stores, Redis and the
//! WeChat client. Each is a small struct built once at start (`state.rs`) and shared.
//!
//! - [`apps`]: which mini programs this server serves, and their credentials.
//! - [`registry`]: adding, rotating and removing apps at run time (the admin API's side).
//! - [`login`]: code → WeChat → user + session, single-flight per code.
//! - [`sessions`]: token checks, expiry policy, and every revocation (the one session seam).
//! - [`users`]: the person behind a token: profile, avatar, phone, export, and the account
//!   actions (ban, unban, merge, delete), admin look-ups and the event log.
//! - [`open_data`]: phone numbers, encrypted data, rawData signatures, checksession.
//! - [`access_tokens`]: the per-app access_token, one refresher across instances.
//! - [`ratelimit`]: fixed-window limits, shared through Redis when it is configured.
//! - [`maintenance`]: readiness, counts, and the expired-data cleanup loop.
//!
//! Depends on the stores, the Redis layer, the WeChat client and the domain; knows nothing of
//! HTTP. Errors cross the boundary as [`ServiceError`], which the routes turn into replies.

pub mod access_tokens;
pub mod apps;
pub mod login;
pub mod maintenance;
pub mod open_data;
pub mod ratelimit;
pub mod registry;
pub mod sessions;
pub mod user_cache;
pub mod users;
pub mod webhooks;

use crate::store::StoreError;
use crate::wechat::WechatError;
use std::sync::Arc;

/// Why a service call failed: the one error type between the services and the routes.
/// `Clone`, because a login's outcome is shared by every request that joined it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    #[error("no live session for this token")]
    Unauthorized,
    #[error("code already used")]
    CodeUsed,
    #[error("{0}")]
    UnknownApp(&'static str),
    #[error("{0}")]
    BadInput(&'static str),
    #[error("the phone code was refused")]
    InvalidPhoneCode,
    #[error("could not decrypt with this session's session_key")]
    DecryptFailed,
    #[error("the user is banned")]
    Banned,
    #[error("WeChat's placeholder nickname")]
    PlaceholderNickname,
    #[error("another user holds this phone number")]
    PhoneInUse,
    #[error("not a PNG, JPEG or WebP image")]
    UnsupportedImage,
    /// The session's platform lacks the feature.
    #[error("{0}")]
    Unsupported(&'static str),
    #[error("the image is too large")]
    ImageTooLarge,
    #[error("no such user or session")]
    NotFound,
    #[error("rate limit reached")]
    RateLimited { retry_after_secs: u64 },
    #[error(transparent)]
    Wechat(WechatError),
    /// The store failed; the text is for the log, never for the client.
    #[error("store unavailable: {0}")]
    StoreUnavailable(Arc<str>),
    /// A bug or a panic; the text is for the log, never for the client.
    #[error("internal error: {0}")]
    Internal(Arc<str>),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::CodeUsed => Self::CodeUsed,
            StoreError::Banned => Self::Banned,
            StoreError::Unavailable(why) => Self::StoreUnavailable(why.into()),
        }
    }
}

impl From<WechatError> for ServiceError {
    fn from(e: WechatError) -> Self {
        Self::Wechat(e)
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
