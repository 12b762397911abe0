//! End-to-end tests: a real server on a port, a real store, the simulator as WeChat.
//! One test binary (modules below) so the suite links once.

#![allow(unreachable_pub)]

mod harness;

mod accounts;
mod apps;
mod at_rest;
mod cli;
mod cluster;
mod concurrency;
mod crash;
mod errors;
mod expiry;
mod faults;
mod flow;
mod hardening;
mod logs;
mod maintenance;
mod nginx;
mod open_data;
mod ops;
mod outages;
mod platforms;
mod restart;
mod services;
mod webhooks;
