//! The words the model and the classifier share, below both: a reset's
//! causes and directions, and the errnos applications get.

pub(crate) mod causes;
pub(crate) mod errno;

pub(crate) use causes::{Affected, Cause, CauseSource, Direction};
