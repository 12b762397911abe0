//! The API error type and its JSON shape: `{"status": N, "msg": "...", "error": "machine_code"}`.
//!
//! Every variant has a fixed HTTP status, `status` number and `error` code (the table in
//! `docs/errors.md`). Internal error text never reaches the client: store and WeChat failures
//! are logged where they happen and answered with a fixed message.

use crate::login::LoginError;
use crate::session::AuthError;
use crate::store::StoreError;
use crate::wechat::WechatError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

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
    RateLimited { retry_after_secs: u64 },
    WechatRateLimited,
    WechatUnavailable,
    WechatMisconfigured,
    StoreUnavailable,
    Internal,
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
            Self::BadRequest(_) => (S::BAD_REQUEST, 5, "bad_request"),
            Self::UnknownApp(_) => (S::BAD_REQUEST, 6, "unknown_app"),
            Self::NotFound => (S::NOT_FOUND, 7, "not_found"),
            Self::MethodNotAllowed => (S::METHOD_NOT_ALLOWED, 8, "method_not_allowed"),
            Self::PayloadTooLarge => (S::PAYLOAD_TOO_LARGE, 9, "payload_too_large"),
            Self::InvalidPhoneCode => (S::BAD_REQUEST, 12, "invalid_phone_code"),
            Self::DecryptFailed => (S::BAD_REQUEST, 13, "decrypt_failed"),
            Self::RateLimited { .. } => (S::TOO_MANY_REQUESTS, 10, "rate_limited"),
            Self::WechatRateLimited => (S::TOO_MANY_REQUESTS, 11, "wechat_rate_limited"),
            Self::WechatUnavailable => (S::SERVICE_UNAVAILABLE, 20, "wechat_unavailable"),
            Self::WechatMisconfigured => (S::SERVICE_UNAVAILABLE, 21, "wechat_misconfigured"),
            Self::StoreUnavailable => (S::SERVICE_UNAVAILABLE, 22, "store_unavailable"),
            Self::Internal => (S::INTERNAL_SERVER_ERROR, 99, "internal"),
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
            Self::RateLimited { .. } => "too many requests: slow down".into(),
            Self::WechatRateLimited => "WeChat's rate limit was reached: retry in a minute".into(),
            Self::WechatUnavailable => "WeChat is unavailable right now: retry shortly".into(),
            Self::WechatMisconfigured => {
                "the server's WeChat credentials were refused: tell the operator".into()
            }
            Self::StoreUnavailable => {
                "the session store is unavailable right now: retry shortly".into()
            }
            Self::Internal => "internal error".into(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Self::WechatRateLimited => Some(60),
            Self::WechatUnavailable | Self::WechatMisconfigured | Self::StoreUnavailable => {
                Some(RETRY_AFTER_SECS)
            }
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (http, status, error) = self.parts();
        let body = json!({ "status": status, "msg": self.message(), "error": error });
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
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::CodeUsed => Self::CodeUsed,
            StoreError::Unavailable(why) => {
                tracing::error!(error = %why, "store unavailable");
                Self::StoreUnavailable
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized => Self::Unauthorized,
            AuthError::Store(e) => e.into(),
        }
    }
}

impl From<WechatError> for ApiError {
    fn from(e: WechatError) -> Self {
        match e {
            WechatError::InvalidCode => Self::InvalidCode,
            WechatError::CodeUsed => Self::CodeUsed,
            WechatError::UserBlocked => Self::UserBlocked,
            WechatError::RateLimited => Self::WechatRateLimited,
            WechatError::BadCredentials(code) => {
                tracing::error!(
                    errcode = code,
                    "WeChat refused the AppId/AppSecret: check the configuration"
                );
                Self::WechatMisconfigured
            }
            WechatError::Busy
            | WechatError::AccessTokenInvalid(_)
            | WechatError::InvalidSignature
            | WechatError::Other(_)
            | WechatError::Timeout
            | WechatError::Connect
            | WechatError::HttpStatus(_)
            | WechatError::BadReply => Self::WechatUnavailable,
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Wechat(e) => e.into(),
            LoginError::CodeUsed => Self::CodeUsed,
            LoginError::StoreUnavailable => Self::StoreUnavailable,
            LoginError::Internal => Self::Internal,
        }
    }
}

/// The success envelope of the reference Django view: `{"status": 0, "msg": "ok", "data": ...}`.
pub fn ok<T: serde::Serialize>(data: T) -> Response {
    // Serialized straight from the typed value, not through a `serde_json::Value`.
    #[derive(serde::Serialize)]
    struct Envelope<T> {
        status: u8,
        msg: &'static str,
        data: T,
    }
    Json(Envelope {
        status: 0,
        msg: "ok",
        data,
    })
    .into_response()
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
            ApiError::RateLimited {
                retry_after_secs: 1,
            },
            ApiError::WechatRateLimited,
            ApiError::WechatUnavailable,
            ApiError::WechatMisconfigured,
            ApiError::StoreUnavailable,
            ApiError::Internal,
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
            ApiError::WechatUnavailable,
            ApiError::WechatMisconfigured,
            ApiError::StoreUnavailable,
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
