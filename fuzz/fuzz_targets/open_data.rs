//! Open-data decryption (WeChat's and Baidu's formats, Alipay's and Douyin's phone messages) and
//! signatures: any strings → data or one of its errors, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use wxlogin::wechat::{alipay, crypto};

/// Alipay's (the simulator's) public key, parsed once.
fn alipay_public_key() -> &'static [u8] {
    static KEY: OnceLock<Vec<u8>> = OnceLock::new();
    KEY.get_or_init(|| alipay::public_key(&wxlogin::simulator::alipay_public_key()).unwrap())
}

/// A Douyin app's private key (the simulator's test app's), parsed once.
fn douyin_key() -> &'static aws_lc_rs::rsa::Pkcs1PrivateDecryptingKey {
    static KEY: OnceLock<aws_lc_rs::rsa::Pkcs1PrivateDecryptingKey> = OnceLock::new();
    KEY.get_or_init(|| {
        crypto::douyin::private_key(wxlogin::simulator::DEV_DOUYIN_PRIVATE_KEY).unwrap()
    })
}

fuzz_target!(|input: (&str, &str, &str, &str)| {
    let (key, data, iv, raw) = input;
    let _ = crypto::decrypt(key, data, iv, Some("wxfuzz"));
    let _ = crypto::baidu::decrypt(key, data, iv, raw);
    let _ = crypto::alipay::open_phone(data, alipay_public_key(), key);
    let _ = crypto::douyin::open_phone(data, douyin_key(), raw);
    let _ = crypto::verify_raw_data(raw, data, key);
    let _ = crypto::session_signature(key, raw);
});
