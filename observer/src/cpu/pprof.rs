//! pprof profiles (profile.proto, gzipped) written by hand: any sample
//! types, one location per distinct PC carrying its inlined frames
//! (function, file, line), one function per name and file. `go tool pprof`
//! reads them.

use std::{collections::HashMap, io::Write as _};

/// Appends a protobuf varint.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from(field << 3 | wire));
}

fn uint(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, 0);
    varint(out, v);
}

fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn packed(out: &mut Vec<u8>, field: u32, values: &[u64]) {
    let mut body = Vec::new();
    for &v in values {
        varint(&mut body, v);
    }
    bytes(out, field, &body);
}

/// One source frame of a location (innermost inlined call first).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceLine {
    pub function: String,
    pub file: String,
    pub line: i64,
}

/// A stack entry: a PC and its source frames.
#[derive(Clone, Debug)]
pub struct Location {
    pub pc: u64,
    pub lines: Vec<SourceLine>,
}

impl Location {
    /// A location known only by function name.
    pub fn named(pc: u64, function: &str) -> Self {
        Self {
            pc,
            lines: vec![SourceLine {
                function: function.to_string(),
                file: String::new(),
                line: 0,
            }],
        }
    }
}

/// Profile builder: stacks (leaf first) with one value per sample type.
pub struct Profile {
    strings: Vec<String>,
    string_index: HashMap<String, u64>,
    functions: HashMap<(String, String), u64>,
    locations: HashMap<u64, u64>,
    location_records: Vec<Vec<u8>>,
    function_records: Vec<Vec<u8>>,
    samples: Vec<Vec<u8>>,
    sample_types: Vec<(u64, u64)>,
    period_type: (u64, u64),
    period: u64,
}

impl Profile {
    /// `sample_types` as (type, unit); the period in units of `period_type`.
    pub fn new(sample_types: &[(&str, &str)], period_type: (&str, &str), period: u64) -> Self {
        let mut p = Self {
            strings: Vec::new(),
            string_index: HashMap::new(),
            functions: HashMap::new(),
            locations: HashMap::new(),
            location_records: Vec::new(),
            function_records: Vec::new(),
            samples: Vec::new(),
            sample_types: Vec::new(),
            period_type: (0, 0),
            period,
        };
        p.string("");
        p.sample_types = sample_types
            .iter()
            .map(|(t, u)| (p.string(t), p.string(u)))
            .collect();
        p.period_type = (p.string(period_type.0), p.string(period_type.1));
        p
    }

    fn string(&mut self, s: &str) -> u64 {
        if let Some(&i) = self.string_index.get(s) {
            return i;
        }
        let i = self.strings.len() as u64;
        self.strings.push(s.to_string());
        self.string_index.insert(s.to_string(), i);
        i
    }

    fn function(&mut self, name: &str, file: &str) -> u64 {
        let key = (name.to_string(), file.to_string());
        if let Some(&id) = self.functions.get(&key) {
            return id;
        }
        let id = self.functions.len() as u64 + 1;
        let name_index = self.string(name);
        let file_index = self.string(file);
        let mut f = Vec::new();
        uint(&mut f, 1, id);
        uint(&mut f, 2, name_index);
        uint(&mut f, 3, name_index);
        uint(&mut f, 4, file_index);
        self.function_records.push(f);
        self.functions.insert(key, id);
        id
    }

    fn location(&mut self, location: &Location) -> u64 {
        if let Some(&id) = self.locations.get(&location.pc) {
            return id;
        }
        let id = self.locations.len() as u64 + 1;
        let mut l = Vec::new();
        uint(&mut l, 1, id);
        uint(&mut l, 3, location.pc);
        for source in &location.lines {
            let function_id = self.function(&source.function, &source.file);
            let mut line = Vec::new();
            uint(&mut line, 1, function_id);
            uint(&mut line, 2, source.line.max(0) as u64);
            bytes(&mut l, 4, &line);
        }
        self.location_records.push(l);
        self.locations.insert(location.pc, id);
        id
    }

    /// Adds one sample: a stack (leaf first) and one value per sample type.
    pub fn add(&mut self, stack: &[Location], values: &[i64]) {
        let ids: Vec<u64> = stack.iter().map(|l| self.location(l)).collect();
        let mut s = Vec::new();
        packed(&mut s, 1, &ids);
        let values: Vec<u64> = values.iter().map(|&v| v as u64).collect();
        packed(&mut s, 2, &values);
        self.samples.push(s);
    }

    /// The gzipped profile.
    pub fn encode(self, duration_ns: u64) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        for (t, u) in &self.sample_types {
            let mut vt = Vec::new();
            uint(&mut vt, 1, *t);
            uint(&mut vt, 2, *u);
            bytes(&mut out, 1, &vt);
        }
        for s in &self.samples {
            bytes(&mut out, 2, s);
        }
        for l in &self.location_records {
            bytes(&mut out, 4, l);
        }
        for f in &self.function_records {
            bytes(&mut out, 5, f);
        }
        for s in &self.strings {
            bytes(&mut out, 6, s.as_bytes());
        }
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        uint(&mut out, 9, now_ns.saturating_sub(duration_ns));
        uint(&mut out, 10, duration_ns);
        let mut period_type = Vec::new();
        uint(&mut period_type, 1, self.period_type.0);
        uint(&mut period_type, 2, self.period_type.1);
        bytes(&mut out, 11, &period_type);
        uint(&mut out, 12, self.period);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&out)?;
        gz.finish()
    }
}
