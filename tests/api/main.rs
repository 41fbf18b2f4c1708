//! Integration tests: a real confab server per test (random port, fresh SQLite file or
//! PostgreSQL schema), driven over real sockets by a real Socket.IO client.
//!
//! Most tests run twice, once per storage backend (`both_backends!`).

#[macro_use]
mod helpers;

mod amplification;
mod attachments;
mod auth;
mod blocks;
mod cluster;
mod conversations;
mod faults;
mod fuzz;
mod history;
mod hostile;
mod http;
mod large_groups;
mod limits;
mod logs;
mod messages;
mod moderation;
mod nodes;
mod official_client;
mod openapi;
mod ordering;
mod payloads;
mod presence;
mod proxy;
mod receipts;
mod redis_cluster;
mod search;
mod security;
mod server_api;
mod session;
mod startup;
mod typing;
mod web;
mod webhooks;
mod wire;
