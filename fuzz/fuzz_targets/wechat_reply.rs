//! WeChat's replies: any body → a session or a typed error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let _ = wxlogin::wechat::parse_code2session(body);
});
