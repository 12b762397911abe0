//! The success envelope of the reference Django view, `{"status": 0, "msg": "ok", "data": …}`:
//! the type every handler returns and the schema the OpenAPI document shows are one and the
//! same, so the two cannot drift.

use crate::error::ApiError;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub(crate) struct Envelope<T> {
    #[schema(example = 0)]
    status: u8,
    #[schema(example = "ok")]
    msg: &'static str,
    data: T,
}

/// A handler's result: the envelope around `T`, or an error reply.
pub(crate) type Reply<T> = Result<Json<Envelope<T>>, ApiError>;

/// Wraps `data` in the success envelope. Serialized straight from the typed value.
pub(crate) fn ok<T: Serialize>(data: T) -> Json<Envelope<T>> {
    Json(Envelope {
        status: 0,
        msg: "ok",
        data,
    })
}

/// `{}`: what logout and liveness answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct Empty {}

/// `{"valid": bool}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct Valid {
    pub(crate) valid: bool,
}
