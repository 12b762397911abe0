//! Request extractors whose rejections use the API's error shape.
//!
//! [`ApiBody`] reads JSON (the `wx.request` default) or a urlencoded form (what some Django-era
//! clients send), so both kinds of existing client code work. [`Authed`] resolves the token
//! from `Authorization: Bearer …` or a `token:` header — never from the URL. [`ClientIp`] is
//! the address a request comes from, believing `X-Forwarded-For` only from trusted proxies.

use crate::domain::{ClientInfo, SessionToken};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::SessionRecord;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};

pub(crate) struct ApiBody<T>(pub T);

impl<S, T> FromRequest<S> for ApiBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest("could not read the request body".into())
            }
        })?;
        decode_body(&content_type, &bytes).map(ApiBody)
    }
}

/// Decodes a request body as the API does: JSON (also when mislabelled), or a urlencoded form.
/// A pure function, so the fuzz targets run exactly what the server runs.
pub fn decode_body<T: DeserializeOwned>(content_type: &str, bytes: &[u8]) -> Result<T, ApiError> {
    let text = bytes.trim_ascii_start();
    // A body that looks like JSON is JSON, whatever the header says (curl's default, and
    // Django views that `json.loads(request.body)` taught clients not to care).
    let looks_like_json = text.first().is_some_and(|b| *b == b'{' || *b == b'[');
    if !looks_like_json && content_type.starts_with("application/x-www-form-urlencoded") {
        return serde_urlencoded::from_bytes(bytes)
            .map_err(|_| ApiError::BadRequest("malformed form body".into()));
    }
    let json_type = content_type.is_empty()
        || content_type.contains("json")
        || content_type.starts_with("text/plain")
        || content_type.starts_with("application/x-www-form-urlencoded");
    if !json_type {
        return Err(ApiError::BadRequest(
            "send a JSON body with content-type: application/json".into(),
        ));
    }
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        if e.inner().is_data() {
            wrong_shape(e.path().to_string())
        } else {
            // serde_json's own text would echo input; say what is wrong, not what was sent.
            ApiError::BadRequest("malformed JSON body".into())
        }
    })
}

fn wrong_shape(path: String) -> ApiError {
    if path == "." || path.is_empty() {
        ApiError::BadRequest("the body must be a JSON object".into())
    } else {
        ApiError::BadRequest(format!("field `{path}` has the wrong type"))
    }
}

/// `Query` whose rejection is our `bad_request`.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct ApiQuery<T>(pub T);

/// `Path` whose rejection is our `bad_request`.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct ApiPath<T>(pub T);

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(_: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::BadRequest("malformed query string".into())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(_: axum::extract::rejection::PathRejection) -> Self {
        ApiError::BadRequest("malformed path parameter".into())
    }
}

/// The raw token text a request carries, if any.
pub fn token_text(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, rest) = v.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim());
    }
    headers
        .get("token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// A request with a live session.
pub(crate) struct Authed {
    pub session: SessionRecord,
    pub token: SessionToken,
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = token_text(&parts.headers)
            .and_then(SessionToken::parse)
            .ok_or(ApiError::Unauthorized)?;
        let session = state.sessions.verify(&token).await?;
        Ok(Self { session, token })
    }
}

/// The client's address: the TCP peer, unless the peer is a configured trusted proxy; then the
/// right-most address in `X-Forwarded-For` that is not itself a trusted proxy. Trusting the
/// header from anyone would let every client pick a fresh address per request.
pub(crate) struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or_else(|| ApiError::Internal(crate::error::Cause::new("no peer address")))?;
        Ok(Self(client_ip(
            peer,
            &parts.headers,
            &state.trusted_proxies,
        )))
    }
}

/// The client as sessions and events record it: its address and user agent.
pub(crate) struct Client(pub ClientInfo);

/// The label of the admin token a request carried (set by the admin routes' check):
/// `admin:<label>` in the events its changes write.
#[derive(Debug, Clone)]
pub(crate) struct AdminActor(pub String);

impl FromRequestParts<AppState> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ClientIp(ip) = ClientIp::from_request_parts(parts, state).await?;
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        let mut client = ClientInfo::new(Some(ip.to_string()), user_agent);
        client.actor = parts
            .extensions
            .get::<AdminActor>()
            .map(|a| format!("admin:{}", a.0));
        Ok(Self(client))
    }
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the rightmost
/// `X-Forwarded-For` entry that is not one, read right to left. An entry that is not an address
/// stops the walk at the hop that passed it on: entries to its left are whatever a client
/// wrote. Addresses are canonical (`::ffff:a.b.c.d` is `a.b.c.d`), so an IPv4 proxy matches
/// whether the listener is IPv4 or `[::]`.
fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(&ip));
    let mut forwarded = headers.get_all("x-forwarded-for").iter().peekable();
    if !is_trusted(peer) {
        if forwarded.peek().is_some() {
            warn_untrusted_forwarded_for(peer);
        }
        return peer;
    }
    let hops: Vec<&[u8]> = forwarded
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .collect();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, or an address with a port (`1.2.3.4:80`,
/// `[2001:db8::1]:443`), canonical.
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(hop).ok()?.trim();
    text.parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// `X-Forwarded-For` from a peer that is not a trusted proxy is ignored, which is right for a
/// client forging it and wrong for a proxy left out of `WXLOGIN_TRUSTED_PROXIES`: say so, once.
fn warn_untrusted_forwarded_for(peer: IpAddr) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            %peer,
            "X-Forwarded-For came from a peer that is not in WXLOGIN_TRUSTED_PROXIES and was ignored; \
             if this peer is your proxy, add it there, or every client counts as the proxy's address"
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7, 10.1.2.3".parse().unwrap(),
        );
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        let stranger: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(stranger, &h, &trusted),
            stranger,
            "a client cannot pick its own IP"
        );
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
    }

    fn forwarded(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", value.parse().unwrap());
        h
    }

    #[test]
    fn an_ipv4_proxy_is_trusted_on_an_ipv6_listener() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(mapped, &forwarded("198.51.100.7"), &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // And a mapped client address is its IPv4 address.
        let stranger: IpAddr = "::ffff:198.51.100.8".parse().unwrap();
        assert_eq!(
            client_ip(stranger, &HeaderMap::new(), &trusted),
            "198.51.100.8".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn an_unparseable_hop_stops_the_walk() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.0.0.5".parse().unwrap();
        // What is left of the junk was written by whoever sent it: never the client's key.
        assert_eq!(
            client_ip(proxy, &forwarded("203.0.113.9, junk, 10.1.2.3"), &trusted),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(proxy, &forwarded("203.0.113.9, unknown"), &trusted),
            proxy
        );
        // Ports are allowed.
        assert_eq!(
            client_ip(
                proxy,
                &forwarded("[2001:db8::1]:443, 10.1.2.3:80"),
                &trusted
            ),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }
}
