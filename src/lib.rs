//! wxlogin: a self-hosted login and session service for WeChat Mini Programs.
//!
//! Dependencies point one way, top to bottom (no module imports one above it):
//!
//! ```text
//! cli ─▶ app ─▶ routes ─▶ state ─▶ services ─▶ store, coord, wechat ─▶ domain, clock
//!               (error)            (config)                 (metrics: a leaf every layer records to)
//! ```
//!
//! `config` reads settings into domain and store types; `simulator` stands apart (the fake
//! WeChat), sharing only `wechat::crypto` and the clock; `telemetry` sets up logging.

pub mod app; // Application: build → run_until_stopped; layers; one stop token
pub mod cli; // the command line: serve, simulator, check-config, decrypt, sign, admin
pub mod clock; // injected time, so expiry is testable
pub mod config; // the settings table: loading, warnings, check-config
pub mod coord; // Redis: shared session cache, locks, counters; never the only copy
pub mod domain; // pure types: AppId, JsCode, CodeHash, SessionToken, AppCredentials, ...
pub mod error; // the API error type, its JSON shape, the documented error responses
pub mod metrics; // Prometheus recorder and the functions every layer records with
pub mod recent; // the last hour per minute, in memory, for the admin dashboard
pub mod routes; // HTTP handlers, one file per resource, each with its router
pub mod server; // the HTTP/1 loop: header, request and keep-alive timeouts, connection cap
pub mod services; // login, sessions, users, open data, access tokens, rate limits, upkeep
pub mod simulator; // the fake WeChat server
pub mod state; // AppState: the services every handler gets
pub mod store; // narrow storage traits; SQLite and PostgreSQL
pub mod telemetry; // logging setup that never prints a secret
pub mod vault; // AES-256-GCM for data at rest, keyed phone hashes
pub mod webhook;
pub mod wechat; // WeChat API client, errcodes, replies, open-data crypto // sending one signed webhook (the outbox worker is services/webhooks.rs)
