//! The API error type and its JSON shape: `{"status": N, "msg": "...", "error": "machine_code"}`.
//!
//! Every variant has a fixed HTTP status, `status` number and `error` code (the table in
//! `docs/errors.md`). Internal error text never reaches the client: a server-side failure
//! carries its cause in a [`Cause`], which the reply hands to the logging middleware
//! (`routes/middleware.rs`) as a response extension, so each 5xx is logged once, inside its
//! request's span, and answered with a fixed message.
//!
//! [`ErrorBody`] is both the body every error reply serializes and its OpenAPI schema; the
//! response sets below it are the documented errors the routes share.

use crate::services::ServiceError;
use crate::wechat::WechatError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use utoipa::ToSchema;

/// Why a server-side failure happened: for the log, never for the client. Compares equal to
/// every other cause, so tests compare errors by kind.
#[derive(Clone, Default)]
pub struct Cause(Option<Arc<str>>);

impl Cause {
    pub fn new(why: impl Into<Arc<str>>) -> Self {
        Self(Some(why.into()))
    }
}

impl PartialEq for Cause {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Cause {}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_deref().unwrap_or("-"))
    }
}

/// What the logging middleware finds on a 5xx reply.
#[derive(Clone, Debug)]
pub struct ServerFailure {
    pub error: &'static str,
    pub cause: Cause,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    MissingCode,
    InvalidCode,
    CodeUsed,
    UserBlocked,
    Unauthorized,
    BadRequest(String),
    UnknownApp(String),
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    InvalidPhoneCode,
    DecryptFailed,
    Banned,
    PlaceholderNickname,
    PhoneInUse,
    UnsupportedImage,
    /// The session's platform lacks what the route asks for (a QQ session's phone number).
    Unsupported(String),
    RequestTimeout,
    RateLimited {
        retry_after_secs: u64,
    },
    WechatRateLimited,
    WechatUnavailable(Cause),
    WechatMisconfigured(Cause),
    StoreUnavailable(Cause),
    Internal(Cause),
}

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECS: u64 = 2;

impl ApiError {
    /// `(HTTP status, status number, error code)`; the table in `docs/errors.md` mirrors this.
    pub fn parts(&self) -> (StatusCode, u16, &'static str) {
        use StatusCode as S;
        match self {
            Self::MissingCode => (S::BAD_REQUEST, 1, "missing_code"),
            Self::InvalidCode => (S::UNAUTHORIZED, 2, "invalid_code"),
            Self::CodeUsed => (S::UNAUTHORIZED, 2, "code_used"),
            Self::UserBlocked => (S::FORBIDDEN, 3, "user_blocked"),
            Self::Unauthorized => (S::UNAUTHORIZED, 4, "unauthorized"),
            Self::BadRequest(_) => (S::BAD_REQUEST, 14, "bad_request"),
            Self::UnknownApp(_) => (S::BAD_REQUEST, 6, "unknown_app"),
            Self::NotFound => (S::NOT_FOUND, 7, "not_found"),
            Self::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, 8, "method_not_allowed"),
            Self::PayloadTooLarge => (S::PAYLOAD_TOO_LARGE, 9, "payload_too_large"),
            Self::InvalidPhoneCode => (S::BAD_REQUEST, 12, "invalid_phone_code"),
            Self::DecryptFailed => (S::BAD_REQUEST, 13, "decrypt_failed"),
            Self::Banned => (S::FORBIDDEN, 5, "banned"),
            Self::PlaceholderNickname => (S::BAD_REQUEST, 15, "placeholder_nickname"),
            Self::PhoneInUse => (S::CONFLICT, 16, "phone_in_use"),
            Self::UnsupportedImage => (S::UNSUPPORTED_MEDIA_TYPE, 17, "unsupported_image"),
            Self::Unsupported(_) => (S::NOT_FOUND, 19, "unsupported"),
            Self::RequestTimeout => (S::REQUEST_TIMEOUT, 18, "request_timeout"),
            Self::RateLimited { .. } => (S::TOO_MANY_REQUESTS, 10, "rate_limited"),
            Self::WechatRateLimited => (S::TOO_MANY_REQUESTS, 11, "wechat_rate_limited"),
            Self::WechatUnavailable(_) => (S::SERVICE_UNAVAILABLE, 20, "wechat_unavailable"),
            Self::WechatMisconfigured(_) => (S::SERVICE_UNAVAILABLE, 21, "wechat_misconfigured"),
            Self::StoreUnavailable(_) => (S::SERVICE_UNAVAILABLE, 22, "store_unavailable"),
            Self::Internal(_) => (S::INTERNAL_SERVER_ERROR, 99, "internal"),
        }
    }

    fn cause(&self) -> Option<&Cause> {
        match self {
            Self::WechatUnavailable(c)
            | Self::WechatMisconfigured(c)
            | Self::StoreUnavailable(c)
            | Self::Internal(c) => Some(c),
            _ => None,
        }
    }

    fn message(&self) -> String {
        match self {
            Self::MissingCode => "code is missing: send the code from wx.login()".into(),
            Self::InvalidCode => "WeChat rejected the code: call wx.login() again".into(),
            Self::CodeUsed => "this code was already used: call wx.login() for a new one".into(),
            Self::UserBlocked => "WeChat blocked this user's login as high-risk".into(),
            Self::Unauthorized => "not logged in, or the session expired: log in again".into(),
            Self::BadRequest(why) => why.clone(),
            Self::UnknownApp(why) => why.clone(),
            Self::NotFound => "no such route".into(),
            Self::MethodNotAllowed => "method not allowed on this route".into(),
            Self::PayloadTooLarge => "request body too large".into(),
            Self::InvalidPhoneCode => {
                "WeChat rejected the phone code: ask the user to tap the phone button again".into()
            }
            Self::DecryptFailed => {
                "could not decrypt: the session_key changed since this session logged in \
                 (wx.login() was called again). Log in again, then collect the encrypted data"
                    .into()
            }
            Self::Banned => "this account is banned".into(),
            Self::PlaceholderNickname => {
                "choose a nickname: WeChat's placeholder 微信用户 is not one".into()
            }
            Self::PhoneInUse => {
                "this phone number belongs to another account: sign in to that one".into()
            }
            Self::UnsupportedImage => "the avatar must be a PNG, JPEG or WebP image".into(),
            Self::Unsupported(why) => why.clone(),
            Self::RequestTimeout => {
                "the request did not arrive in time; the connection is closed: send it again".into()
            }
            Self::RateLimited { .. } => "too many requests: slow down".into(),
            Self::WechatRateLimited => "WeChat's rate limit was reached: retry in a minute".into(),
            Self::WechatUnavailable(_) => "WeChat is unavailable right now: retry shortly".into(),
            Self::WechatMisconfigured(_) => {
                "the server's WeChat credentials were refused: tell the operator".into()
            }
            Self::StoreUnavailable(_) => {
                "the session store is unavailable right now: retry shortly".into()
            }
            Self::Internal(_) => "internal error".into(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Self::WechatRateLimited => Some(60),
            Self::WechatUnavailable(_)
            | Self::WechatMisconfigured(_)
            | Self::StoreUnavailable(_) => Some(RETRY_AFTER_SECS),
            _ => None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (http, _, code) = self.parts();
        write!(f, "{} {code}: {}", http.as_u16(), self.message())?;
        match self.cause() {
            Some(Cause(Some(why))) => write!(f, " ({why})"),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for ApiError {}

/// Every error reply: `status` and `error` are stable (see docs/errors.md).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    #[schema(example = 4)]
    status: u16,
    #[schema(example = "not logged in, or the session expired: log in again")]
    msg: String,
    #[schema(example = "unauthorized")]
    error: &'static str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (http, status, error) = self.parts();
        let body = ErrorBody {
            status,
            msg: self.message(),
            error,
        };
        let mut response = (http, Json(body)).into_response();
        if let Some(secs) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if http == StatusCode::UNAUTHORIZED && error == "unauthorized" {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(cause) = self.cause() {
            response.extensions_mut().insert(ServerFailure {
                error,
                cause: cause.clone(),
            });
        }
        response
    }
}

impl From<WechatError> for ApiError {
    fn from(e: WechatError) -> Self {
        match e {
            WechatError::InvalidCode => Self::InvalidCode,
            WechatError::CodeUsed => Self::CodeUsed,
            WechatError::UserBlocked => Self::UserBlocked,
            WechatError::RateLimited => Self::WechatRateLimited,
            WechatError::BadCredentials(_) => Self::WechatMisconfigured(Cause::new(e.to_string())),
            WechatError::Busy
            | WechatError::AccessTokenInvalid(_)
            | WechatError::InvalidSignature
            | WechatError::Other(_)
            | WechatError::Timeout
            | WechatError::Connect
            | WechatError::HttpStatus(_)
            | WechatError::BadReply
            | WechatError::BadSignature => Self::WechatUnavailable(Cause::new(e.to_string())),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Unauthorized => Self::Unauthorized,
            ServiceError::CodeUsed => Self::CodeUsed,
            ServiceError::UnknownApp(why) => Self::UnknownApp(why.into()),
            ServiceError::BadInput(why) => Self::BadRequest(why.into()),
            ServiceError::InvalidPhoneCode => Self::InvalidPhoneCode,
            ServiceError::DecryptFailed => Self::DecryptFailed,
            ServiceError::Banned => Self::Banned,
            ServiceError::PlaceholderNickname => Self::PlaceholderNickname,
            ServiceError::PhoneInUse => Self::PhoneInUse,
            ServiceError::UnsupportedImage => Self::UnsupportedImage,
            ServiceError::Unsupported(why) => Self::Unsupported(why.into()),
            ServiceError::ImageTooLarge => Self::PayloadTooLarge,
            ServiceError::NotFound => Self::NotFound,
            ServiceError::RateLimited { retry_after_secs } => {
                Self::RateLimited { retry_after_secs }
            }
            ServiceError::Wechat(e) => e.into(),
            ServiceError::StoreUnavailable(why) => Self::StoreUnavailable(Cause(Some(why))),
            ServiceError::Internal(why) => Self::Internal(Cause(Some(why))),
        }
    }
}

/// The documented error replies the routes share: each route lists the sets it can answer.
/// Documentation only: these types describe replies for the OpenAPI document and are never
/// built (every error reply is an [`ApiError`] serializing an [`ErrorBody`]).
#[allow(dead_code)]
pub(crate) mod responses {
    use super::ErrorBody;
    use utoipa::IntoResponses;

    /// 400: the body or query is not what the route takes.
    #[derive(IntoResponses)]
    #[response(status = 400, description = "bad_request (and the route's own 400s)")]
    pub(crate) struct BadRequest(#[to_schema] ErrorBody);

    /// 401: no live session for the token.
    #[derive(IntoResponses)]
    #[response(
        status = 401,
        description = "unauthorized: no token, or an unknown, expired or revoked one"
    )]
    pub(crate) struct Unauthorized(#[to_schema] ErrorBody);

    /// 404: the session's platform lacks the route's feature.
    #[derive(IntoResponses)]
    #[response(
        status = 404,
        description = "unsupported: the session's platform has no such API (docs/platforms.md)"
    )]
    pub(crate) struct Unsupported(#[to_schema] ErrorBody);

    /// 413: the body is over the limit.
    #[derive(IntoResponses)]
    #[response(status = 413, description = "payload_too_large")]
    pub(crate) struct TooLarge(#[to_schema] ErrorBody);

    /// 429: over a rate limit.
    #[derive(IntoResponses)]
    #[response(status = 429, description = "rate_limited, wechat_rate_limited", headers(("Retry-After" = u64, description = "seconds")))]
    pub(crate) struct RateLimited(#[to_schema] ErrorBody);

    /// 503: the store or WeChat is unavailable; never a 401 that would log users out.
    #[derive(IntoResponses)]
    #[response(status = 503, description = "store_unavailable, wechat_unavailable, wechat_misconfigured", headers(("Retry-After" = u64, description = "seconds")))]
    pub(crate) struct Unavailable(#[to_schema] ErrorBody);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/errors.md is the one table clients read: every variant must stand there with its
    /// exact HTTP status, status number and code.
    #[test]
    fn every_error_is_in_the_documented_table() {
        let doc = include_str!("../docs/errors.md");
        let all = [
            ApiError::MissingCode,
            ApiError::InvalidCode,
            ApiError::CodeUsed,
            ApiError::UserBlocked,
            ApiError::Unauthorized,
            ApiError::BadRequest(String::new()),
            ApiError::UnknownApp(String::new()),
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
            ApiError::PayloadTooLarge,
            ApiError::InvalidPhoneCode,
            ApiError::DecryptFailed,
            ApiError::Banned,
            ApiError::PlaceholderNickname,
            ApiError::PhoneInUse,
            ApiError::UnsupportedImage,
            ApiError::Unsupported(String::new()),
            ApiError::RequestTimeout,
            ApiError::RateLimited {
                retry_after_secs: 1,
            },
            ApiError::WechatRateLimited,
            ApiError::WechatUnavailable(Cause::default()),
            ApiError::WechatMisconfigured(Cause::default()),
            ApiError::StoreUnavailable(Cause::default()),
            ApiError::Internal(Cause::default()),
        ];
        for e in all {
            let (http, status, code) = e.parts();
            let row = format!("| {} | {status} | `{code}` |", http.as_u16());
            assert!(doc.contains(&row), "docs/errors.md lacks the row {row}");
        }
    }

    #[test]
    fn server_side_failures_say_when_to_retry_and_are_never_401() {
        for e in [
            ApiError::WechatUnavailable(Cause::default()),
            ApiError::WechatMisconfigured(Cause::default()),
            ApiError::StoreUnavailable(Cause::default()),
        ] {
            let response = e.clone().into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{e:?}");
            assert!(
                response.headers().contains_key(header::RETRY_AFTER),
                "{e:?}"
            );
        }
    }
}
