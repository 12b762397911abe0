//! wxlogin: a self-hosted login and session service for WeChat Mini Programs.
//!
//! Dependencies point one way: `routes → services (login, session) → store / wechat → domain`.

pub mod app; // state, router, layers, serve
pub mod cli; // the command line: serve, simulator, check-config
pub mod clock; // injected time, so expiry is testable
pub mod config; // typed settings with redacted secrets
pub mod coord; // Redis: shared cache and coordination, never the only copy
pub mod domain; // pure types: AppId, JsCode, SessionToken, ...
pub mod error; // the API error type and its JSON shape
pub mod login; // code → WeChat → user + session, single-flight per code
pub mod metrics; // Prometheus metrics and the metered store
pub mod ratelimit; // per-IP and per-session limits, shared through Redis
pub mod routes; // HTTP handlers, one file per resource
pub mod session; // token checks, expiry policy, revocation
pub mod simulator; // the fake WeChat server
pub mod store; // storage traits; SQLite and PostgreSQL
pub mod telemetry; // logging setup that never prints a secret
pub mod wechat; // WeChat API client and errcodes
