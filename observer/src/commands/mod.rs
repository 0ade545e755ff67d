//! One module per subcommand.

pub mod alloc;
pub mod cpu;
pub mod doctor;
pub mod explain;
pub mod flamegraph;
pub mod gc;
pub mod goroutines;
pub mod heatmap;
pub mod inspect;
pub mod ps;
pub mod sched;
pub mod top;
pub mod trace;
