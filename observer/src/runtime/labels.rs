//! A goroutine's pprof labels (`g.labels`, set by pprof.Do and
//! SetGoroutineLabels) read from the target's memory. g.labels points at
//! runtime/pprof's labelMap: up to Go 1.23 a `map[string]string` (so a
//! pointer to the map's *hmap), from Go 1.24 a struct whose first field is
//! a `[]label{key, value string}` slice. Every count, length and pointer is
//! bounded before it is used; a corrupt table is an error, never a hang.

use crate::memory::TargetMemory;

/// Labels one goroutine may carry before the set is taken as corrupt.
pub const MAX_LABELS: u64 = 256;
/// Longest key or value read.
pub const MAX_LABEL_LEN: u64 = 4096;
/// Largest hash-map bucket count read (2^B).
const MAX_B: u8 = 8;
/// Buckets read per label map (main, old and overflow buckets together).
const MAX_BUCKETS: usize = 512;
/// Bytes of keys and values one goroutine's labels may hold.
pub const MAX_LABEL_BYTES: usize = 16 << 10;

/// One (key, value) label.
pub type Label = (String, String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LabelError {
    #[error("labels at {address:#x}: unreadable")]
    Unreadable { address: u64 },
    #[error("labels at {address:#x}: {detail}")]
    Corrupt { address: u64, detail: String },
}

fn word(memory: &dyn TargetMemory, address: u64) -> Result<u64, LabelError> {
    memory
        .read_u64(address)
        .map_err(|_| LabelError::Unreadable { address })
}

/// A Go string {ptr, len} at `address`.
fn string_at(memory: &dyn TargetMemory, address: u64) -> Result<String, LabelError> {
    let ptr = word(memory, address)?;
    let len = word(
        memory,
        address
            .checked_add(8)
            .ok_or(LabelError::Unreadable { address })?,
    )?;
    if len == 0 {
        return Ok(String::new());
    }
    if len > MAX_LABEL_LEN {
        return Err(LabelError::Corrupt {
            address,
            detail: format!("a label of {len} bytes"),
        });
    }
    let bytes = memory
        .read_vec(ptr, len as usize)
        .map_err(|_| LabelError::Unreadable { address: ptr })?;
    Ok(crate::format::escape_control(&String::from_utf8_lossy(
        &bytes,
    )))
}

/// The labels at g.labels = `pointer` (0: none) of a Go 1.`minor` target,
/// sorted by key.
pub fn read(memory: &dyn TargetMemory, pointer: u64, minor: u32) -> Result<Vec<Label>, LabelError> {
    if pointer == 0 {
        return Ok(Vec::new());
    }
    let mut labels = if minor >= 24 {
        read_list(memory, pointer)?
    } else {
        read_map(memory, word(memory, pointer)?)?
    };
    let bytes: usize = labels.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_LABEL_BYTES {
        return Err(LabelError::Corrupt {
            address: pointer,
            detail: format!("{bytes} bytes of labels"),
        });
    }
    labels.sort();
    labels.dedup_by(|a, b| a.0 == b.0);
    Ok(labels)
}

/// `struct { list []label }`, label = {key, value string} (32 bytes).
fn read_list(memory: &dyn TargetMemory, address: u64) -> Result<Vec<Label>, LabelError> {
    const LABEL_SIZE: u64 = 32;
    let (array, len) = (word(memory, address)?, word(memory, address + 8)?);
    if len > MAX_LABELS {
        return Err(LabelError::Corrupt {
            address,
            detail: format!("{len} labels"),
        });
    }
    (0..len)
        .map(|i| {
            let at = array
                .checked_add(i * LABEL_SIZE)
                .ok_or(LabelError::Unreadable { address: array })?;
            Ok((string_at(memory, at)?, string_at(memory, at + 16)?))
        })
        .collect()
}

/// A `map[string]string` by its *hmap (Go 1.21-1.23 buckets: 8 tophash
/// bytes, 8 keys, 8 values, an overflow pointer).
fn read_map(memory: &dyn TargetMemory, hmap: u64) -> Result<Vec<Label>, LabelError> {
    const BUCKET_SIZE: u64 = 8 + 8 * 16 + 8 * 16 + 8;
    /// tophash values below this are empty or evacuated cells.
    const MIN_TOP_HASH: u8 = 5;
    if hmap == 0 {
        return Ok(Vec::new());
    }
    let count = word(memory, hmap)?;
    let b = (word(memory, hmap + 8)? >> 8) as u8;
    let corrupt = |detail: String| LabelError::Corrupt {
        address: hmap,
        detail,
    };
    if count > MAX_LABELS {
        return Err(corrupt(format!("{count} labels")));
    }
    if b > MAX_B {
        return Err(corrupt(format!("2^{b} buckets")));
    }
    let mut labels = Vec::new();
    let mut visited = std::collections::HashSet::new();
    for table in [word(memory, hmap + 16)?, word(memory, hmap + 24)?] {
        if table == 0 {
            continue;
        }
        for index in 0..(1u64 << b) {
            let mut bucket = table
                .checked_add(index * BUCKET_SIZE)
                .ok_or(LabelError::Unreadable { address: table })?;
            loop {
                if labels.len() as u64 >= count {
                    return Ok(labels);
                }
                if !visited.insert(bucket) {
                    return Err(corrupt(format!("bucket {bucket:#x} reached twice")));
                }
                if visited.len() > MAX_BUCKETS {
                    return Err(corrupt(format!("more than {MAX_BUCKETS} buckets")));
                }
                let cells = memory
                    .read_vec(bucket, BUCKET_SIZE as usize)
                    .map_err(|_| LabelError::Unreadable { address: bucket })?;
                for (slot, &top) in cells[..8].iter().enumerate() {
                    if top < MIN_TOP_HASH {
                        continue;
                    }
                    let key = bucket + 8 + slot as u64 * 16;
                    labels.push((string_at(memory, key)?, string_at(memory, key + 128)?));
                }
                let overflow = u64::from_le_bytes(cells[264..272].try_into().unwrap_or_default());
                if overflow == 0 {
                    break;
                }
                bucket = overflow;
            }
        }
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SnapshotMemory;

    fn put(memory: &mut [u8], at: usize, value: u64) {
        memory[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    #[test]
    fn the_list_form_is_read_sorted_and_bounded() {
        const BASE: u64 = 0x1000;
        let mut bytes = vec![0u8; 0x400];
        // labelMap{list: [("z","1"), ("a","2")]} at BASE.
        put(&mut bytes, 0, BASE + 0x100);
        put(&mut bytes, 8, 2);
        put(&mut bytes, 16, 2);
        bytes[0x300..0x304].copy_from_slice(b"za12");
        for (i, (k, v)) in [(0x300u64, 0x302u64), (0x301, 0x303)].iter().enumerate() {
            let at = 0x100 + i * 32;
            put(&mut bytes, at, BASE + k);
            put(&mut bytes, at + 8, 1);
            put(&mut bytes, at + 16, BASE + v);
            put(&mut bytes, at + 24, 1);
        }
        let mut memory = SnapshotMemory::default();
        memory.insert(BASE, bytes.clone());
        assert_eq!(
            read(&memory, BASE, 27).unwrap(),
            vec![("a".into(), "2".into()), ("z".into(), "1".into())]
        );
        put(&mut bytes, 8, 1 << 40);
        let mut memory = SnapshotMemory::default();
        memory.insert(BASE, bytes);
        assert!(matches!(
            read(&memory, BASE, 27),
            Err(LabelError::Corrupt { .. })
        ));
        assert_eq!(read(&memory, 0, 27).unwrap(), vec![]);
    }

    #[test]
    fn the_map_form_follows_buckets_and_refuses_loops_past_the_cap() {
        const BASE: u64 = 0x1000;
        let mut bytes = vec![0u8; 0x1000];
        // pointer -> *hmap at BASE+0x10; hmap{count 1, B 0, buckets}.
        put(&mut bytes, 0, BASE + 0x10);
        put(&mut bytes, 0x10, 1);
        put(&mut bytes, 0x10 + 16, BASE + 0x100);
        bytes[0x100] = 9; // tophash of slot 0
        bytes[0x800..0x802].copy_from_slice(b"kv");
        put(&mut bytes, 0x108, BASE + 0x800);
        put(&mut bytes, 0x110, 1);
        put(&mut bytes, 0x108 + 128, BASE + 0x801);
        put(&mut bytes, 0x110 + 128, 1);
        let mut memory = SnapshotMemory::default();
        memory.insert(BASE, bytes.clone());
        assert_eq!(
            read(&memory, BASE, 21).unwrap(),
            vec![("k".into(), "v".into())]
        );
        // An overflow pointer to itself with the label not found yet: a
        // cycle, refused.
        bytes[0x100] = 0;
        put(&mut bytes, 0x100 + 264, BASE + 0x100);
        let mut memory = SnapshotMemory::default();
        memory.insert(BASE, bytes);
        assert!(matches!(
            read(&memory, BASE, 21),
            Err(LabelError::Corrupt { .. })
        ));
    }
}
