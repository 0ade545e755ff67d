//! Reading the Go runtime's own accounting out of the target's memory:
//! where it lives (`layout`, `globals`, `table`), one reading
//! (`snapshot`), and its time histograms (`histogram`).

pub mod globals;
pub mod histogram;
pub mod layout;
pub mod reader;
pub mod snapshot;
pub mod table;

pub use globals::{Globals, GlobalsSource};
pub use layout::{LayoutSource, RuntimeLayout, RuntimeOffsets};
pub use snapshot::{RuntimeSnapshot, SnapshotError};
