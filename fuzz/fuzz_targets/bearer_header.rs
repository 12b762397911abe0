//! The token headers: any header bytes → a parsed token or nothing, never a panic.
#![no_main]
use axum::http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (bool, &[u8])| {
    let Ok(value) = HeaderValue::from_bytes(input.1) else { return };
    let mut headers = HeaderMap::new();
    headers.insert(if input.0 { "authorization" } else { "token" }, value);
    if let Some(text) = wxlogin::routes::token_text(&headers) {
        if let Some(token) = wxlogin::domain::SessionToken::parse(text) {
            assert!(token.expose().starts_with("wxl_"));
            let _ = token.hash();
        }
    }
});
