use super::*;
use proptest::prelude::*;

const PKCS8: &str = include_str!("../../../tests/fixtures/alipay/app_private_pkcs8.pem");
const PKCS1: &str = include_str!("../../../tests/fixtures/alipay/app_private_pkcs1.pem");
const PUBLIC: &str = include_str!("../../../tests/fixtures/alipay/app_public.pem");
const SIGNED: &str = include_str!("../../../tests/fixtures/alipay/signed.txt");
const SIGNATURE: &str = include_str!("../../../tests/fixtures/alipay/signed.txt.sig");

/// The PEM's base64 body on one line: what Alipay's key tool prints.
fn bare(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

#[test]
fn private_keys_are_read_as_pkcs8_or_pkcs1_in_pem_or_bare_base64() {
    for text in [PKCS8.to_owned(), PKCS1.to_owned(), bare(PKCS8), bare(PKCS1)] {
        let key = private_key(&text).unwrap();
        assert_eq!(key.public().modulus_len(), 256);
    }
}

#[test]
fn anything_else_is_refused_with_what_to_fix_and_never_the_key() {
    for text in ["", "not base64!", "AAAA", PUBLIC, &bare(PUBLIC)] {
        let Err(e) = private_key(text) else {
            panic!("refused")
        };
        assert!(e.0.contains("private key"), "{e}");
        assert!(!e.0.contains("MII"), "{e}");
    }
    assert!(
        public_key(PKCS8).is_err(),
        "a private key is not Alipay's public key"
    );
    assert!(public_key("").is_err());
}

#[test]
fn our_public_key_encoding_is_openssls() {
    // The SubjectPublicKeyInfo built from the private key is byte for byte what OpenSSL made.
    let key = private_key(PKCS1).unwrap();
    assert_eq!(public_key_of(&key), bare(PUBLIC));
    assert_eq!(public_key(PUBLIC).unwrap(), key.public().as_ref());
    assert_eq!(public_key(&bare(PUBLIC)).unwrap(), key.public().as_ref());
}

#[test]
fn an_rsa2_signature_is_openssls_and_verifies() {
    // PKCS#1 v1.5 is deterministic: `openssl dgst -sha256 -sign` of the same text.
    let key = private_key(PKCS8).unwrap();
    let signature = sign(&key, SIGNED.as_bytes());
    assert_eq!(signature, SIGNATURE.trim());
    let public = public_key(PUBLIC).unwrap();
    assert!(verify(&public, SIGNED.as_bytes(), &signature));
    assert!(!verify(&public, b"another text", &signature));
    assert!(!verify(&public, SIGNED.as_bytes(), "not base64"));
    let mut tampered = STANDARD.decode(&signature).unwrap();
    tampered[10] ^= 1;
    assert!(!verify(
        &public,
        SIGNED.as_bytes(),
        &STANDARD.encode(tampered)
    ));
}

#[test]
fn the_string_to_sign_is_sorted_without_sign_or_empty_values_and_not_encoded() {
    let params = [
        ("method", OAUTH_TOKEN),
        ("sign", "xyz"),
        ("app_id", "2021000000000001"),
        ("code", "a b&c"),
        ("app_auth_token", ""),
        ("charset", "utf-8"),
    ];
    assert_eq!(
        sign_content(&params),
        "app_id=2021000000000001&charset=utf-8&code=a b&c&method=alipay.system.oauth.token"
    );
}

#[test]
fn the_timestamp_is_beijing_time() {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(1_764_576_000); // 2025-12-01T08:00:00Z
    assert_eq!(timestamp(at), "2025-12-01 16:00:00");
}

#[test]
fn the_signed_member_is_the_exact_text_in_the_body() {
    let body = r#"{"alipay_system_oauth_token_response": {"user_id":"2088102150477652", "open_id":"074a\/x"},"sign":"c2ln"}"#;
    let reply = signed_reply(body, OAUTH_TOKEN_RESPONSE).unwrap();
    assert_eq!(reply.member, OAUTH_TOKEN_RESPONSE);
    assert_eq!(
        reply.text,
        r#"{"user_id":"2088102150477652", "open_id":"074a\/x"}"#
    );
    assert_eq!(reply.sign.as_deref(), Some("c2ln"));
    let error = r#"{"error_response":{"code":"40002","sub_code":"isv.code-invalid"}}"#;
    let reply = signed_reply(error, OAUTH_TOKEN_RESPONSE).unwrap();
    assert_eq!(reply.member, "error_response");
    assert_eq!(reply.sign, None);
    assert!(signed_reply(r#"{"other":1}"#, OAUTH_TOKEN_RESPONSE).is_none());
    assert!(signed_reply("[1]", OAUTH_TOKEN_RESPONSE).is_none());
}

proptest! {
    #[test]
    fn readers_never_panic(text in ".{0,600}") {
        let _ = private_key(&text);
        let _ = public_key(&text);
        let _ = signed_reply(&text, OAUTH_TOKEN_RESPONSE);
        let _ = verify(&public_key(PUBLIC).unwrap(), text.as_bytes(), &text);
    }
}
