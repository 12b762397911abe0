//! Open-data decryption (WeChat's and Baidu's formats) and signatures: any strings → data or one of two errors, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wxlogin::wechat::crypto;

fuzz_target!(|input: (&str, &str, &str, &str)| {
    let (key, data, iv, raw) = input;
    let _ = crypto::decrypt(key, data, iv, Some("wxfuzz"));
    let _ = crypto::baidu::decrypt(key, data, iv, raw);
    let _ = crypto::verify_raw_data(raw, data, key);
    let _ = crypto::session_signature(key, raw);
});
