//! Escape analysis at the hot allocation sites (`goscope explain`): the
//! compiler's own escape decisions (`reasons`, from its structured
//! optimisation log, built by `build`) joined by file:line to where a
//! profile says the bytes are allocated (`join`).

pub mod build;
pub mod join;
pub mod reasons;
pub mod same_code;
