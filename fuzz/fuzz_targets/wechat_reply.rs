//! WeChat's, QQ's, Douyin's, Baidu's and Kuaishou's login replies: any body → a session or a typed
//! error, never a panic, and never a session without an openid.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    for parsed in [
        wxlogin::wechat::parse_code2session(body),
        wxlogin::wechat::parse_qq_code2session(body),
        wxlogin::wechat::parse_douyin_code2session(body),
        wxlogin::wechat::parse_baidu_code2session(body),
        wxlogin::wechat::parse_kuaishou_code2session(body),
    ] {
        if let Ok(session) = parsed {
            assert!(!session.openid.0.is_empty());
        }
    }
});
