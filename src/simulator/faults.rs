//! Fault injection: the next N calls of one WeChat route answer with an errcode, an HTTP status,
//! after a delay, or never.

use super::SimState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub(super) struct Fault {
    /// The WeChat route, e.g. `/sns/jscode2session`.
    pub api: String,
    /// Answer HTTP 200 with this errcode (WeChat's way of failing).
    pub errcode: Option<i64>,
    pub errmsg: Option<String>,
    /// Answer with this HTTP status instead.
    pub status: Option<u16>,
    /// Wait this long first; with neither errcode nor status, then answer normally.
    pub delay_ms: Option<u64>,
    /// Never answer (the client must time out).
    #[serde(default)]
    pub hang: bool,
    /// How many calls this applies to.
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

/// Takes one use of the next fault for `path`, waits as it says, and returns the reply it
/// prescribes (or `None` to answer normally).
pub(super) async fn apply(sim: &SimState, path: &str) -> Option<Response> {
    let fault = {
        let mut inner = sim.lock();
        let queue = inner.faults.get_mut(path)?;
        let front = queue.front_mut()?;
        let fault = front.clone();
        front.times -= 1;
        if front.times == 0 {
            queue.pop_front();
        }
        fault
    };
    if fault.hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if let Some(ms) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(status) = fault.status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Some((status, "simulated failure").into_response());
    }
    fault.errcode.map(|code| {
        let msg = fault
            .errmsg
            .clone()
            .unwrap_or_else(|| "simulated error".into());
        super::error_reply(path, code, &msg)
    })
}

pub(super) async fn add(State(sim): State<Arc<SimState>>, body: Option<Json<Fault>>) -> Response {
    let Some(Json(fault)) = body else {
        return super::bad_request("send JSON {\"api\": \"/sns/jscode2session\", \"errcode\"?, \"status\"?, \"delay_ms\"?, \"hang\"?, \"times\"?}");
    };
    if fault.times == 0 {
        return super::bad_request("times must be at least 1");
    }
    let mut inner = sim.lock();
    inner
        .faults
        .entry(fault.api.clone())
        .or_default()
        .push_back(fault);
    StatusCode::NO_CONTENT.into_response()
}

pub(super) async fn list(State(sim): State<Arc<SimState>>) -> Response {
    let inner = sim.lock();
    let all: Vec<&Fault> = inner.faults.values().flatten().collect();
    Json(json!(all)).into_response()
}

pub(super) async fn clear(State(sim): State<Arc<SimState>>) -> Response {
    sim.lock().faults.clear();
    StatusCode::NO_CONTENT.into_response()
}
