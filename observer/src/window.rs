//! The observation window: runs until its duration elapses, Ctrl-C (SIGINT)
//! or SIGTERM arrives, or the target exits; whichever comes first.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::target::TargetProcess;

const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How often the target's liveness is checked (reading /proc/PID/stat
/// walks the target's threads, so not at every tick).
const LIVENESS_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WindowEnd {
    Elapsed,
    Interrupted,
    TargetExited,
}

/// Catches SIGINT/SIGTERM from process start, so that a signal arriving
/// during attach still ends the window cleanly (and detaches).
#[derive(Clone)]
pub struct StopSignal {
    raised: Arc<AtomicBool>,
}

impl StopSignal {
    pub fn install() -> anyhow::Result<Self> {
        let raised = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&raised))?;
        }
        Ok(Self { raised })
    }

    pub fn raised(&self) -> bool {
        self.raised.load(Ordering::Relaxed)
    }
}

/// Waits out the window, calling `on_tick` every `tick` (if given) with the
/// time since the window began.
pub fn observe(
    duration: Duration,
    target: &TargetProcess,
    stop: &StopSignal,
    tick: Option<Duration>,
    mut on_tick: impl FnMut(Duration),
) -> (WindowEnd, Duration) {
    let start = Instant::now();
    let mut next_tick = tick;
    let mut next_liveness = Duration::ZERO;
    loop {
        let elapsed = start.elapsed();
        if stop.raised() {
            return (WindowEnd::Interrupted, elapsed);
        }
        if elapsed >= next_liveness {
            if !target.is_alive() {
                return (WindowEnd::TargetExited, elapsed);
            }
            next_liveness = elapsed + LIVENESS_INTERVAL;
        }
        if elapsed >= duration {
            return (WindowEnd::Elapsed, elapsed);
        }
        if let (Some(due), Some(step)) = (next_tick, tick)
            && elapsed >= due
        {
            on_tick(elapsed);
            next_tick = Some(due + step);
        }
        let nap = tick.map_or(POLL_INTERVAL, |t| t.min(POLL_INTERVAL));
        std::thread::sleep(nap.min(duration - elapsed));
    }
}
