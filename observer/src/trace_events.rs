//! The Chrome trace-event JSON writer behind `goscope trace` (Perfetto's UI
//! and chrome://tracing open it). The file is the JSON *array* form, one
//! event per line, flushed as it goes: a file cut short (SIGKILL, a full
//! disk) is a valid prefix that those viewers still load, and a closed one
//! ends with `]`. Gzip when the name ends in `.gz` (flushed with a sync
//! flush, so a cut-short .gz decodes up to the last flush too).
//!
//! Every timestamp is CLOCK_MONOTONIC (the Go runtime's nanotime on Linux,
//! the clock the kernel programs see), written in microseconds with
//! nanosecond digits. Size is bounded: at most `cap_per_s` events whose
//! timestamps fall in one second of the trace; what did not fit is counted
//! by kind and said in the file (a `goscope: events dropped` instant for
//! that second, and totals in the closing `goscope: trace ended` event).

use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use flate2::{Compression, write::GzEncoder};
use serde_json::{Value, json};

/// Seconds of trace time a bucket stays open for late events (a GC
/// cycle is written when it ends, stamped when it began) before its
/// drop note is written.
const BUCKET_GRACE_S: u64 = 2;
/// Bytes buffered before a write reaches the file (it is also flushed on
/// every `flush`).
const BUFFER_BYTES: usize = 64 << 10;

pub use crate::clock::monotonic_ns;

/// A trace-event timestamp or duration: microseconds, exact to the ns.
pub fn micros(ns: u64) -> Value {
    // Written as a decimal with three places: f64 keeps them exactly for
    // any uptime below ~285 years.
    let text = format!("{}.{:03}", ns / 1000, ns % 1000);
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[derive(Debug, thiserror::Error)]
pub enum TraceWriteError {
    #[error(transparent)]
    Open(#[from] crate::outfile::OutfileError),
    #[error("writing {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

enum Sink {
    Plain(BufWriter<File>),
    Gzip(GzEncoder<BufWriter<File>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(w) => w.write(buf),
            Self::Gzip(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(w) => w.flush(),
            // A sync flush: everything so far decodes from the file.
            Self::Gzip(w) => w.flush(),
        }
    }
}

/// Events written and dropped in one second of the trace.
#[derive(Default)]
struct Bucket {
    written: u32,
    written_by_kind: BTreeMap<&'static str, u32>,
    dropped: BTreeMap<&'static str, u64>,
}

/// What a finished trace held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceTotals {
    pub written: u64,
    pub dropped: BTreeMap<&'static str, u64>,
}

impl TraceTotals {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }
}

/// A trace being written (see the module doc).
pub struct TraceWriter {
    sink: Sink,
    path: PathBuf,
    first: bool,
    cap_per_s: u32,
    origin_ns: u64,
    pid: u32,
    buckets: BTreeMap<u64, Bucket>,
    totals: TraceTotals,
}

impl TraceWriter {
    /// Creates `path` (safely, as `outfile::create_streaming` does) and
    /// writes the opening `[`. `origin_ns` is the trace's start on
    /// CLOCK_MONOTONIC; seconds for the cap count from it. `pid` is the
    /// process the drop notes are put on.
    pub fn create(
        path: &Path,
        cap_per_s: u32,
        origin_ns: u64,
        pid: u32,
    ) -> Result<Self, TraceWriteError> {
        let file = crate::outfile::create_streaming(path)?;
        let buffered = BufWriter::with_capacity(BUFFER_BYTES, file);
        let gzip = path.extension().is_some_and(|e| e == "gz");
        let sink = if gzip {
            Sink::Gzip(GzEncoder::new(buffered, Compression::fast()))
        } else {
            Sink::Plain(buffered)
        };
        Self::over(sink, path, cap_per_s, origin_ns, pid)
    }

    fn over(
        mut sink: Sink,
        path: &Path,
        cap_per_s: u32,
        origin_ns: u64,
        pid: u32,
    ) -> Result<Self, TraceWriteError> {
        sink.write_all(b"[\n")
            .map_err(|source| TraceWriteError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            sink,
            path: path.to_path_buf(),
            first: true,
            cap_per_s,
            origin_ns,
            pid,
            buckets: BTreeMap::new(),
            totals: TraceTotals::default(),
        })
    }

    fn io(&self, source: io::Error) -> TraceWriteError {
        TraceWriteError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn write_one(&mut self, event: &Value) -> Result<(), TraceWriteError> {
        let separator: &[u8] = if self.first { b"" } else { b",\n" };
        self.first = false;
        let mut line = separator.to_vec();
        serde_json::to_writer(&mut line, event).map_err(|e| self.io(io::Error::other(e)))?;
        self.sink.write_all(&line).map_err(|e| self.io(e))
    }

    /// Writes an event outside the cap (metadata, notes): at most a few
    /// per second.
    pub fn uncounted(&mut self, event: &Value) -> Result<(), TraceWriteError> {
        self.write_one(event)
    }

    fn second_of(&self, ts_ns: u64) -> u64 {
        ts_ns.saturating_sub(self.origin_ns) / 1_000_000_000
    }

    /// Writes `events` (one group: all or none) of `kind`, stamped at
    /// `ts_ns`, if they fit the cap of that second; else counts them as
    /// dropped. Returns whether they were written.
    pub fn emit(
        &mut self,
        kind: &'static str,
        ts_ns: u64,
        events: &[Value],
    ) -> Result<bool, TraceWriteError> {
        self.emit_within(kind, u32::MAX, ts_ns, events)
    }

    /// As `emit`, with `kind` also held to `kind_cap` events a second, so
    /// a busy kind (thread states) leaves the rest of the cap to the
    /// others.
    pub fn emit_within(
        &mut self,
        kind: &'static str,
        kind_cap: u32,
        ts_ns: u64,
        events: &[Value],
    ) -> Result<bool, TraceWriteError> {
        let second = self.second_of(ts_ns);
        let cap = self.cap_per_s;
        let bucket = self.buckets.entry(second).or_default();
        let n = u32::try_from(events.len()).unwrap_or(u32::MAX);
        let of_kind = bucket.written_by_kind.entry(kind).or_default();
        if bucket.written.saturating_add(n) > cap || of_kind.saturating_add(n) > kind_cap {
            *bucket.dropped.entry(kind).or_default() += events.len() as u64;
            *self.totals.dropped.entry(kind).or_default() += events.len() as u64;
            return Ok(false);
        }
        *of_kind += n;
        bucket.written += n;
        for event in events {
            self.write_one(event)?;
        }
        self.totals.written += events.len() as u64;
        Ok(true)
    }

    /// Closes the buckets older than `now_ns` allows (writing their drop
    /// notes) and pushes what is buffered to the file.
    pub fn flush(&mut self, now_ns: u64) -> Result<(), TraceWriteError> {
        let current = self.second_of(now_ns);
        self.close_buckets(|second| second + BUCKET_GRACE_S < current)?;
        self.sink.flush().map_err(|e| self.io(e))
    }

    fn close_buckets(&mut self, done: impl Fn(u64) -> bool) -> Result<(), TraceWriteError> {
        let closed: Vec<u64> = self.buckets.keys().copied().filter(|&s| done(s)).collect();
        for second in closed {
            let Some(bucket) = self.buckets.remove(&second) else {
                continue;
            };
            if bucket.dropped.is_empty() {
                continue;
            }
            let start = self.origin_ns + second * 1_000_000_000;
            let note = json!({
                "name": "goscope: events dropped",
                "cat": "goscope",
                "ph": "i",
                "s": "p",
                "ts": micros(start),
                "pid": self.pid,
                "tid": 0,
                "args": {
                    "second": second,
                    "cap_per_s": self.cap_per_s,
                    "written": bucket.written,
                    "dropped": bucket.dropped,
                },
            });
            self.write_one(&note)?;
        }
        Ok(())
    }

    /// Writes the remaining drop notes, `closing` (an event whose args get
    /// the totals under "written" and "dropped"), the closing `]`, and
    /// syncs the file.
    pub fn finish(mut self, mut closing: Value) -> Result<TraceTotals, TraceWriteError> {
        self.close_buckets(|_| true)?;
        if let Some(args) = closing.get_mut("args").and_then(Value::as_object_mut) {
            args.insert("written".into(), json!(self.totals.written));
            args.insert("dropped".into(), json!(self.totals.dropped));
            args.insert("cap_per_s".into(), json!(self.cap_per_s));
        }
        self.write_one(&closing)?;
        self.sink.write_all(b"\n]\n").map_err(|e| self.io(e))?;
        let file = match self.sink {
            Sink::Plain(w) => w.into_inner().map_err(|e| e.into_error()),
            Sink::Gzip(w) => w
                .finish()
                .and_then(|b| b.into_inner().map_err(|e| e.into_error())),
        }
        .map_err(|source| TraceWriteError::Io {
            path: self.path.clone(),
            source,
        })?;
        file.sync_all().map_err(|source| TraceWriteError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts_ns: u64) -> Value {
        json!({"name": "e", "ph": "i", "s": "t", "ts": micros(ts_ns), "pid": 1, "tid": 1})
    }

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("goscope-trace-test-{}-{name}", std::process::id()))
    }

    #[test]
    fn micros_keep_nanoseconds() {
        assert_eq!(micros(1_234_567_891).to_string(), "1234567.891");
        assert_eq!(micros(5).to_string(), "0.005");
    }

    #[test]
    fn the_cap_drops_whole_groups_and_the_file_says_so() {
        let path = temp("cap.json");
        let mut w = TraceWriter::create(&path, 3, 0, 7).unwrap();
        assert!(w.emit("gc", 10, &[event(10), event(11)]).unwrap());
        // Two more do not fit the cap of 3 in second 0: neither is written.
        assert!(!w.emit("gc", 20, &[event(20), event(21)]).unwrap());
        assert!(w.emit("counter", 30, &[event(30)]).unwrap());
        assert!(!w.emit("counter", 40, &[event(40)]).unwrap());
        // The next second has its own cap.
        assert!(
            w.emit("counter", 1_000_000_000, &[event(1_000_000_000)])
                .unwrap()
        );
        let totals = w
            .finish(json!({"name": "end", "ph": "i", "s": "g", "ts": 0, "pid": 7, "tid": 0, "args": {}}))
            .unwrap();
        assert_eq!(totals.written, 4);
        assert_eq!(totals.dropped["gc"], 2);
        assert_eq!(totals.dropped["counter"], 1);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let events: Vec<Value> = serde_json::from_str(&text).unwrap();
        let note = events
            .iter()
            .find(|e| e["name"] == "goscope: events dropped")
            .unwrap();
        assert_eq!(note["args"]["second"], 0);
        assert_eq!(note["args"]["dropped"]["gc"], 2);
        assert_eq!(events.last().unwrap()["args"]["dropped"]["counter"], 1);
        assert!(text.ends_with("\n]\n"));
    }

    #[test]
    fn a_gzip_trace_decodes_before_it_is_closed() {
        use std::io::Read as _;
        let path = temp("cut.json.gz");
        let mut w = TraceWriter::create(&path, 100, 0, 1).unwrap();
        w.emit("gc", 1, &[event(1)]).unwrap();
        w.flush(1).unwrap();
        // Read while still open (as after a SIGKILL): a prefix of the array.
        let raw = std::fs::read(&path).unwrap();
        let mut text = String::new();
        let _ = flate2::read::GzDecoder::new(&raw[..]).read_to_string(&mut text);
        assert!(text.starts_with("[\n{"), "{text:?}");
        let events: Vec<Value> = serde_json::from_str(&format!("{text}]")).unwrap();
        assert_eq!(events.len(), 1);
        drop(w);
        std::fs::remove_file(&path).unwrap();
    }
}
