//! The wire contract, in one place: what clients send ([`command`]: the events they may send,
//! parsed once into a [`Command`] from their raw JSON, or built from an HTTP route, with the
//! payloads' validation in [`requests`]), what they get back ([`replies`], inside the
//! [`envelope`] with its error codes and HTTP statuses), and what the server pushes
//! ([`events`]). docs/PROTOCOL.md says the same for people.
//!
//! It is vocabulary, imported by those who speak it: `realtime` and `http` parse with it and
//! encode their answers with it, `chat` encodes its events with it, the store returns pages in
//! its shapes. It imports nothing but `domain` and `error`.

pub mod command;
pub mod envelope;
pub mod events;
pub mod replies;
pub mod requests;
// The host app's server API: a block of its own.
pub mod server;

pub use command::{Bucket, ClientEvent, Command, Request};
pub use envelope::Envelope;
pub use events::ServerEvent;
pub use replies::Reply;
