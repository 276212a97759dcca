//! One `execute()` per subcommand.

pub mod docs;
pub mod trace;
