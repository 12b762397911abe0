//! Request bodies: any content type, any bytes → a typed body or our `bad_request`, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[derive(serde::Deserialize)]
struct Body {
    code: Option<String>,
    appid: Option<String>,
    #[serde(rename = "encryptedData")]
    encrypted_data: Option<String>,
    iv: Option<String>,
}

fuzz_target!(|input: (u8, &[u8])| {
    let content_type = ["application/json", "application/x-www-form-urlencoded", "", "text/plain", "application/xml"]
        [input.0 as usize % 5];
    let _ = wxlogin::routes::decode_body::<Body>(content_type, input.1);
});
