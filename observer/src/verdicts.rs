//! Verdicts: judgements on the collected figures that name the numbers
//! behind them and the fix.

use serde::Serialize;

use crate::commands::doctor::GcFigures;

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warn,
    Crit,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warn => "WARN",
            Severity::Crit => "CRIT",
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Verdict {
    pub id: &'static str,
    pub severity: Severity,
    pub message: String,
}

/// GC cycles per second above which the collector is running too often.
const GC_RATE_WARN: f64 = 5.0;
const GC_RATE_CRIT: f64 = 20.0;

pub fn gc_verdicts(gc: &GcFigures) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    if gc.cycles_per_s >= GC_RATE_WARN {
        let severity = if gc.cycles_per_s >= GC_RATE_CRIT {
            Severity::Crit
        } else {
            Severity::Warn
        };
        verdicts.push(Verdict {
            id: "gc_frequency",
            severity,
            message: format!(
                "GC runs {:.1} times per second ({} cycles in the window): cut the allocation rate, or give the heap more room with a higher GOGC or a GOMEMLIMIT",
                gc.cycles_per_s, gc.cycles
            ),
        });
    }
    verdicts
}
