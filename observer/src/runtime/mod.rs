//! Reading the Go runtime's own accounting out of the target's memory:
//! where it lives (`layout`, `globals`, `table`), one reading
//! (`snapshot`), its time histograms (`histogram`) and its own heap
//! profile (`memprofile`).

pub mod globals;
pub mod goroutines;
pub mod histogram;
pub mod labels;
pub mod layout;
pub mod memprofile;
pub mod reader;
pub mod snapshot;
pub mod stacks;
pub mod table;

pub use globals::{Globals, GlobalsSource};
pub use layout::{LayoutSource, MemProfileLayout, RuntimeLayout, RuntimeOffsets};
pub use memprofile::{MemProfile, MemProfileError, MemProfileReader, MemProfileRecord};
pub use snapshot::{RuntimeSnapshot, SnapshotError};
