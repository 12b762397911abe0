//! Sending one webhook to the business backend: `POST` the JSON body, signed with
//! `X-Wxlogin-Signature: sha256=<hex HMAC-SHA256 of the body under WXLOGIN_WEBHOOK_SECRET>`.
//! Only a 2xx answer counts as delivered. Redirects are not followed (a signed body must reach
//! the URL the operator configured, not wherever a 3xx points). The outbox, retries and order
//! live in `services/webhooks.rs`.

use crate::domain::SecretUrl;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use std::time::Duration;

/// One stored webhook, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing<'a> {
    /// The event id: the same on every attempt, for the receiver's idempotency.
    pub id: i64,
    pub kind: &'a str,
    pub body: &'a str,
    /// 1 on the first attempt.
    pub attempt: u32,
}

#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    url: url::Url,
    secret: SecretString,
}

/// Why an attempt did not count, as stored in the outbox and shown to operators: the status
/// or the kind of failure, never the URL (its query may hold a credential) or the answer's body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("HTTP {0}")]
    Status(u16),
    #[error("timed out")]
    Timeout,
    #[error("could not connect")]
    Connect,
    #[error("request failed")]
    Other,
}

impl SendError {
    /// The label of `wxlogin_webhook_deliveries_total{result}`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Status(_) => "http_error",
            Self::Timeout => "timeout",
            Self::Connect => "connect_error",
            Self::Other => "error",
        }
    }
}

/// `sha256=<hex>`: the signature header's value for `body`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl WebhookClient {
    /// `timeout` bounds one attempt, connection included.
    pub fn new(url: &SecretUrl, secret: SecretString, timeout: Duration) -> anyhow::Result<Self> {
        let url = url::Url::parse(url.expose())
            .map_err(|_| anyhow::anyhow!("WXLOGIN_WEBHOOK_URL: not a URL"))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("wxlogin/", env!("CARGO_PKG_VERSION"), " webhook"))
            .build()?;
        Ok(Self { http, url, secret })
    }

    /// Sends one attempt; `Ok` only on a 2xx answer.
    pub async fn send(&self, w: &Outgoing<'_>) -> Result<(), SendError> {
        let answer = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                "x-wxlogin-signature",
                signature(self.secret.expose_secret().as_bytes(), w.body.as_bytes()),
            )
            .header("x-wxlogin-event-id", w.id.to_string())
            .header("x-wxlogin-event-type", w.kind)
            .header("x-wxlogin-attempt", w.attempt.to_string())
            .body(w.body.to_owned())
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    SendError::Timeout
                } else if e.is_connect() {
                    SendError::Connect
                } else {
                    SendError::Other
                }
            })?;
        let status = answer.status();
        // Read (and drop) the body so the connection goes back to the pool; a receiver that
        // stalls here is cut by the client's timeout.
        let _ = answer.bytes().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(SendError::Status(status.as_u16()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2: HMAC-SHA256 of "what do ya want for nothing?" under "Jefe".
    #[test]
    fn the_signature_is_hex_hmac_sha256_of_the_body() {
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
