//! Personal and secret data at rest (SPEC §8): values sealed with AES-256-GCM under the data key
//! (`WXLOGIN_DATA_KEY`), each tagged with its key's id, and phone numbers looked up by a keyed
//! hash (HMAC-SHA256) rather than by the number.
//!
//! A sealed value is text, so it fits the columns the plain value had:
//! `enc1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`. The associated data is the field's
//! name, so a value moved into another column does not open. The key id is the first 8 hex digits
//! of SHA-256 of the key: it names the key without revealing it.
//!
//! During a rotation the vault holds the new key and the old one (`WXLOGIN_DATA_KEY_OLD`): it
//! seals under the new one, opens under either, and looks phones up by both hashes. Text without
//! the `enc1:` prefix is a value written before encryption existed; it is returned as it is, and
//! the start-up pass (`store::reseal`) seals every such row.
//!
//! A leaf: it imports nothing of the crate.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const PREFIX: &str = "enc1:";
/// What every sealed value starts with, whatever its key.
pub const SEALED_PREFIX: &str = PREFIX;

/// The field a value belongs to: its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    SessionKey,
    Phone,
    AccessToken,
    /// An app's AppSecret in the app registry (`apps.secret`).
    AppSecret,
    /// An app's key for phone numbers in the app registry (`apps.phone_key`): Alipay's AES
    /// key, or a Douyin app's RSA private key.
    PhoneKey,
}

impl Field {
    fn aad(self) -> &'static [u8] {
        match self {
            Self::SessionKey => b"wxlogin/session_key",
            Self::Phone => b"wxlogin/phone",
            Self::AccessToken => b"wxlogin/access_token",
            Self::AppSecret => b"wxlogin/app_secret",
            Self::PhoneKey => b"wxlogin/phone_key",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("sealed under key {0}, which is neither WXLOGIN_DATA_KEY nor WXLOGIN_DATA_KEY_OLD")]
    UnknownKey(String),
    #[error("a sealed value is damaged or was moved from another field")]
    Damaged,
}

/// One 32-byte key, with its id and the phone-hash key derived from it.
struct DataKey {
    id: String,
    cipher: Aes256Gcm,
    hash_key: [u8; 32],
}

impl DataKey {
    fn new(key: &[u8; 32]) -> Self {
        let id = hex::encode(&Sha256::digest(key)[..4]);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
        mac.update(b"wxlogin/phone-hash/v1");
        Self {
            id,
            cipher: Aes256Gcm::new(key.into()),
            hash_key: mac.finalize().into_bytes().into(),
        }
    }

    fn hash(&self, phone: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.hash_key).expect("any key length");
        mac.update(phone.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// The data key (and, during a rotation, the previous one).
pub struct Vault {
    current: DataKey,
    old: Option<DataKey>,
}

impl Vault {
    pub fn new(current: &[u8; 32], old: Option<&[u8; 32]>) -> Self {
        Self {
            current: DataKey::new(current),
            old: old.map(DataKey::new),
        }
    }

    /// A fixed key for the crate's own tests.
    #[cfg(test)]
    pub(crate) fn for_tests() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::new(&[42; 32], None))
    }

    /// Parses a key as `WXLOGIN_DATA_KEY` holds it: 32 bytes in standard base64.
    pub fn parse_key(text: &str) -> Result<[u8; 32], String> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| {
            "expected 32 bytes in base64 (make one with `wxlogin gen-key`)".to_owned()
        })?;
        bytes.try_into().map_err(|b: Vec<u8>| {
            format!(
                "expected 32 bytes in base64, got {} bytes (make one with `wxlogin gen-key`)",
                b.len()
            )
        })
    }

    /// A new random key, in base64.
    pub fn generate_key() -> String {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the OS random source");
        STANDARD.encode(key)
    }

    /// The current key's id.
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    /// What every value sealed under the current key starts with.
    pub fn current_prefix(&self) -> String {
        format!("{PREFIX}{}:", self.current.id)
    }

    pub fn seal(&self, field: Field, plain: &str) -> String {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("the OS random source");
        let sealed = self
            .current
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: field.aad(),
                },
            )
            .expect("AES-GCM encryption of a short value cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{}{}", self.current_prefix(), URL_SAFE_NO_PAD.encode(out))
    }

    /// The plain value of `stored` (text written before encryption is returned as it is).
    pub fn open(&self, field: Field, stored: &str) -> Result<String, VaultError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (id, body) = rest.split_once(':').ok_or(VaultError::Damaged)?;
        let key = [Some(&self.current), self.old.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.id == id)
            .ok_or_else(|| VaultError::UnknownKey(id.to_owned()))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| VaultError::Damaged)?;
        if bytes.len() < 12 + 16 {
            return Err(VaultError::Damaged);
        }
        let (nonce, sealed) = bytes.split_at(12);
        let plain = key
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: field.aad(),
                },
            )
            .map_err(|_| VaultError::Damaged)?;
        String::from_utf8(plain).map_err(|_| VaultError::Damaged)
    }

    /// Whether `stored` is sealed under the current key (else a rotation or the first start
    /// seals it again).
    pub fn is_current(&self, stored: &str) -> bool {
        stored.starts_with(&self.current_prefix())
    }

    /// The keyed hash a phone number is stored and looked up by.
    pub fn phone_hash(&self, phone: &str) -> String {
        self.current.hash(phone)
    }

    /// The hashes a stored number may carry: the current key's and, during a rotation, the old
    /// key's (the same one twice when there is no old key, so queries keep one shape).
    pub fn phone_hashes(&self, phone: &str) -> [String; 2] {
        let current = self.current.hash(phone);
        let old = self
            .old
            .as_ref()
            .map_or_else(|| current.clone(), |k| k.hash(phone));
        [current, old]
    }
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("key_id", &self.current.id)
            .field("old_key_id", &self.old.as_ref().map(|k| &k.id))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 32] = [7; 32];
    const B: [u8; 32] = [9; 32];

    #[test]
    fn a_sealed_value_opens_only_in_its_field_and_under_its_key() {
        let v = Vault::new(&A, None);
        let sealed = v.seal(Field::SessionKey, "tiihtNczf5v6AKRyjwEUhQ==");
        assert!(sealed.starts_with(&v.current_prefix()));
        assert!(!sealed.contains("tiihtNczf5v6AKRyjwEUhQ"));
        assert_eq!(
            v.open(Field::SessionKey, &sealed).unwrap(),
            "tiihtNczf5v6AKRyjwEUhQ=="
        );
        assert_ne!(
            sealed,
            v.seal(Field::SessionKey, "tiihtNczf5v6AKRyjwEUhQ==")
        );
        assert_eq!(v.open(Field::Phone, &sealed), Err(VaultError::Damaged));
        let other = Vault::new(&B, None);
        assert!(matches!(
            other.open(Field::SessionKey, &sealed),
            Err(VaultError::UnknownKey(_))
        ));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(
            v.open(Field::SessionKey, &tampered),
            Err(VaultError::Damaged)
        );
        assert_eq!(v.open(Field::Phone, "13800138000").unwrap(), "13800138000");
    }

    #[test]
    fn during_a_rotation_both_keys_open_and_both_hashes_are_looked_up() {
        let old = Vault::new(&A, None);
        let sealed = old.seal(Field::Phone, "13800138000");
        let rotating = Vault::new(&B, Some(&A));
        assert_eq!(rotating.open(Field::Phone, &sealed).unwrap(), "13800138000");
        assert!(!rotating.is_current(&sealed));
        assert!(rotating.is_current(&rotating.seal(Field::Phone, "x")));
        let [new_hash, old_hash] = rotating.phone_hashes("13800138000");
        assert_eq!(old_hash, old.phone_hash("13800138000"));
        assert_ne!(new_hash, old_hash);
        assert!(!new_hash.contains("13800138000"));
    }

    #[test]
    fn keys_parse_from_base64_of_32_bytes() {
        let key = Vault::generate_key();
        assert!(Vault::parse_key(&key).is_ok());
        assert!(Vault::parse_key("c2hvcnQ=")
            .unwrap_err()
            .contains("5 bytes"));
        assert!(Vault::parse_key("not base64!").is_err());
    }
}
