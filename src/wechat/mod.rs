//! WeChat's server API as seen from our side: error codes ([`errors`]), reply bodies
//! ([`replies`]), the HTTP client ([`client`]) and open-data cryptography ([`crypto`], pure
//! functions). The simulator (`simulator/`) uses `crypto` too, openly: it must produce what
//! this client reads, and both follow WeChat's published samples (the known-answer tests).
//! Depends on the domain types and the metrics recorder only.

pub mod alipay;
mod client;
pub mod crypto;
mod errors;
mod replies;

pub use client::{ApiBases, WechatClient};
pub use errors::WechatError;
pub use replies::{
    parse_alipay_oauth_token, parse_baidu_code2session, parse_code2session,
    parse_douyin_code2session, parse_douyin_phone, parse_douyin_token, parse_kuaishou_code2session,
    parse_platform_token, parse_qq_code2session, AccessToken, Code2Session, PhoneInfo,
};
