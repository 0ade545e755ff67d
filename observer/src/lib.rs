//! goscope: a live observer for running Go processes. The library behind the
//! `goscope` binary: binary inspection, probe planning and attachment,
//! collection, verdicts and outputs.

pub mod agent;
pub mod alloc_sites;
pub mod attachment;
pub mod binary;
pub mod cgroup;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod cpu;
pub mod escapes;
pub mod flamegraph;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod goroutine_dump;
pub mod k8s;
pub mod leak_watch;
pub mod live_status;
pub mod memory;
pub mod outfile;
pub mod output;
pub mod pprof;
pub mod privilege;
pub mod probe_points;
pub mod probes;
pub mod process_list;
pub mod report;
pub mod runtime;
pub mod session;
pub mod symbols;
pub mod target;
pub mod trace_assists;
pub mod trace_cgo;
pub mod trace_events;
pub mod trace_governed;
pub mod trace_threads;
pub mod wall_profile;
pub mod window;
