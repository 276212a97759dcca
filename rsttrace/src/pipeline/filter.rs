//! Which resets to report: `--cause`, `--direction`, `--port`, `--pid`
//! (`--netns` is applied in the kernel).

use std::collections::HashSet;

use crate::{
    classify::{Cause, Classification},
    model::conn::Conn,
};

#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub causes: Option<HashSet<Cause>>,
    pub direction: Option<crate::classify::Direction>,
    pub port: Option<u16>,
    pub pid: Option<u32>,
}

impl Filter {
    /// What can be decided before the owner is known.
    pub(crate) fn admits(&self, class: &Classification, conn: &Conn) -> bool {
        self.causes
            .as_ref()
            .is_none_or(|c| c.contains(&class.cause))
            && self.direction.is_none_or(|d| d == class.cause.direction())
            && self
                .port
                .is_none_or(|p| p == conn.local_port || p == conn.remote_port)
    }

    pub(crate) fn admits_owner(&self, pid: Option<u32>) -> bool {
        self.pid.is_none_or(|want| pid == Some(want))
    }
}
