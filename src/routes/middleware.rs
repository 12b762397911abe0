//! HTTP middleware of our own: each 5xx logged once, inside the request's span, with the cause
//! the error carried (`error::ServerFailure`) — the one place server failures are logged.

use crate::error::ServerFailure;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

pub(crate) async fn log_server_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if status.is_server_error() {
        match response.extensions().get::<ServerFailure>() {
            Some(f) => {
                tracing::error!(status = status.as_u16(), error = f.error, cause = ?f.cause, "request failed")
            }
            None => tracing::error!(status = status.as_u16(), "request failed"),
        }
    }
    response
}
