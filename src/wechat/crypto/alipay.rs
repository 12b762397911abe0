//! Alipay's phone number (`my.getPhoneNumber`, SPEC §7): the mini program gets `res.response`, a
//! JSON string `{"response": <base64 ciphertext>, "sign", "sign_type": "RSA2", "encrypt_type":
//! "AES", "charset"}`. The signature is RSA2 by Alipay's key over the ciphertext as it stands in
//! the JSON, quotes included (`"\"" + response + "\""`); the ciphertext is AES-128-CBC with a
//! zero IV and PKCS#7 under the app's content-encryption key (接口内容加密方式, base64 of 16
//! bytes, from Alipay's console); the plaintext is `{"code": "10000", "msg", "mobile"}`, or an
//! error with `subCode`/`subMsg`. Sources: Alipay's open-docs `my.getPhoneNumber.md` and its
//! server-side decryption guide (docs/platforms-research/douyin-alipay.md §2.6).
//!
//! We take only signed, encrypted messages (an unsigned one could come from anyone). A
//! well-shaped message whose signature is not Alipay's is [`AlipayPhoneError::Failed`]. One
//! that is Alipay's but does not open (key, padding, UTF-8, JSON) is
//! [`AlipayPhoneError::Unopened`]: the ciphertext is authentic, so the app's AES key is not the
//! one on Alipay's console — ours to fix, and no oracle (no one else can make a ciphertext
//! that passes the signature).

use super::MAX_ENCRYPTED_LEN;
use crate::wechat::alipay;
use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::signature::RsaKeyPair;
use serde::Deserialize;

type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;
type Aes128CbcEnc = cbc::Encryptor<aes::Aes128>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlipayPhoneError {
    /// Not `my.getPhoneNumber`'s message: say exactly what is wrong.
    #[error("{0}")]
    Malformed(&'static str),
    /// The signature is not Alipay's (another key, or a changed message).
    #[error("the phone number is not signed by Alipay's key")]
    Failed,
    /// Alipay's message that this app's AES key does not open.
    #[error("Alipay's message does not open with this app's AES key")]
    Unopened,
    /// Alipay answered with an error instead of a number (its `subCode`, e.g.
    /// `isv.invalid-auth-relations`).
    #[error("Alipay gave no phone number: {0}")]
    Refused(String),
}

#[derive(Deserialize)]
struct Message {
    response: serde_json::Value,
    sign: Option<String>,
    sign_type: Option<String>,
    encrypt_type: Option<String>,
}

#[derive(Deserialize)]
struct Plain {
    code: Option<String>,
    mobile: Option<String>,
    #[serde(rename = "subCode")]
    sub_code: Option<String>,
}

/// The AES key as the console shows it: base64 of 16 bytes. Checked when an app is configured.
pub fn aes_key(text: &str) -> Option<[u8; 16]> {
    STANDARD.decode(text.trim()).ok()?.try_into().ok()
}

/// The member's phone number from `my.getPhoneNumber`'s `response` string, verified with
/// Alipay's public key (RSAPublicKey bytes) and decrypted with the app's AES key.
pub fn open_phone(
    message: &str,
    alipay_public_key: &[u8],
    aes_key_text: &str,
) -> Result<String, AlipayPhoneError> {
    use AlipayPhoneError::{Failed, Malformed, Unopened};
    if message.len() > MAX_ENCRYPTED_LEN {
        return Err(Malformed("response is too large"));
    }
    let m: Message = serde_json::from_str(message)
        .map_err(|_| Malformed("response must be my.getPhoneNumber's res.response, as it is"))?;
    let serde_json::Value::String(ciphertext) = m.response else {
        return Err(Malformed(
            "the phone number is not encrypted: set the app's AES key (接口内容加密方式) on Alipay's console",
        ));
    };
    let sign = m.sign.filter(|s| !s.is_empty()).ok_or(Malformed(
        "the response is not signed: configure the app's keys on Alipay's console",
    ))?;
    if m.sign_type.as_deref().is_some_and(|t| t != "RSA2") {
        return Err(Malformed("sign_type must be RSA2"));
    }
    if m.encrypt_type.as_deref().is_some_and(|t| t != "AES") {
        return Err(Malformed("encrypt_type must be AES"));
    }
    let data = STANDARD
        .decode(ciphertext.as_bytes())
        .map_err(|_| Malformed("response.response must be base64"))?;
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(Malformed(
            "response.response must be a whole number of 16-byte blocks",
        ));
    }
    // The signed content is the JSON string as Alipay wrote it; a base64 text has nothing JSON
    // would escape, so it is the ciphertext between quotes.
    let signed = format!("\"{ciphertext}\"");
    if !alipay::verify(alipay_public_key, signed.as_bytes(), &sign) {
        return Err(Failed);
    }
    let key = aes_key(aes_key_text).ok_or(Unopened)?;
    let plain = Aes128CbcDec::new(&key.into(), &[0u8; 16].into())
        .decrypt_padded_vec_mut::<Pkcs7>(&data)
        .map_err(|_| Unopened)?;
    let plain: Plain = serde_json::from_slice(&plain).map_err(|_| Unopened)?;
    match (plain.code.as_deref(), plain.mobile) {
        (Some("10000"), Some(mobile)) if valid_mobile(&mobile) => Ok(mobile),
        (Some("10000"), _) => Err(Unopened),
        (_, _) => Err(AlipayPhoneError::Refused(
            plain.sub_code.unwrap_or_else(|| "unknown".into()),
        )),
    }
}

/// A mainland number as Alipay gives it: digits only, at most 20.
fn valid_mobile(mobile: &str) -> bool {
    (5..=20).contains(&mobile.len()) && mobile.bytes().all(|b| b.is_ascii_digit())
}

/// Alipay's side, for the simulator: `plain` (the JSON Alipay encrypts) sealed under the app's
/// AES key and signed with Alipay's key, as `my.getPhoneNumber`'s `response` string.
pub fn seal_phone(alipay_key: &RsaKeyPair, aes_key_text: &str, plain: &str) -> Option<String> {
    let key = aes_key(aes_key_text)?;
    let data = Aes128CbcEnc::new(&key.into(), &[0u8; 16].into())
        .encrypt_padded_vec_mut::<Pkcs7>(plain.as_bytes());
    let ciphertext = STANDARD.encode(data);
    let sign = alipay::sign(alipay_key, format!("\"{ciphertext}\"").as_bytes());
    Some(
        serde_json::json!({
            "response": ciphertext,
            "sign": sign,
            "sign_type": "RSA2",
            "encrypt_type": "AES",
            "charset": "UTF-8",
        })
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const APP_AES_KEY: &str = "AAECAwQFBgcICQoLDA0ODw==";

    fn keys() -> (RsaKeyPair, Vec<u8>) {
        let pem = include_str!("../../../tests/fixtures/alipay/app_private_pkcs8.pem");
        let key = alipay::private_key(pem).unwrap();
        let public = ring::signature::KeyPair::public_key(&key).as_ref().to_vec();
        (key, public)
    }

    #[test]
    fn a_sealed_number_opens_and_every_tampering_is_the_one_failure() {
        let (key, public) = keys();
        let plain = r#"{"code":"10000","msg":"Success","mobile":"15976719050"}"#;
        let message = seal_phone(&key, APP_AES_KEY, plain).unwrap();
        assert_eq!(
            open_phone(&message, &public, APP_AES_KEY).as_deref(),
            Ok("15976719050")
        );
        // Another AES key: Alipay's message, not ours to open. A changed signature or
        // ciphertext: not Alipay's.
        assert_eq!(
            open_phone(&message, &public, "AQECAwQFBgcICQoLDA0ODw=="),
            Err(AlipayPhoneError::Unopened)
        );
        let mut m: serde_json::Value = serde_json::from_str(&message).unwrap();
        let sign = m["sign"].as_str().unwrap().to_owned();
        m["sign"] = format!("A{}", &sign[1..]).into();
        assert_eq!(
            open_phone(&m.to_string(), &public, APP_AES_KEY),
            Err(AlipayPhoneError::Failed)
        );
        let other = seal_phone(&key, APP_AES_KEY, r#"{"code":"10000","mobile":"1"}"#).unwrap();
        let other: serde_json::Value = serde_json::from_str(&other).unwrap();
        m["sign"] = sign.into();
        m["response"] = other["response"].clone();
        assert_eq!(
            open_phone(&m.to_string(), &public, APP_AES_KEY),
            Err(AlipayPhoneError::Failed)
        );
    }

    #[test]
    fn alipays_refusal_says_its_sub_code_and_bad_shapes_say_what_is_wrong() {
        let (key, public) = keys();
        let refused = seal_phone(
            &key,
            APP_AES_KEY,
            r#"{"code":"40003","msg":"Insufficient Conditions","subCode":"isv.invalid-auth-relations","subMsg":"无效的授权关系"}"#,
        )
        .unwrap();
        assert_eq!(
            open_phone(&refused, &public, APP_AES_KEY),
            Err(AlipayPhoneError::Refused(
                "isv.invalid-auth-relations".into()
            ))
        );
        for (bad, why) in [
            ("not json", "res.response"),
            (
                r#"{"response":{"code":"10000"},"sign":"x"}"#,
                "not encrypted",
            ),
            (r#"{"response":"AAAA"}"#, "not signed"),
            (
                r#"{"response":"AAAA","sign":"x","sign_type":"RSA"}"#,
                "RSA2",
            ),
            (r#"{"response":"AAAA","sign":"x"}"#, "16-byte blocks"),
            (r#"{"response":"@@","sign":"x"}"#, "base64"),
        ] {
            match open_phone(bad, &public, APP_AES_KEY) {
                Err(AlipayPhoneError::Malformed(m)) => assert!(m.contains(why), "{bad}: {m}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    proptest! {
        /// Whatever the message, no panic, and a well-shaped one that is not Alipay's is the
        /// one failure.
        #[test]
        fn never_panics(text in ".{0,400}", blocks in proptest::collection::vec(any::<u8>(), 16..80)) {
            let (_, public) = keys();
            let _ = open_phone(&text, &public, APP_AES_KEY);
            let n = blocks.len() / 16 * 16;
            let message = serde_json::json!({
                "response": STANDARD.encode(&blocks[..n]),
                "sign": STANDARD.encode([7u8; 256]),
            });
            prop_assert_eq!(
                open_phone(&message.to_string(), &public, APP_AES_KEY),
                Err(AlipayPhoneError::Failed)
            );
        }
    }
}
