//! confab: a real-time chat server.
//!
//! The data path, from the outside in: `realtime` (Socket.IO events) and `http` (REST routes)
//! parse requests with `protocol` and call `chat`, the use cases; `chat` applies the rules,
//! writes through `store` and delivers through `hub` (and, in a cluster, `bus`).
//! docs/ARCHITECTURE.md follows a message, a sync and a cross-node delivery through the files.

pub mod attachments;
pub mod auth;
pub mod bus;
pub mod chat;
pub mod config;
pub mod domain;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod http;
pub mod hub;
pub mod limits;
pub mod protocol;
pub mod realtime;
pub mod startup;
pub mod store;
pub mod telemetry;
