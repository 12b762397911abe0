//! WeChat's, QQ's, Douyin's, Baidu's, Kuaishou's and Alipay's login replies (and Douyin's token
//! and phone replies): any body → a session or a typed error, never a panic, and never a session
//! without an openid (on Alipay, never one without Alipay's signature).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let alipay = wxlogin::wechat::alipay::public_key(&wxlogin::simulator::alipay_public_key())
        .expect("the simulator's key");
    for parsed in [
        wxlogin::wechat::parse_code2session(body),
        wxlogin::wechat::parse_qq_code2session(body),
        wxlogin::wechat::parse_douyin_code2session(body),
        wxlogin::wechat::parse_baidu_code2session(body),
        wxlogin::wechat::parse_kuaishou_code2session(body),
        wxlogin::wechat::parse_alipay_oauth_token(body, &alipay),
    ] {
        if let Ok(session) = parsed {
            assert!(!session.openid.0.is_empty());
        }
    }
    if let Ok(data) = wxlogin::wechat::parse_douyin_phone(body) {
        assert!(!data.is_empty());
    }
    if let Ok(token) = wxlogin::wechat::parse_douyin_token(body) {
        assert!(!token.token.is_empty());
    }
});
