//! Baidu smart programs' open data (SPEC §7): AES-192-CBC, key = base64(session_key) (24 bytes),
//! iv = base64(iv) (16 bytes). The plaintext is 16 random bytes, a 4-byte big-endian length N,
//! N bytes of JSON, then the app's AppKey, padded PKCS#7-style to a multiple of 32 bytes (a pad of
//! 1 to 32 bytes, each holding the pad's length): not AES's 16, so no stock unpadder takes it.
//! There is no watermark: the AppKey suffix says whose data it is.
//!
//! As for WeChat's format, every failure once the input is well shaped is the one
//! [`OpenDataError::DecryptFailed`] (a wrong key, a bad pad, a length past the end, another app's
//! key, JSON that is not), so a caller learns nothing it could use as an oracle. Pinned to Baidu's
//! documented sample by the known-answer test below.

use super::OpenDataError;
use aes::cipher::{block_padding::NoPadding, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use subtle::ConstantTimeEq;

type Aes192CbcDec = cbc::Decryptor<aes::Aes192>;
type Aes192CbcEnc = cbc::Encryptor<aes::Aes192>;

/// Baidu pads to this many bytes.
const PAD_BLOCK: usize = 32;

fn b64_exact<const N: usize>(text: &str, what: &'static str) -> Result<[u8; N], OpenDataError> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| OpenDataError::Malformed(what))?;
    bytes.try_into().map_err(|_| OpenDataError::Malformed(what))
}

/// Decrypts Baidu open data and checks that it ends with `app_key` (the app's AppKey).
pub fn decrypt(
    session_key: &str,
    encrypted_data: &str,
    iv: &str,
    app_key: &str,
) -> Result<serde_json::Value, OpenDataError> {
    let key = b64_exact::<24>(session_key, "session_key must be base64 of 24 bytes")?;
    let iv = b64_exact::<16>(iv, "iv must be base64 of 16 bytes")?;
    let data = super::ciphertext(encrypted_data)?;
    let plain = Aes192CbcDec::new(&key.into(), &iv.into())
        .decrypt_padded_vec_mut::<NoPadding>(&data)
        .map_err(|_| OpenDataError::DecryptFailed)?;
    let json = unframe(&plain, app_key.as_bytes()).ok_or(OpenDataError::DecryptFailed)?;
    serde_json::from_slice(json).map_err(|_| OpenDataError::DecryptFailed)
}

/// The JSON inside a decrypted plaintext: pad checked and removed, the random prefix skipped,
/// the length read and bounded, the AppKey suffix compared in constant time.
fn unframe<'a>(plain: &'a [u8], app_key: &[u8]) -> Option<&'a [u8]> {
    let pad = usize::from(*plain.last()?);
    if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
        return None;
    }
    let (body, padding) = plain.split_at(plain.len() - pad);
    if padding.iter().any(|&b| usize::from(b) != pad) {
        return None;
    }
    let length = body.get(16..20)?;
    let n = usize::try_from(u32::from_be_bytes(length.try_into().ok()?)).ok()?;
    let end = 20usize.checked_add(n)?;
    let json = body.get(20..end)?;
    let suffix = body.get(end..)?;
    if suffix.len() != app_key.len() || !bool::from(suffix.ct_eq(app_key)) {
        return None;
    }
    Some(json)
}

/// Encrypts as Baidu does (the simulator hands out test data with it): `random` is the 16-byte
/// prefix.
pub fn encrypt(
    session_key: &str,
    json: &[u8],
    app_key: &str,
    iv: &[u8; 16],
    random: &[u8; 16],
) -> Result<String, OpenDataError> {
    let key = b64_exact::<24>(session_key, "session_key must be base64 of 24 bytes")?;
    let n = u32::try_from(json.len()).map_err(|_| OpenDataError::Malformed("too long"))?;
    let mut plain = Vec::with_capacity(20 + json.len() + app_key.len() + PAD_BLOCK);
    plain.extend_from_slice(random);
    plain.extend_from_slice(&n.to_be_bytes());
    plain.extend_from_slice(json);
    plain.extend_from_slice(app_key.as_bytes());
    let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
    plain.resize(plain.len() + pad, pad as u8);
    let data =
        Aes192CbcEnc::new(&key.into(), iv.into()).encrypt_padded_vec_mut::<NoPadding>(&plain);
    Ok(STANDARD.encode(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Baidu's documented sample (smartprogram.baidu.com, develop/api/open/log_userdata; the PHP
    // sample in swan-team/swan-docs program-docs/docs/develop/api/open/log_userdata.md).
    const APP_KEY: &str = "y2dTfnWfkx2OXttMEMWlGHoB1KzMogm7";
    const KEY: &str = "1df09d0a1677dd72b8325aec59576e0c";
    const IV: &str = "1df09d0a1677dd72b8325Q==";
    const DATA: &str = "OpCoJgs7RrVgaMNDixIvaCIyV2SFDBNLivgkVqtzq2GC10egsn+PKmQ/+5q+chT8xzldLUog2haTItyIkKyvzvmXonBQLIMeq54axAu9c3KG8IhpFD6+ymHocmx07ZKi7eED3t0KyIxJgRNSDkFk5RV1ZP2mSWa7ZgCXXcAbP0RsiUcvhcJfrSwlpsm0E1YJzKpYy429xrEEGvK+gfL+Cw==";

    #[test]
    fn baidus_documented_sample_decrypts() {
        let v = decrypt(KEY, DATA, IV, APP_KEY).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"openid": "open_id", "nickname": "baidu_user", "headimgurl": "url of image", "sex": 1})
        );
        // Its pad is 28 bytes: more than AES's block, as only a 32-byte pad range allows.
        let key: [u8; 24] = STANDARD.decode(KEY).unwrap().try_into().unwrap();
        let iv: [u8; 16] = STANDARD.decode(IV).unwrap().try_into().unwrap();
        let plain = Aes192CbcDec::new(&key.into(), &iv.into())
            .decrypt_padded_vec_mut::<NoPadding>(&STANDARD.decode(DATA).unwrap())
            .unwrap();
        assert_eq!(plain.last(), Some(&28));
    }

    #[test]
    fn another_apps_key_a_short_length_or_a_length_past_the_end_is_the_one_failure() {
        assert_eq!(
            decrypt(KEY, DATA, IV, "another-app-key-0000000000000000"),
            Err(OpenDataError::DecryptFailed)
        );
        let (iv, random) = ([7u8; 16], [9u8; 16]);
        let json = br#"{"openid":"o"}"#;
        let framed = |n: u32, tail: &[u8]| {
            let key: [u8; 24] = STANDARD.decode(KEY).unwrap().try_into().unwrap();
            let mut plain = random.to_vec();
            plain.extend_from_slice(&n.to_be_bytes());
            plain.extend_from_slice(json);
            plain.extend_from_slice(tail);
            let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
            plain.resize(plain.len() + pad, pad as u8);
            STANDARD.encode(
                Aes192CbcEnc::new(&key.into(), (&iv).into())
                    .encrypt_padded_vec_mut::<NoPadding>(&plain),
            )
        };
        let iv_text = STANDARD.encode(iv);
        let good = framed(json.len() as u32, APP_KEY.as_bytes());
        assert!(decrypt(KEY, &good, &iv_text, APP_KEY).is_ok());
        for bad in [
            framed(json.len() as u32 - 1, APP_KEY.as_bytes()),
            framed(u32::MAX, APP_KEY.as_bytes()),
            framed(json.len() as u32, b"y2dTfnWfkx2OXttMEMWlGHoB1KzMogm"),
            framed(json.len() as u32, b""),
        ] {
            assert_eq!(
                decrypt(KEY, &bad, &iv_text, APP_KEY),
                Err(OpenDataError::DecryptFailed)
            );
        }
        // Shorter than the random prefix and the length field.
        let key: [u8; 24] = STANDARD.decode(KEY).unwrap().try_into().unwrap();
        let mut tiny = vec![1u8; 31];
        tiny.push(1);
        let tiny = STANDARD.encode(
            Aes192CbcEnc::new(&key.into(), (&iv).into()).encrypt_padded_vec_mut::<NoPadding>(&tiny),
        );
        assert_eq!(
            decrypt(KEY, &tiny, &iv_text, APP_KEY),
            Err(OpenDataError::DecryptFailed)
        );
    }

    proptest! {
        #[test]
        fn never_panics(key in ".{0,40}", data in ".{0,400}", iv in ".{0,40}", app_key in "[a-zA-Z0-9]{0,40}") {
            let _ = decrypt(&key, &data, &iv, &app_key);
        }

        #[test]
        fn well_shaped_random_bytes_are_the_one_failure_or_data(key in any::<[u8; 24]>(), iv in any::<[u8; 16]>(), blocks in proptest::collection::vec(any::<u8>(), 16..=512)) {
            let len = blocks.len() / 16 * 16;
            let r = decrypt(&STANDARD.encode(key), &STANDARD.encode(&blocks[..len]), &STANDARD.encode(iv), APP_KEY);
            prop_assert!(!matches!(r, Err(OpenDataError::Malformed(_))), "{:?}", r);
        }

        #[test]
        fn what_is_encrypted_decrypts_under_its_app_key_only(key in any::<[u8; 24]>(), iv in any::<[u8; 16]>(), random in any::<[u8; 16]>(), n in 0u32..1000) {
            let key = STANDARD.encode(key);
            let json = serde_json::json!({ "n": n }).to_string();
            let data = encrypt(&key, json.as_bytes(), APP_KEY, &iv, &random).unwrap();
            let iv = STANDARD.encode(iv);
            prop_assert_eq!(decrypt(&key, &data, &iv, APP_KEY).unwrap()["n"].as_u64(), Some(u64::from(n)));
            prop_assert_eq!(decrypt(&key, &data, &iv, "other"), Err(OpenDataError::DecryptFailed));
        }
    }
}
