//! goscope's integration tests: real Go targets built from workloads/ with
//! real toolchains, the real goscope binary, real eBPF where root allows.
//! Tests that need root say so and skip outside CI (GOSCOPE_CI=1 makes a
//! skip a failure).

mod accuracy;
mod agent;
mod agent_hostile;
mod alloc;
mod bad_input;
mod binary_maps;
mod cpu;
mod cpu_classes;
mod dist;
mod doctor;
mod exec;
mod explain;
mod flamegraph;
mod gc;
mod golden;
mod goroutine_dump;
mod goroutines;
mod heatmap;
mod hostile;
mod inspect;
mod install;
mod layers;
mod memprofile;
mod otlp;
mod outfile;
mod pidns;
mod ps;
mod readme;
mod runtime_table;
mod sched;
mod sched_bound;
mod top;
mod trace;
mod util;
