//! One module per subcommand.

pub mod doctor;
pub mod gc;
pub mod inspect;
pub mod sched;
