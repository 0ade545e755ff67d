//! The window report, outside any command: the figures of one window
//! (`figures`, built from two readings), the verdicts judged on them
//! (`verdicts`), and the text helpers every output shares.

pub mod figures;
pub mod goroutines;
pub mod overhead;
pub mod sched_bound;
pub mod table;
pub mod verdicts;

pub use figures::{DoctorReport, GcFigures};
