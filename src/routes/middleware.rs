//! What every request passes through, in one service of our own ([`Observe`]) rather than a
//! stack of six (a request id, a trace span, the id echoed, `Cache-Control`, the 5xx log, the
//! request metrics): each layer of such a stack wraps the request's future in one more future,
//! and the `from_fn` ones clone and box the service behind them on every request. On a token
//! check answered from memory that stack was a fifth of the server's time (docs/benchmarks.md).
//!
//! [`Observe`], around everything:
//! - a client's `x-request-id` is kept (and echoed, and logged) only if it is short and plain:
//!   at most 64 characters of letters, digits and `-_.:`, sent once. Anything else is dropped,
//!   and the request gets a fresh UUID, so a client cannot write into every log line of its
//!   request;
//! - one `request` span per request (method, path — never the query string, whatever a client
//!   puts there — and the request id), entered whenever the request's work runs; at debug
//!   level, a line when a request starts and one when it is answered (status, latency);
//! - each 5xx logged once, inside that span, with the cause the error carried
//!   ([`ServerFailure`]) — the one place server failures are logged;
//! - replies carry tokens and personal data, so no cache may keep them: `Cache-Control:
//!   no-store` unless the route said otherwise (avatars, public and content-addressed, do);
//! - the request counted and timed by route template ([`NoteRoute`] tells it which matched),
//!   method and status.

use crate::error::ServerFailure;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use axum::response::Response;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;
use tower::Service;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids, the request span, the 5xx log, `Cache-Control` and the request metrics (see
/// the module's documentation).
#[derive(Clone, Debug)]
pub(crate) struct Observe<S> {
    inner: S,
}

impl<S> Observe<S> {
    /// Wraps the router (`tower::layer::layer_fn(Observe::new)`).
    pub(crate) fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, B> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let started = Instant::now();
        let id = request_id(req.headers_mut());
        let span = tracing::info_span!(
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            request_id = %id.to_str().unwrap_or("-"),
        );
        let method = method_label(req.method());
        let inner = span.in_scope(|| {
            tracing::debug!("request started");
            self.inner.call(req)
        });
        ObserveFuture {
            inner,
            span,
            id: Some(id),
            method,
            started,
        }
    }
}

pin_project! {
    /// [`Observe`]'s future: the inner one, run inside the request's span.
    pub(crate) struct ObserveFuture<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        id: Option<HeaderValue>,
        method: &'static str,
        started: Instant,
    }
}

impl<F, B, E> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let mut response = match ready!(this.inner.poll(cx)) {
            Ok(response) => response,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let status = response.status();
        let elapsed = this.started.elapsed();
        tracing::debug!(
            status = status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request finished"
        );
        if status.is_server_error() {
            match response.extensions().get::<ServerFailure>() {
                Some(f) => {
                    tracing::error!(status = status.as_u16(), error = f.error, cause = ?f.cause, "request failed")
                }
                None => tracing::error!(status = status.as_u16(), "request failed"),
            }
        }
        let route = response
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str);
        crate::metrics::http_request(route, this.method, status.as_u16(), elapsed);
        let headers = response.headers_mut();
        if let Some(id) = this.id.take() {
            headers.entry(&REQUEST_ID).or_insert(id);
        }
        headers
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
        Poll::Ready(Ok(response))
    }
}

/// The request's id: the client's when it is fit to log, else a fresh UUID; left in the
/// request's headers (the only `x-request-id` there) and returned.
fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    let fit = |v: &[u8]| {
        !v.is_empty()
            && v.len() <= 64
            && v.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    };
    let mut sent = headers.get_all(&REQUEST_ID).iter();
    let kept = match (sent.next(), sent.next()) {
        (Some(one), None) if fit(one.as_bytes()) => Some(one.clone()),
        _ => None,
    };
    let id = kept.unwrap_or_else(|| {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
        HeaderValue::from_str(text).expect("a UUID is a valid header value")
    });
    headers.insert(&REQUEST_ID, id.clone());
    id
}

/// Any method is accepted on the wire; the metrics' label set stays bounded.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// A route layer: puts the route template that matched (known only inside the router) on the
/// response, for [`Observe`]'s metrics.
#[derive(Clone, Debug)]
pub(crate) struct NoteRoute<S> {
    inner: S,
}

impl<S> NoteRoute<S> {
    /// Wraps a route (`tower::layer::layer_fn(NoteRoute::new)`).
    pub(crate) fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S> Service<Request> for NoteRoute<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = NoteRouteFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned();
        NoteRouteFuture {
            inner: self.inner.call(req),
            route,
        }
    }
}

pin_project! {
    /// [`NoteRoute`]'s future.
    pub(crate) struct NoteRouteFuture<F> {
        #[pin]
        inner: F,
        route: Option<MatchedPath>,
    }
}

impl<F, E> Future for NoteRouteFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some(route) = this.route.take() {
            response.extensions_mut().insert(route);
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_for(sent: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for v in sent {
            headers.append(&REQUEST_ID, HeaderValue::from_str(v).unwrap());
        }
        let id = request_id(&mut headers);
        assert_eq!(headers.get_all(&REQUEST_ID).iter().count(), 1);
        assert_eq!(headers[&REQUEST_ID], id);
        id.to_str().unwrap().to_owned()
    }

    #[test]
    fn a_plain_request_id_sent_once_is_kept_and_anything_else_replaced() {
        assert_eq!(id_for(&["trace-42:a.b_c"]), "trace-42:a.b_c");
        for unfit in [
            vec!["has space"],
            vec!["quote\""],
            vec![""],
            vec!["a", "b"],
            vec![&"x".repeat(65)],
        ] {
            let got = id_for(&unfit);
            assert!(uuid::Uuid::parse_str(&got).is_ok(), "{unfit:?}: {got}");
        }
        assert_ne!(id_for(&[]), id_for(&[]));
    }
}
