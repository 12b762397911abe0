//! Alipay's RSA2: the app signs each gateway request with its private key (SHA256withRSA,
//! PKCS#1 v1.5), and Alipay signs each reply with its own, which we verify with Alipay's public
//! key before believing a user id. Pure functions, shared with the simulator (which plays
//! Alipay's side with a key pair of its own).
//!
//! RSA is ring's: its private-key operation runs in constant time (`elem_exp_consttime`, with
//! the CRT), so the timing attack of RUSTSEC-2023-0071 (Marvin, in the `rsa` crate) does not
//! apply; ring also refuses keys under 2048 bits. Alipay's public key comes as an X.509
//! SubjectPublicKeyInfo, read with RustCrypto's `spki`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256,
};
use serde_json::value::RawValue;
use spki::der::Decode;
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// The gateway method that exchanges a `my.getAuthCode()` code.
pub const OAUTH_TOKEN: &str = "alipay.system.oauth.token";

/// The member of a successful `alipay.system.oauth.token` reply that Alipay signs.
pub const OAUTH_TOKEN_RESPONSE: &str = "alipay_system_oauth_token_response";

const RSA_ENCRYPTION: spki::ObjectIdentifier =
    spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Why a key was refused: what to fix, never the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub &'static str);

/// The app's private key (应用私钥): PEM (`PRIVATE KEY`, PKCS#8, or `RSA PRIVATE KEY`, PKCS#1)
/// or the bare base64 of either that Alipay's key tool prints.
pub fn private_key(text: &str) -> Result<RsaKeyPair, KeyError> {
    let der = pem_or_base64(text).ok_or(KeyError(
        "the app private key must be PEM or base64 (PKCS#8 or PKCS#1)",
    ))?;
    RsaKeyPair::from_pkcs8(&der)
        .or_else(|_| RsaKeyPair::from_der(&der))
        .map_err(|_| {
            KeyError("the app private key is not an RSA private key of 2048 to 4096 bits (PKCS#8 or PKCS#1)")
        })
}

/// Alipay's public key (支付宝公钥) as its console shows it — the base64 of an X.509
/// SubjectPublicKeyInfo, or the same in PEM — as the RSAPublicKey ring verifies with.
pub fn public_key(text: &str) -> Result<Vec<u8>, KeyError> {
    let der = pem_or_base64(text).ok_or(KeyError(
        "Alipay's public key must be PEM or base64 (an X.509 SubjectPublicKeyInfo)",
    ))?;
    let info = spki::SubjectPublicKeyInfoRef::from_der(&der)
        .map_err(|_| KeyError("Alipay's public key is not an X.509 SubjectPublicKeyInfo"))?;
    if info.algorithm.oid != RSA_ENCRYPTION {
        return Err(KeyError("Alipay's public key is not an RSA key"));
    }
    info.subject_public_key
        .as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or(KeyError("Alipay's public key is malformed"))
}

/// The public half of a key pair, as an X.509 SubjectPublicKeyInfo in base64: what the app
/// uploads to Alipay's console (and what the simulator is given of an app).
pub fn public_key_of(key: &RsaKeyPair) -> String {
    // SEQUENCE { SEQUENCE { rsaEncryption, NULL }, BIT STRING { 0 unused bits, RSAPublicKey } }
    let rsa = key.public().as_ref();
    let algorithm: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0u8];
    bits.extend_from_slice(rsa);
    let mut body = algorithm.to_vec();
    body.extend(der_item(0x03, &bits));
    STANDARD.encode(der_item(0x30, &body))
}

pub(crate) fn der_item(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

pub(crate) fn pem_or_base64(text: &str) -> Option<Vec<u8>> {
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    STANDARD.decode(body).ok().filter(|der| !der.is_empty())
}

/// Alipay's string to sign: every parameter but `sign` whose value is not empty, sorted by
/// name, as `name=value` joined with `&` (values as they are, not URL-encoded).
pub fn sign_content(params: &[(&str, &str)]) -> String {
    let mut kept: Vec<&(&str, &str)> = params
        .iter()
        .filter(|(k, v)| *k != "sign" && !v.is_empty())
        .collect();
    kept.sort_by(|a, b| a.0.cmp(b.0));
    kept.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// RSA2 (SHA256withRSA) in base64.
pub fn sign(key: &RsaKeyPair, content: &[u8]) -> String {
    let mut signature = vec![0; key.public().modulus_len()];
    // Fails only for a buffer of the wrong length, which the line above rules out.
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        content,
        &mut signature,
    )
    .expect("an RSA signature fits the modulus");
    STANDARD.encode(signature)
}

/// Whether `signature` (base64) is RSA2 over `content` by the key `public_key` (RSAPublicKey).
pub fn verify(public_key: &[u8], content: &[u8], signature: &str) -> bool {
    let Ok(signature) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key)
        .verify(content, &signature)
        .is_ok()
}

/// The gateway's `timestamp`: Beijing time (UTC+8), `yyyy-MM-dd HH:mm:ss`.
pub fn timestamp(now: SystemTime) -> String {
    let beijing = now + Duration::from_secs(8 * 3600);
    // `2026-12-01T08:00:00Z` → `2026-12-01 08:00:00`
    humantime::format_rfc3339_seconds(beijing)
        .to_string()
        .trim_end_matches('Z')
        .replacen('T', " ", 1)
}

/// A gateway reply: the exact text of the member Alipay signed (the method's `…_response`, or
/// `error_response`), and the signature. Alipay signs the member's bytes as they are in the
/// body, so they are kept unparsed until the signature is checked.
pub struct SignedReply<'a> {
    pub member: &'a str,
    pub text: &'a str,
    pub sign: Option<String>,
}

/// Finds the signed member of a gateway reply for `method_response` (falling back to
/// `error_response`, as Alipay's SDKs do).
pub fn signed_reply<'a>(body: &'a str, method_response: &str) -> Option<SignedReply<'a>> {
    let members: HashMap<&str, &RawValue> = serde_json::from_str(body).ok()?;
    let sign = members
        .get("sign")
        .and_then(|v| serde_json::from_str::<String>(v.get()).ok());
    [method_response, "error_response"]
        .into_iter()
        .find_map(|name| {
            members
                .get_key_value(name)
                .map(|(member, text)| SignedReply {
                    member,
                    text: text.get(),
                    sign: sign.clone(),
                })
        })
}

#[cfg(test)]
mod tests;
