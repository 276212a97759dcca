//! One `execute()` per subcommand.

pub mod docs;
pub mod doctor;
pub mod trace;
