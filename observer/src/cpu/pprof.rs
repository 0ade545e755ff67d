//! A pprof CPU profile (profile.proto, gzipped) written by hand: sample
//! types samples/count and cpu/nanoseconds, one location and function per
//! distinct PC/function. `go tool pprof` reads it.

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

/// Profile builder: stacks of PCs (leaf first) with a sample count.
pub struct Profile {
    strings: Vec<String>,
    string_index: HashMap<String, u64>,
    functions: HashMap<String, u64>,
    locations: HashMap<u64, u64>,
    location_records: Vec<Vec<u8>>,
    function_records: Vec<Vec<u8>>,
    samples: Vec<Vec<u8>>,
    period_ns: u64,
}

impl Profile {
    pub fn new(period_ns: u64) -> Self {
        let mut p = Self {
            strings: Vec::new(),
            string_index: HashMap::new(),
            functions: HashMap::new(),
            locations: HashMap::new(),
            location_records: Vec::new(),
            function_records: Vec::new(),
            samples: Vec::new(),
            period_ns,
        };
        p.string("");
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

    fn function(&mut self, name: &str) -> u64 {
        if let Some(&id) = self.functions.get(name) {
            return id;
        }
        let id = self.functions.len() as u64 + 1;
        let name_index = self.string(name);
        let mut f = Vec::new();
        uint(&mut f, 1, id);
        uint(&mut f, 2, name_index);
        uint(&mut f, 3, name_index);
        self.function_records.push(f);
        self.functions.insert(name.to_string(), id);
        id
    }

    fn location(&mut self, pc: u64, function: &str) -> u64 {
        if let Some(&id) = self.locations.get(&pc) {
            return id;
        }
        let id = self.locations.len() as u64 + 1;
        let function_id = self.function(function);
        let mut line = Vec::new();
        uint(&mut line, 1, function_id);
        let mut l = Vec::new();
        uint(&mut l, 1, id);
        uint(&mut l, 3, pc);
        bytes(&mut l, 4, &line);
        self.location_records.push(l);
        self.locations.insert(pc, id);
        id
    }

    /// Adds `count` samples of a stack: (pc, function name) leaf first.
    pub fn add(&mut self, stack: &[(u64, String)], count: u64) {
        let ids: Vec<u64> = stack.iter().map(|(pc, f)| self.location(*pc, f)).collect();
        let mut s = Vec::new();
        packed(&mut s, 1, &ids);
        packed(&mut s, 2, &[count, count * self.period_ns]);
        self.samples.push(s);
    }

    /// The gzipped profile.
    pub fn encode(mut self, duration_ns: u64) -> std::io::Result<Vec<u8>> {
        let samples_type = (self.string("samples"), self.string("count"));
        let cpu_type = (self.string("cpu"), self.string("nanoseconds"));
        let mut out = Vec::new();
        for (t, u) in [samples_type, cpu_type] {
            let mut vt = Vec::new();
            uint(&mut vt, 1, t);
            uint(&mut vt, 2, u);
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
        uint(&mut out, 10, duration_ns);
        let mut period_type = Vec::new();
        uint(&mut period_type, 1, cpu_type.0);
        uint(&mut period_type, 2, cpu_type.1);
        bytes(&mut out, 11, &period_type);
        uint(&mut out, 12, self.period_ns);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&out)?;
        gz.finish()
    }
}
