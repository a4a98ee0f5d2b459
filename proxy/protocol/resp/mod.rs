//! Redis RESP2 codec: client requests (arrays and inline commands), backend reply framing,
//! encoders, and Redis's command table for arity checks and key extraction. Pure functions
//! over bytes.

pub mod command_table;
pub mod commands;
pub mod encode;
pub mod reply;
pub mod request;
#[cfg(test)]
mod tests;

pub use commands::{lookup, lookup_sub, CommandSpec};
pub use reply::{frame_reply, BadReply};
pub use request::{Limits, Parser, ProtocolError, Step};
