//! Douyin's phone number, the newer way (`getPhoneNumber` button code → `get_phonenumber_info`,
//! SPEC §7): Douyin answers with the number encrypted under the public key the developer
//! uploaded to its console — RSA with PKCS#1 v1.5 padding, base64, one 2048-bit block for a
//! number (longer plaintexts in consecutive blocks) — and the server opens it with the app's
//! private key. The plaintext is the older format's JSON: `{phoneNumber, purePhoneNumber,
//! countryCode, watermark: {appid, timestamp}}`; the watermark must be the app's.
//!
//! Douyin's page says only "RSA"; PKCS#1 v1.5 is what every SDK we found decrypts with
//! (docs/platforms-research/douyin-alipay.md §1.4). RSA private-key operations are aws-lc-rs's
//! (AWS-LC: constant-time, and its PKCS#1 v1.5 decryption checks the padding without branching
//! on it), not the `rsa` crate's, which RUSTSEC-2023-0071 (Marvin) is about. Every failure after
//! the input is base64 of whole blocks is the one [`OpenDataError::DecryptFailed`].

use super::{OpenDataError, MAX_ENCRYPTED_LEN};
use crate::wechat::alipay::{der_item, pem_or_base64, KeyError};
use crate::wechat::PhoneInfo;
use aws_lc_rs::rsa::{
    Pkcs1PrivateDecryptingKey, Pkcs1PublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// The app's private key: PEM (`PRIVATE KEY`, PKCS#8, or `RSA PRIVATE KEY`, PKCS#1) or the bare
/// base64 of either.
pub fn private_key(text: &str) -> Result<Pkcs1PrivateDecryptingKey, KeyError> {
    let der = pem_or_base64(text).ok_or(KeyError(
        "the app's private key must be PEM or base64 (PKCS#8 or PKCS#1)",
    ))?;
    let key = PrivateDecryptingKey::from_pkcs8(&der)
        .or_else(|_| PrivateDecryptingKey::from_pkcs8(&pkcs1_as_pkcs8(&der)))
        .map_err(|_| {
            KeyError("the app's private key is not an RSA private key of 2048 to 8192 bits (PKCS#8 or PKCS#1)")
        })?;
    Pkcs1PrivateDecryptingKey::new(key)
        .map_err(|_| KeyError("the app's private key is not usable for RSA decryption"))
}

/// PKCS#1 `RSAPrivateKey` DER wrapped as PKCS#8 `PrivateKeyInfo`.
fn pkcs1_as_pkcs8(rsa: &[u8]) -> Vec<u8> {
    // SEQUENCE { INTEGER 0, SEQUENCE { rsaEncryption, NULL }, OCTET STRING { RSAPrivateKey } }
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(&[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ]);
    body.extend(der_item(0x04, rsa));
    der_item(0x30, &body)
}

/// Opens `data` (base64) with the app's key and checks the watermark against `appid`.
pub fn open_phone(
    data: &str,
    key: &Pkcs1PrivateDecryptingKey,
    appid: &str,
) -> Result<PhoneInfo, OpenDataError> {
    if data.len() > MAX_ENCRYPTED_LEN {
        return Err(OpenDataError::Malformed("the phone data is too large"));
    }
    let sealed = STANDARD
        .decode(data.trim())
        .map_err(|_| OpenDataError::Malformed("the phone data must be base64"))?;
    let block = key.key_size_bytes();
    if sealed.is_empty() || sealed.len() % block != 0 {
        return Err(OpenDataError::Malformed(
            "the phone data must be whole RSA blocks of the app's key",
        ));
    }
    let mut plain = Vec::with_capacity(sealed.len());
    let mut out = vec![0u8; key.min_output_size()];
    for chunk in sealed.chunks(block) {
        let opened = key
            .decrypt(chunk, &mut out)
            .map_err(|_| OpenDataError::DecryptFailed)?;
        plain.extend_from_slice(opened);
    }
    let value: serde_json::Value =
        serde_json::from_slice(&plain).map_err(|_| OpenDataError::DecryptFailed)?;
    if value["watermark"]["appid"].as_str() != Some(appid) {
        return Err(OpenDataError::DecryptFailed);
    }
    serde_json::from_value(value).map_err(|_| OpenDataError::DecryptFailed)
}

/// Douyin's side, for the simulator: `plain` encrypted under the app's public key (from its
/// private key, as the simulator is given it), in blocks, base64.
pub fn seal_phone(public: &PublicEncryptingKey, plain: &[u8]) -> Option<String> {
    let key = Pkcs1PublicEncryptingKey::new(public.clone()).ok()?;
    let mut sealed = Vec::new();
    let mut out = vec![0u8; key.ciphertext_size()];
    for chunk in plain.chunks(key.max_plaintext_size()) {
        sealed.extend_from_slice(key.encrypt(chunk, &mut out).ok()?);
    }
    Some(STANDARD.encode(sealed))
}

/// The public half of the app's private key (what the developer uploads to Douyin's console).
pub fn public_key_of(private_key_text: &str) -> Option<PublicEncryptingKey> {
    let der = pem_or_base64(private_key_text)?;
    let key = PrivateDecryptingKey::from_pkcs8(&der)
        .or_else(|_| PrivateDecryptingKey::from_pkcs8(&pkcs1_as_pkcs8(&der)))
        .ok()?;
    Some(key.public_key())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PKCS1: &str = include_str!("../../../tests/fixtures/alipay/app_private_pkcs1.pem");
    const PKCS8: &str = include_str!("../../../tests/fixtures/alipay/app_private_pkcs8.pem");

    fn phone_json(appid: &str) -> String {
        format!(
            r#"{{"phoneNumber":"+8613800138000","purePhoneNumber":"13800138000","countryCode":"86","watermark":{{"appid":"{appid}","timestamp":1700000000}}}}"#
        )
    }

    #[test]
    fn both_key_encodings_open_what_the_public_half_sealed_and_the_watermark_is_checked() {
        let public = public_key_of(PKCS8).unwrap();
        let sealed = seal_phone(&public, phone_json("tt01").as_bytes()).unwrap();
        for text in [PKCS1, PKCS8] {
            let key = private_key(text).unwrap();
            let info = open_phone(&sealed, &key, "tt01").unwrap();
            assert_eq!(
                (info.pure_phone_number.as_str(), info.country_code.as_str()),
                ("13800138000", "86")
            );
            assert_eq!(
                open_phone(&sealed, &key, "tt02").unwrap_err(),
                OpenDataError::DecryptFailed
            );
        }
        // More than one block (a long plaintext): concatenated blocks.
        let long = format!(
            r#"{{"phoneNumber":"1","purePhoneNumber":"1","countryCode":86,"pad":"{}","watermark":{{"appid":"tt01"}}}}"#,
            "x".repeat(400)
        );
        let sealed = seal_phone(&public, long.as_bytes()).unwrap();
        assert_eq!(STANDARD.decode(&sealed).unwrap().len(), 3 * 256);
        let info = open_phone(&sealed, &private_key(PKCS8).unwrap(), "tt01").unwrap();
        assert_eq!(info.country_code, "86");
    }

    #[test]
    fn keys_that_are_not_rsa_private_keys_are_refused_naming_nothing_secret() {
        for bad in [
            "",
            "not a key",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        ] {
            assert!(private_key(bad).is_err(), "{bad}");
        }
        let public = include_str!("../../../tests/fixtures/alipay/app_public.pem");
        assert!(private_key(public).is_err());
    }

    #[test]
    fn shapes_are_named_and_another_keys_data_is_the_one_failure() {
        let key = private_key(PKCS8).unwrap();
        for (bad, why) in [
            ("@@", "base64"),
            ("AAAA", "whole RSA blocks"),
            ("", "whole RSA blocks"),
        ] {
            match open_phone(bad, &key, "tt01") {
                Err(OpenDataError::Malformed(m)) => assert!(m.contains(why), "{bad}: {m}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        // Sealed for the key the simulator signs Alipay's replies with: not this app's.
        let other = public_key_of(include_str!("../../simulator/alipay_key.pem")).unwrap();
        let sealed = seal_phone(&other, phone_json("tt01").as_bytes()).unwrap();
        assert_eq!(
            open_phone(&sealed, &key, "tt01").unwrap_err(),
            OpenDataError::DecryptFailed
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any block-sized bytes: the one failure (a random block is almost never valid
        /// padding, and never the app's watermark), never a panic.
        #[test]
        fn random_blocks_fail_uniformly(bytes in proptest::collection::vec(any::<u8>(), 256)) {
            let key = private_key(PKCS8).unwrap();
            prop_assert_eq!(
                open_phone(&STANDARD.encode(&bytes), &key, "tt01").unwrap_err(),
                OpenDataError::DecryptFailed
            );
        }
    }
}
