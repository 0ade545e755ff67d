//! pprof profiles (profile.proto, gzipped) built on the prost types
//! generated from the official schema (`generated`, by `cargo xtask
//! pprof-proto`): any sample types, one location per distinct PC carrying
//! its inlined frames (function, file, line), one function per name and
//! file, every string stored once. `go tool pprof` reads them.

/// The profile.proto messages (prost-build output; regenerate, never edit).
#[rustfmt::skip]
pub mod generated;

use std::{collections::HashMap, io::Write as _};

use prost::Message as _;

use generated as proto;

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
    profile: proto::Profile,
    string_index: HashMap<String, i64>,
    /// (name, file) → function id.
    functions: HashMap<(String, String), u64>,
    /// PC → location id.
    locations: HashMap<u64, u64>,
}

impl Profile {
    /// `sample_types` as (type, unit); the period in units of `period_type`.
    pub fn new(sample_types: &[(&str, &str)], period_type: (&str, &str), period: u64) -> Self {
        let mut p = Self {
            profile: proto::Profile {
                period: period as i64,
                ..Default::default()
            },
            string_index: HashMap::new(),
            functions: HashMap::new(),
            locations: HashMap::new(),
        };
        // string_table[0] must be "".
        p.string("");
        p.profile.sample_type = sample_types
            .iter()
            .map(|(t, u)| p.value_type(t, u))
            .collect();
        p.profile.period_type = Some(p.value_type(period_type.0, period_type.1));
        p
    }

    fn value_type(&mut self, r#type: &str, unit: &str) -> proto::ValueType {
        proto::ValueType {
            r#type: self.string(r#type),
            unit: self.string(unit),
        }
    }

    fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.string_index.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_string());
        self.string_index.insert(s.to_string(), i);
        i
    }

    fn function(&mut self, name: &str, file: &str) -> u64 {
        let key = (name.to_string(), file.to_string());
        if let Some(&id) = self.functions.get(&key) {
            return id;
        }
        let id = self.profile.function.len() as u64 + 1;
        let name_index = self.string(name);
        let file_index = self.string(file);
        self.profile.function.push(proto::Function {
            id,
            name: name_index,
            system_name: name_index,
            filename: file_index,
            start_line: 0,
        });
        self.functions.insert(key, id);
        id
    }

    fn location(&mut self, location: &Location) -> u64 {
        if let Some(&id) = self.locations.get(&location.pc) {
            return id;
        }
        let id = self.profile.location.len() as u64 + 1;
        let line = location
            .lines
            .iter()
            .map(|source| proto::Line {
                function_id: self.function(&source.function, &source.file),
                line: source.line.max(0),
                column: 0,
            })
            .collect();
        self.profile.location.push(proto::Location {
            id,
            address: location.pc,
            line,
            ..Default::default()
        });
        self.locations.insert(location.pc, id);
        id
    }

    /// Adds one sample: a stack (leaf first) and one value per sample type.
    pub fn add(&mut self, stack: &[Location], values: &[i64]) {
        self.add_labeled(stack, values, &[]);
    }

    /// A sample with string labels (key, value), as pprof labels are.
    pub fn add_labeled(&mut self, stack: &[Location], values: &[i64], labels: &[(&str, &str)]) {
        let location_id = stack.iter().map(|l| self.location(l)).collect();
        let label = labels
            .iter()
            .map(|(k, v)| proto::Label {
                key: self.string(k),
                str: self.string(v),
                ..Default::default()
            })
            .collect();
        self.profile.sample.push(proto::Sample {
            location_id,
            value: values.to_vec(),
            label,
        });
    }

    /// The gzipped profile; the window ended now and lasted `duration_ns`.
    pub fn encode(mut self, duration_ns: u64) -> std::io::Result<Vec<u8>> {
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.profile.time_nanos = now_ns.saturating_sub(duration_ns) as i64;
        self.profile.duration_nanos = duration_ns as i64;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&self.profile.encode_to_vec())?;
        gz.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn decode(gzipped: &[u8]) -> proto::Profile {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(gzipped)
            .read_to_end(&mut raw)
            .unwrap();
        proto::Profile::decode(raw.as_slice()).unwrap()
    }

    fn line(function: &str, file: &str, line: i64) -> SourceLine {
        SourceLine {
            function: function.into(),
            file: file.into(),
            line,
        }
    }

    #[test]
    fn written_profile_decodes_with_its_types_values_and_inlined_lines() {
        let mut profile = Profile::new(
            &[("alloc_objects", "count"), ("alloc_space", "bytes")],
            ("space", "bytes"),
            512 * 1024,
        );
        let inlined = Location {
            pc: 0x4010,
            lines: vec![
                line("main.inner", "/src/main.go", 12),
                line("main.outer", "/src/main.go", 30),
            ],
        };
        let caller = Location::named(0x5020, "main.main");
        profile.add(&[inlined.clone(), caller.clone()], &[3, 144]);
        profile.add(&[inlined, caller], &[1, 48]);
        let decoded = decode(&profile.encode(2_000_000_000).unwrap());
        let s = |i: i64| decoded.string_table[i as usize].as_str();

        assert_eq!(decoded.string_table[0], "");
        let types: Vec<(&str, &str)> = decoded
            .sample_type
            .iter()
            .map(|t| (s(t.r#type), s(t.unit)))
            .collect();
        assert_eq!(
            types,
            [("alloc_objects", "count"), ("alloc_space", "bytes")]
        );
        let period_type = decoded.period_type.unwrap();
        assert_eq!(
            (s(period_type.r#type), s(period_type.unit)),
            ("space", "bytes")
        );
        assert_eq!(decoded.period, 512 * 1024);
        assert_eq!(decoded.duration_nanos, 2_000_000_000);

        assert_eq!(decoded.sample.len(), 2);
        assert_eq!(decoded.sample[0].value, [3, 144]);
        assert_eq!(decoded.sample[1].value, [1, 48]);
        // One location per PC, shared by both samples.
        assert_eq!(decoded.location.len(), 2);
        assert_eq!(decoded.sample[0].location_id, decoded.sample[1].location_id);

        let leaf = decoded
            .location
            .iter()
            .find(|l| l.id == decoded.sample[0].location_id[0])
            .unwrap();
        assert_eq!(leaf.address, 0x4010);
        let frames: Vec<(&str, &str, i64)> = leaf
            .line
            .iter()
            .map(|l| {
                let f = decoded
                    .function
                    .iter()
                    .find(|f| f.id == l.function_id)
                    .unwrap();
                (s(f.name), s(f.filename), l.line)
            })
            .collect();
        assert_eq!(
            frames,
            [
                ("main.inner", "/src/main.go", 12),
                ("main.outer", "/src/main.go", 30)
            ]
        );
        // One function per (name, file); every string once.
        assert_eq!(decoded.function.len(), 3);
        let mut strings = decoded.string_table.clone();
        strings.sort();
        strings.dedup();
        assert_eq!(strings.len(), decoded.string_table.len());
    }
}
