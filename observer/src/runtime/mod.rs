//! Reading the Go runtime's own accounting out of the target's memory:
//! where it lives (`layout`), one reading (`snapshot`), and its time
//! histograms (`histogram`).

pub mod histogram;
pub mod layout;
pub mod snapshot;

pub use layout::{LayoutSource, RuntimeLayout};
pub use snapshot::{RuntimeSnapshot, SnapshotError};
