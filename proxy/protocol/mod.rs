//! Wire protocols. Each codec is a set of pure functions over byte slices: they never touch a
//! socket, so they are unit-, property- and fuzz-testable in isolation.

pub mod memcache;
pub mod resp;
