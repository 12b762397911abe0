//! WeChat's, QQ's, Douyin's, Baidu's, Kuaishou's and Alipay's login replies, the platforms'
//! token replies and Douyin's phone reply: any body → a session, a token or a typed error,
//! never a panic, and never a session without an openid (on Alipay, never one without
//! Alipay's signature) or an empty token.
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
    let platform_tokens = wxlogin::wechat::parse_platform_token(body);
    for token in std::iter::once(wxlogin::wechat::parse_douyin_token(body)).chain(platform_tokens) {
        if let Ok(token) = token {
            assert!(!token.token.is_empty());
        }
    }
});
