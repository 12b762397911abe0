//! WeChat's error codes as types. WeChat answers most errors as HTTP 200 with an `errcode`;
//! [`WechatError`] names the ones we act on and carries no URL, secret or code.

/// What WeChat said or failed to say.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WechatError {
    #[error("WeChat rejected the code (40029)")]
    InvalidCode,
    #[error("the code was already used (40163)")]
    CodeUsed,
    #[error("WeChat blocked this user as high-risk (40226)")]
    UserBlocked,
    #[error("WeChat rate limit reached (45011)")]
    RateLimited,
    #[error("WeChat is busy (-1)")]
    Busy,
    #[error("WeChat refused the app credentials (errcode {0}): check the AppId and AppSecret")]
    BadCredentials(i64),
    #[error("WeChat rejected the access_token (errcode {0})")]
    AccessTokenInvalid(i64),
    #[error("WeChat says the session signature is invalid (87009)")]
    InvalidSignature,
    #[error("WeChat answered errcode {0}")]
    Other(i64),
    #[error("WeChat did not answer in time")]
    Timeout,
    #[error("could not connect to WeChat")]
    Connect,
    #[error("WeChat answered HTTP {0}")]
    HttpStatus(u16),
    #[error("WeChat's reply could not be read")]
    BadReply,
    /// The platform's signature on its reply did not verify (Alipay): never believed.
    #[error("the platform's reply is not signed by its key")]
    BadSignature,
}

impl WechatError {
    pub fn from_errcode(code: i64) -> Self {
        match code {
            40029 => Self::InvalidCode,
            40163 => Self::CodeUsed,
            40226 => Self::UserBlocked,
            45011 => Self::RateLimited,
            -1 => Self::Busy,
            40013 | 40125 | 41002 | 41004 | 40164 => Self::BadCredentials(code),
            40001 | 40014 | 42001 => Self::AccessTokenInvalid(code),
            87009 => Self::InvalidSignature,
            other => Self::Other(other),
        }
    }

    /// QQ's errcodes for its `jscode2session` (WeChat-shaped replies; its documentation lists
    /// -1 busy, 40029 invalid code and 45011 rate limit for this API, and 40001 bad secret,
    /// 40002 bad grant_type and 40013 bad appid for its getToken). An unknown code is `Other`:
    /// a 503 that keeps the client's retry, never a 401.
    pub fn from_qq_errcode(code: i64) -> Self {
        match code {
            40029 => Self::InvalidCode,
            40163 => Self::CodeUsed,
            45011 => Self::RateLimited,
            -1 => Self::Busy,
            40001 | 40002 | 40013 | 40125 => Self::BadCredentials(code),
            other => Self::Other(other),
        }
    }

    /// A stable label for logs and metrics.
    pub fn errcode_label(&self) -> String {
        match self {
            Self::InvalidCode => "40029".into(),
            Self::CodeUsed => "40163".into(),
            Self::UserBlocked => "40226".into(),
            Self::RateLimited => "45011".into(),
            Self::Busy => "-1".into(),
            Self::InvalidSignature => "87009".into(),
            Self::BadCredentials(c) | Self::AccessTokenInvalid(c) | Self::Other(c) => c.to_string(),
            Self::Timeout => "timeout".into(),
            Self::Connect => "connect".into(),
            Self::HttpStatus(s) => format!("http_{s}"),
            Self::BadReply => "bad_reply".into(),
            Self::BadSignature => "bad_signature".into(),
        }
    }

    /// Worth one more try: WeChat said "busy", or we never reached it.
    pub(super) fn retryable(&self) -> bool {
        matches!(self, Self::Busy | Self::Connect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes_map_to_types() {
        assert_eq!(WechatError::from_errcode(40029), WechatError::InvalidCode);
        assert_eq!(WechatError::from_errcode(40163), WechatError::CodeUsed);
        assert_eq!(WechatError::from_errcode(40226), WechatError::UserBlocked);
        assert_eq!(WechatError::from_errcode(45011), WechatError::RateLimited);
        assert_eq!(WechatError::from_errcode(-1), WechatError::Busy);
        assert_eq!(
            WechatError::from_errcode(40013),
            WechatError::BadCredentials(40013)
        );
        assert_eq!(
            WechatError::from_errcode(40125),
            WechatError::BadCredentials(40125)
        );
        assert_eq!(WechatError::from_errcode(12345), WechatError::Other(12345));
    }

    #[test]
    fn qq_errcodes_map_to_types() {
        assert_eq!(
            WechatError::from_qq_errcode(40029),
            WechatError::InvalidCode
        );
        assert_eq!(
            WechatError::from_qq_errcode(45011),
            WechatError::RateLimited
        );
        assert_eq!(WechatError::from_qq_errcode(-1), WechatError::Busy);
        // On QQ, 40001 is a wrong AppSecret, not a stale access_token.
        assert_eq!(
            WechatError::from_qq_errcode(40001),
            WechatError::BadCredentials(40001)
        );
        assert_eq!(
            WechatError::from_qq_errcode(-1009),
            WechatError::Other(-1009)
        );
    }

    #[test]
    fn only_busy_and_connect_failures_are_retried() {
        assert!(WechatError::Busy.retryable());
        assert!(WechatError::Connect.retryable());
        for e in [
            WechatError::Timeout,
            WechatError::InvalidCode,
            WechatError::HttpStatus(500),
            WechatError::BadReply,
        ] {
            assert!(!e.retryable(), "{e:?}");
        }
    }
}
