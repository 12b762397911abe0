use super::*;

// WeChat's published sample (SPEC §4.4).
const APPID: &str = "wx4f4bc4dec97d474b";
const KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
const IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
const DATA: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";

#[test]
fn wechat_published_decryption_sample() {
    let v = decrypt(KEY, DATA, IV, Some(APPID)).unwrap();
    assert_eq!(v["openId"], "oGZUI0egBJY1zhBYw2KhdUfwVJJE");
    assert_eq!(v["nickName"], "Band");
    assert_eq!(v["watermark"]["timestamp"], 1477314187);
    assert_eq!(v["watermark"]["appid"], APPID);
    // 393 bytes of JSON before padding.
    let key: [u8; 16] = STANDARD.decode(KEY).unwrap().try_into().unwrap();
    let iv: [u8; 16] = STANDARD.decode(IV).unwrap().try_into().unwrap();
    let plain = Aes128CbcDec::new(&key.into(), &iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(&STANDARD.decode(DATA).unwrap())
        .unwrap();
    assert_eq!(plain.len(), 393);
}

#[test]
fn wechat_published_raw_data_sample() {
    let raw = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
    let key = "HyVFkGl5F5OQWJZZaNzBBg==";
    assert_eq!(
        raw_data_signature(raw, key),
        "75e81ceda165f4ffa64f4068af58c64b8f54b88c"
    );
    assert!(verify_raw_data(
        raw,
        "75e81ceda165f4ffa64f4068af58c64b8f54b88c",
        key
    ));
    assert!(verify_raw_data(
        raw,
        "75E81CEDA165F4FFA64F4068AF58C64B8F54B88C",
        key
    ));
    assert!(!verify_raw_data(
        raw,
        "75e81ceda165f4ffa64f4068af58c64b8f54b88d",
        key
    ));
    assert!(!verify_raw_data(
        &raw.replace("Band", "Bend"),
        "75e81ceda165f4ffa64f4068af58c64b8f54b88c",
        key
    ));
    assert!(!verify_raw_data(raw, "", key));
}

#[test]
fn every_cryptographic_failure_is_the_same_error() {
    let other_key = STANDARD.encode([7u8; 16]);
    let other_iv = STANDARD.encode([9u8; 16]);
    let mut tampered = STANDARD.decode(DATA).unwrap();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let tampered = STANDARD.encode(&tampered);
    let mut early = STANDARD.decode(DATA).unwrap();
    early[20] ^= 0x40;
    let early = STANDARD.encode(&early);
    let truncated = STANDARD.encode(&STANDARD.decode(DATA).unwrap()[..256]);
    for (name, key, data, iv, appid) in [
        ("wrong key", other_key.as_str(), DATA, IV, Some(APPID)),
        ("wrong iv", KEY, DATA, other_iv.as_str(), Some(APPID)),
        (
            "tampered last byte",
            KEY,
            tampered.as_str(),
            IV,
            Some(APPID),
        ),
        ("tampered early byte", KEY, early.as_str(), IV, Some(APPID)),
        ("truncated", KEY, truncated.as_str(), IV, Some(APPID)),
        (
            "other app's watermark",
            KEY,
            DATA,
            IV,
            Some("wx0000000000000000"),
        ),
    ] {
        assert_eq!(
            decrypt(key, data, iv, appid),
            Err(OpenDataError::DecryptFailed),
            "{name}"
        );
    }
}

#[test]
fn malformed_inputs_say_what_is_wrong() {
    for (key, data, iv) in [
        ("not base64!", DATA, IV),
        (STANDARD.encode([1u8; 24]).as_str(), DATA, IV), // 24-byte key
        (KEY, DATA, "c2hvcnQ="),                         // short iv
        (KEY, "%%%", IV),
        (KEY, "", IV),
        (KEY, &STANDARD.encode([0u8; 15]), IV),
        (KEY, &"A".repeat(MAX_ENCRYPTED_LEN + 4), IV),
    ] {
        assert!(matches!(
            decrypt(key, data, iv, None),
            Err(OpenDataError::Malformed(_))
        ));
    }
}

#[test]
fn encrypt_round_trips() {
    let json = br#"{"a":1,"watermark":{"appid":"wxa","timestamp":1}}"#;
    let data = encrypt(KEY, json, &[3u8; 16]).unwrap();
    let v = decrypt(KEY, &data, &STANDARD.encode([3u8; 16]), Some("wxa")).unwrap();
    assert_eq!(v["a"], 1);
}

#[test]
fn session_signature_is_hmac_sha256_of_the_key_text() {
    // Known answer: HMAC-SHA256(key = "tiihtNczf5v6AKRyjwEUhQ==", message = "").
    // Computed independently: python3 -c 'import hmac,hashlib; print(hmac.new(b"tiihtNczf5v6AKRyjwEUhQ==", b"", hashlib.sha256).hexdigest())'
    let sig = session_signature(KEY, "");
    assert_eq!(
        sig,
        "7154f9f8b4b76b92f541cbf0e37d48840fa06e5e42da92a6f80168a1516a4735"
    );
    assert_ne!(sig, session_signature("HyVFkGl5F5OQWJZZaNzBBg==", ""));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decrypt_never_panics(key in ".{0,40}", data in ".{0,400}", iv in ".{0,40}", appid in proptest::option::of("[a-z0-9]{0,20}")) {
            let _ = decrypt(&key, &data, &iv, appid.as_deref());
        }

        #[test]
        fn decrypt_never_panics_on_well_shaped_random_bytes(key in any::<[u8; 16]>(), iv in any::<[u8; 16]>(), blocks in proptest::collection::vec(any::<u8>(), 16..=512)) {
            let len = blocks.len() / 16 * 16;
            let r = decrypt(&STANDARD.encode(key), &STANDARD.encode(&blocks[..len]), &STANDARD.encode(iv), Some("wxa"));
            // Well-shaped input never reports a shape problem: only the one generic failure, or data.
            prop_assert!(!matches!(r, Err(OpenDataError::Malformed(_))), "{:?}", r);
        }

        #[test]
        fn verify_never_panics(raw in ".{0,200}", sig in ".{0,80}", key in ".{0,40}") {
            let _ = verify_raw_data(&raw, &sig, &key);
        }
    }
}
