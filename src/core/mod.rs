//! The protocol, in pure Rust: no PyO3, no sockets. Bytes in, decisions out (sans-I/O), each
//! module with its own unit tests.
//!
//! Dependencies inside: `errors` and `kind` use nothing; `framing` uses `errors`; `keys` uses
//! `kind`; `vars` uses `errors`, `framing`, `keys` and `kind`; `allow` and `response_head`
//! stand alone (`response_head` uses `errors`); `access` (the access log's format) stands
//! alone; `websocket` (the RFC 6455 handshake, permessage-deflate and the frame codec) uses
//! `errors` and `response_head`.

pub mod access;
pub mod allow;
pub mod errors;
pub mod framing;
pub mod keys;
pub mod kind;
pub mod response_head;
pub mod vars;
pub mod websocket;

#[cfg(test)]
mod proptests;
