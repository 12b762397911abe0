//! WeChat open-data cryptography, as pure functions (SPEC §4.4).
//!
//! - `encryptedData`: AES-128-CBC, key = base64(session_key), iv = base64(iv), strict PKCS#7, then
//!   JSON whose `watermark.appid` must be the app's. Every failure after the input has the right
//!   shape is one and the same [`OpenDataError::DecryptFailed`], so no caller can tell a padding
//!   error from a JSON error (no padding oracle).
//! - rawData signature: hex SHA-1 of `rawData + session_key`, compared in constant time.
//! - checksession / login-state signature: hex HMAC-SHA256 keyed by the session_key's text.
//!
//! Shared openly with the simulator (which encrypts and signs with it), and pinned to WeChat's
//! published samples by the known-answer tests in `crypto/tests.rs`.

pub mod alipay;
pub mod baidu;
pub mod douyin;

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// Whether `key` is a usable phone key for an app of `platform` (an Alipay app's AES key, a
/// Douyin app's RSA private key); what is wrong if not, naming no part of the key.
pub fn check_phone_key(platform: crate::domain::Platform, key: &str) -> Result<(), &'static str> {
    use crate::domain::Platform;
    match platform {
        Platform::Alipay if alipay::aes_key(key).is_some() => Ok(()),
        Platform::Alipay => Err(
            "the Alipay AES key must be the one on Alipay's console (接口内容加密方式): base64 of 16 bytes",
        ),
        Platform::Douyin => douyin::private_key(key).map(|_| ()).map_err(|e| e.0),
        _ => Err("only Alipay (an AES key) and Douyin (a private key) apps take a phone key"),
    }
}

type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;
type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;

/// Largest `encryptedData` we try to decrypt (base64 text). Real payloads are a few KiB.
pub const MAX_ENCRYPTED_LEN: usize = 32 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenDataError {
    /// The input is not even shaped like WeChat's: say exactly what is wrong.
    #[error("{0}")]
    Malformed(&'static str),
    /// Decryption, padding, UTF-8, JSON or watermark failed. Deliberately one variant.
    #[error("could not decrypt the data with this session's session_key")]
    DecryptFailed,
}

fn b64_16(text: &str, what: &'static str) -> Result<[u8; 16], OpenDataError> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| OpenDataError::Malformed(what))?;
    bytes.try_into().map_err(|_| OpenDataError::Malformed(what))
}

/// `encryptedData`'s bytes, once its shape is right: bounded, base64, whole AES blocks (every
/// platform's format is AES-CBC).
fn ciphertext(encrypted_data: &str) -> Result<Vec<u8>, OpenDataError> {
    if encrypted_data.len() > MAX_ENCRYPTED_LEN {
        return Err(OpenDataError::Malformed("encryptedData is too large"));
    }
    let data = STANDARD
        .decode(encrypted_data.trim())
        .map_err(|_| OpenDataError::Malformed("encryptedData must be base64"))?;
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(OpenDataError::Malformed(
            "encryptedData must be a whole number of 16-byte blocks",
        ));
    }
    Ok(data)
}

/// Decrypts `encryptedData` and checks its watermark against `appid` (when given).
pub fn decrypt(
    session_key: &str,
    encrypted_data: &str,
    iv: &str,
    appid: Option<&str>,
) -> Result<serde_json::Value, OpenDataError> {
    let key = b64_16(session_key, "session_key must be base64 of 16 bytes")?;
    let iv = b64_16(iv, "iv must be base64 of 16 bytes")?;
    let data = ciphertext(encrypted_data)?;
    let plain = Aes128CbcDec::new(&key.into(), &iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(&data)
        .map_err(|_| OpenDataError::DecryptFailed)?;
    let value: serde_json::Value =
        serde_json::from_slice(&plain).map_err(|_| OpenDataError::DecryptFailed)?;
    if let Some(appid) = appid {
        if value["watermark"]["appid"].as_str() != Some(appid) {
            return Err(OpenDataError::DecryptFailed);
        }
    }
    Ok(value)
}

/// The offline tool's version of [`decrypt`]: says exactly which step failed. Only for a
/// developer's terminal — a server must not tell clients this (it would be a padding oracle).
pub fn diagnose(
    session_key: &str,
    encrypted_data: &str,
    iv: &str,
    appid: Option<&str>,
) -> Result<serde_json::Value, String> {
    match decrypt(session_key, encrypted_data, iv, None) {
        Err(OpenDataError::Malformed(why)) => return Err(why.into()),
        Err(OpenDataError::DecryptFailed) => {}
        Ok(v) => {
            let mark = v["watermark"]["appid"].as_str().unwrap_or("(none)");
            return match appid {
                Some(a) if a != mark => {
                    Err(format!("decrypted, but watermark.appid is {mark}, not {a}"))
                }
                _ => Ok(v),
            };
        }
    }
    let key = b64_16(session_key, "").map_err(|e| e.to_string())?;
    let ivb = b64_16(iv, "").map_err(|e| e.to_string())?;
    let data = STANDARD
        .decode(encrypted_data.trim())
        .map_err(|e| e.to_string())?;
    match Aes128CbcDec::new(&key.into(), &ivb.into()).decrypt_padded_vec_mut::<Pkcs7>(&data) {
        Err(_) => Err("bad PKCS#7 padding: wrong session_key (rotated by a later wx.login?) or corrupted data".into()),
        Ok(_) => Err("decrypted, but the result is not JSON: wrong iv, or corrupted data".into()),
    }
}

/// Encrypts like WeChat does (the simulator uses this to hand out test data).
pub fn encrypt(session_key: &str, plain: &[u8], iv: &[u8; 16]) -> Result<String, OpenDataError> {
    let key = b64_16(session_key, "session_key must be base64 of 16 bytes")?;
    let data = Aes128CbcEnc::new(&key.into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plain);
    Ok(STANDARD.encode(data))
}

/// `sha1(rawData + session_key)` in hex.
pub fn raw_data_signature(raw_data: &str, session_key: &str) -> String {
    let mut h = Sha1::new();
    h.update(raw_data.as_bytes());
    h.update(session_key.as_bytes());
    hex::encode(h.finalize())
}

/// Constant-time check of a client-sent rawData signature (hex, any case).
pub fn verify_raw_data(raw_data: &str, signature: &str, session_key: &str) -> bool {
    let expected = raw_data_signature(raw_data, session_key);
    let given = signature.trim().to_ascii_lowercase();
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// The signature `checksession` wants: hex HMAC-SHA256 keyed by the session_key text, over `body`
/// (the empty string for checksession).
pub fn session_signature(session_key: &str, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(session_key.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests;
