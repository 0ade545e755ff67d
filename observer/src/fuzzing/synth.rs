//! Small synthetic inputs for tests and fuzz seeds: an ELF writer, Go build
//! info, DWARF describing the runtime structures of a `RuntimeOffsets`,
//! code whose RIP-relative operands match a version's reference sites, a
//! Go 1.20+ pclntab, and memory images of a runtime and a profile. Each
//! input is a few KiB, so seed corpora can be committed.

use std::collections::BTreeMap;

use crate::runtime::{
    RuntimeOffsets,
    globals::{Global, ReferenceSite},
    layout::TimeHistogramLayout,
};

/// Where synthetic executables are linked.
pub const TEXT_BASE: u64 = 0x40_0000;

/// One section of a synthetic ELF.
pub struct Section {
    pub name: String,
    /// SHT_PROGBITS (1) unless said otherwise.
    pub kind: u32,
    /// SHF_ALLOC (2) | SHF_EXECINSTR (4) ..., SHF_COMPRESSED (0x800).
    pub flags: u64,
    pub data: Vec<u8>,
}

/// A symbol of a synthetic ELF: STT_OBJECT (1) or STT_FUNC (2).
pub struct Symbol {
    pub name: String,
    pub kind: u8,
    pub address: u64,
    pub size: u64,
}

pub const SHF_ALLOC: u64 = 2;
pub const SHF_EXECINSTR: u64 = 4;
pub const SHF_COMPRESSED: u64 = 0x800;

/// A position-dependent x86-64 executable with one PT_LOAD mapping the
/// whole file at `TEXT_BASE` (an allocated section's address is
/// `TEXT_BASE` + its file offset). `.symtab` is written when `symbols` is
/// not empty.
pub fn elf(sections: &[Section], symbols: &[Symbol]) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    let mut out = vec![0u8; EHDR + PHDR];
    let align = |out: &mut Vec<u8>| out.resize(out.len().next_multiple_of(16), 0);
    // (name, type, flags, addr, offset, size, link, entsize)
    type Header = (String, u32, u64, u64, u64, u64, u32, u64);
    let mut headers: Vec<Header> = Vec::new();
    for s in sections {
        align(&mut out);
        let offset = out.len() as u64;
        let addr = if s.flags & SHF_ALLOC != 0 {
            TEXT_BASE + offset
        } else {
            0
        };
        out.extend_from_slice(&s.data);
        headers.push((
            s.name.clone(),
            s.kind,
            s.flags,
            addr,
            offset,
            s.data.len() as u64,
            0,
            0,
        ));
    }
    if !symbols.is_empty() {
        let mut strtab = vec![0u8];
        let mut symtab = vec![0u8; 24];
        for sym in symbols {
            let name = strtab.len() as u32;
            strtab.extend_from_slice(sym.name.as_bytes());
            strtab.push(0);
            symtab.extend_from_slice(&name.to_le_bytes());
            symtab.push(0x10 | sym.kind); // STB_GLOBAL
            symtab.push(0);
            symtab.extend_from_slice(&1u16.to_le_bytes()); // a defined section
            symtab.extend_from_slice(&sym.address.to_le_bytes());
            symtab.extend_from_slice(&sym.size.to_le_bytes());
        }
        let strtab_index = headers.len() as u32 + 2;
        align(&mut out);
        headers.push((
            ".symtab".into(),
            2,
            0,
            0,
            out.len() as u64,
            symtab.len() as u64,
            strtab_index,
            24,
        ));
        out.extend_from_slice(&symtab);
        align(&mut out);
        headers.push((
            ".strtab".into(),
            3,
            0,
            0,
            out.len() as u64,
            strtab.len() as u64,
            0,
            0,
        ));
        out.extend_from_slice(&strtab);
    }
    let mut shstrtab = vec![0u8];
    let mut names = Vec::new();
    for h in headers
        .iter()
        .map(|h| h.0.clone())
        .chain([".shstrtab".into()])
    {
        names.push(shstrtab.len() as u32);
        shstrtab.extend_from_slice(h.as_bytes());
        shstrtab.push(0);
    }
    align(&mut out);
    headers.push((
        ".shstrtab".into(),
        3,
        0,
        0,
        out.len() as u64,
        shstrtab.len() as u64,
        0,
        0,
    ));
    out.extend_from_slice(&shstrtab);
    align(&mut out);
    let shoff = out.len() as u64;
    out.extend_from_slice(&[0u8; 64]);
    for (i, (_, kind, flags, addr, offset, size, link, entsize)) in headers.iter().enumerate() {
        out.extend_from_slice(&names[i].to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&addr.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&link.to_le_bytes());
        // sh_info: one past the last local symbol (only the null one).
        let info: u32 = if *kind == 2 { 1 } else { 0 };
        out.extend_from_slice(&info.to_le_bytes());
        out.extend_from_slice(&1u64.to_le_bytes());
        out.extend_from_slice(&entsize.to_le_bytes());
    }
    let total = out.len() as u64;
    let mut ehdr = Vec::with_capacity(EHDR + PHDR);
    ehdr.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    ehdr.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    ehdr.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    ehdr.extend_from_slice(&1u32.to_le_bytes());
    ehdr.extend_from_slice(&TEXT_BASE.to_le_bytes()); // e_entry
    ehdr.extend_from_slice(&(EHDR as u64).to_le_bytes()); // e_phoff
    ehdr.extend_from_slice(&shoff.to_le_bytes());
    ehdr.extend_from_slice(&0u32.to_le_bytes());
    ehdr.extend_from_slice(&(EHDR as u16).to_le_bytes());
    ehdr.extend_from_slice(&(PHDR as u16).to_le_bytes());
    ehdr.extend_from_slice(&1u16.to_le_bytes());
    ehdr.extend_from_slice(&64u16.to_le_bytes());
    ehdr.extend_from_slice(&(headers.len() as u16 + 1).to_le_bytes());
    ehdr.extend_from_slice(&(headers.len() as u16).to_le_bytes()); // .shstrtab is last
    // PT_LOAD, R+X, the whole file.
    ehdr.extend_from_slice(&1u32.to_le_bytes());
    ehdr.extend_from_slice(&5u32.to_le_bytes());
    ehdr.extend_from_slice(&0u64.to_le_bytes());
    ehdr.extend_from_slice(&TEXT_BASE.to_le_bytes());
    ehdr.extend_from_slice(&TEXT_BASE.to_le_bytes());
    ehdr.extend_from_slice(&total.to_le_bytes());
    ehdr.extend_from_slice(&total.to_le_bytes());
    ehdr.extend_from_slice(&0x1000u64.to_le_bytes());
    out[..EHDR + PHDR].copy_from_slice(&ehdr);
    out
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A `.go.buildinfo` section (Go 1.18+ inline strings) for `version`.
pub fn buildinfo(version: &str) -> Vec<u8> {
    let mut out = b"\xff Go buildinf:".to_vec();
    out.push(8);
    out.push(2);
    out.resize(32, 0);
    for s in [
        version.to_string(),
        format!(
            "{}path\tsynthetic\nbuild\tGOARCH=amd64\nbuild\tGOOS=linux\nbuild\tCGO_ENABLED=0\n{}",
            "0".repeat(16),
            "0".repeat(16)
        ),
    ] {
        push_varint(&mut out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    out
}

/// What a DWARF member's type is.
#[derive(Clone, Debug)]
enum MemberType {
    Scalar,
    /// `count` elements of a named struct or (`None`) of uint64.
    Array(u64, Option<String>),
    Named(String),
    /// An anonymous struct holding the rest of a dotted path.
    Nested(usize),
}

#[derive(Clone, Debug, Default)]
struct Node {
    name: String,
    size: u64,
    members: BTreeMap<String, (u64, MemberType)>,
}

/// DWARF struct types, built field by field (dotted paths become nested
/// anonymous structs at offset 0, so offsets add up as in `field`).
#[derive(Default)]
pub struct DwarfBuilder {
    nodes: Vec<Node>,
    by_name: BTreeMap<String, usize>,
}

impl DwarfBuilder {
    fn node(&mut self, name: &str) -> usize {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        self.nodes.push(Node {
            name: name.to_string(),
            ..Default::default()
        });
        self.by_name.insert(name.to_string(), self.nodes.len() - 1);
        self.nodes.len() - 1
    }

    /// Declares struct `name` of `size` bytes.
    pub fn size(&mut self, name: &str, size: u64) -> &mut Self {
        let i = self.node(name);
        self.nodes[i].size = size;
        self
    }

    fn member(&mut self, outer: &str, path: &str, offset: u64, kind: MemberType) -> &mut Self {
        let mut at = self.node(outer);
        let parts: Vec<&str> = path.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            let next = match self.nodes[at].members.get(*part) {
                Some((_, MemberType::Nested(n))) => *n,
                _ => {
                    self.nodes.push(Node::default());
                    let n = self.nodes.len() - 1;
                    self.nodes[at]
                        .members
                        .insert(part.to_string(), (0, MemberType::Nested(n)));
                    n
                }
            };
            at = next;
        }
        self.nodes[at]
            .members
            .insert(parts[parts.len() - 1].to_string(), (offset, kind));
        self
    }

    /// A scalar field at `offset` (dotted paths nest).
    pub fn field(&mut self, outer: &str, path: &str, offset: u64) -> &mut Self {
        self.member(outer, path, offset, MemberType::Scalar)
    }

    pub fn optional(&mut self, outer: &str, path: &str, offset: Option<u64>) -> &mut Self {
        match offset {
            Some(o) => self.field(outer, path, o),
            None => self,
        }
    }

    /// An array field of `count` uint64s, or of struct `element`.
    pub fn array(
        &mut self,
        outer: &str,
        path: &str,
        offset: u64,
        count: u64,
        element: Option<&str>,
    ) -> &mut Self {
        self.member(
            outer,
            path,
            offset,
            MemberType::Array(count, element.map(str::to_string)),
        )
    }

    /// A field whose type is the named struct `type_name`.
    pub fn typed(&mut self, outer: &str, path: &str, offset: u64, type_name: &str) -> &mut Self {
        self.node(type_name);
        self.member(
            outer,
            path,
            offset,
            MemberType::Named(type_name.to_string()),
        )
    }

    /// `.debug_abbrev` and `.debug_info` (DWARF 4, one unit).
    pub fn sections(&self) -> (Vec<u8>, Vec<u8>) {
        // 1 CU, 2 struct, 3 member with type, 4 member, 5 array, 6 subrange, 7 base.
        let abbrev: Vec<u8> = vec![
            1, 0x11, 1, 0, 0, //
            2, 0x13, 1, 0x03, 0x08, 0x0b, 0x0f, 0, 0, //
            3, 0x0d, 0, 0x03, 0x08, 0x38, 0x0f, 0x49, 0x13, 0, 0, //
            4, 0x0d, 0, 0x03, 0x08, 0x38, 0x0f, 0, 0, //
            5, 0x01, 1, 0x49, 0x13, 0x0b, 0x0f, 0, 0, //
            6, 0x21, 0, 0x37, 0x0f, 0, 0, //
            7, 0x24, 0, 0x03, 0x08, 0x0b, 0x0f, 0, 0, //
            0,
        ];
        let mut info = vec![0u8; 4];
        info.extend_from_slice(&4u16.to_le_bytes());
        info.extend_from_slice(&0u32.to_le_bytes());
        info.push(8);
        info.push(1); // the CU
        let string = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        };
        // Types are referenced by key; offsets patched at the end.
        let mut offsets: BTreeMap<String, u32> = BTreeMap::new();
        let mut fixups: Vec<(usize, String)> = Vec::new();
        offsets.insert("uint64".into(), info.len() as u32);
        info.push(7);
        string(&mut info, "uint64");
        push_varint(&mut info, 8);
        let key = |i: usize| format!("#{i}");
        let mut arrays = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            offsets.insert(key(i), info.len() as u32);
            info.push(2);
            string(&mut info, &node.name);
            let end = node.members.values().map(|(o, _)| o + 8).max().unwrap_or(0);
            push_varint(&mut info, if node.size > 0 { node.size } else { end });
            for (name, (offset, kind)) in &node.members {
                let target = match kind {
                    MemberType::Scalar => Some("uint64".to_string()),
                    MemberType::Named(n) => Some(key(self.by_name[n])),
                    MemberType::Nested(n) => Some(key(*n)),
                    MemberType::Array(count, element) => {
                        arrays.push((*count, element.clone()));
                        Some(format!("array{}", arrays.len() - 1))
                    }
                };
                info.push(if target.is_some() { 3 } else { 4 });
                string(&mut info, name);
                push_varint(&mut info, *offset);
                if let Some(t) = target {
                    fixups.push((info.len(), t));
                    info.extend_from_slice(&[0; 4]);
                }
            }
            info.push(0);
        }
        for (i, (count, element)) in arrays.iter().enumerate() {
            offsets.insert(format!("array{i}"), info.len() as u32);
            let element_key = match element {
                Some(n) => key(self.by_name[n]),
                None => "uint64".into(),
            };
            let element_size = match element {
                Some(n) => self.nodes[self.by_name[n]].size,
                None => 8,
            };
            info.push(5);
            fixups.push((info.len(), element_key));
            info.extend_from_slice(&[0; 4]);
            push_varint(&mut info, count.saturating_mul(element_size));
            info.push(6);
            push_varint(&mut info, *count);
            info.push(0);
        }
        info.push(0);
        for (at, target) in fixups {
            let offset = offsets.get(&target).copied().unwrap_or(0);
            info[at..at + 4].copy_from_slice(&offset.to_le_bytes());
        }
        let len = info.len() as u32 - 4;
        info[..4].copy_from_slice(&len.to_le_bytes());
        (abbrev, info)
    }

    /// The runtime structures `offsets` describes, as goscope resolves them.
    pub fn runtime(offsets: &RuntimeOffsets) -> Self {
        let mut b = Self::default();
        let h = &offsets.heap;
        const MSTATS: &str = "runtime.mstats";
        const DELTA: &str = "runtime.heapStatsDelta";
        const HIST: &str = "runtime.timeHistogram";
        b.size(DELTA, h.delta_size)
            .field(DELTA, "tinyAllocCount", h.tiny_alloc_count)
            .field(DELTA, "largeAlloc", h.large_alloc)
            .field(DELTA, "largeAllocCount", h.large_alloc_count)
            .array(
                DELTA,
                "smallAllocCount",
                h.small_alloc_count,
                h.size_classes,
                None,
            );
        b.size("runtime.consistentHeapStats", 3 * h.delta_size)
            .array("runtime.consistentHeapStats", "stats", 0, 3, Some(DELTA));
        b.size(MSTATS, h.mstats_size)
            .field(MSTATS, "numgc", h.numgc)
            .typed(MSTATS, "heapStats", h.stats, "runtime.consistentHeapStats")
            .field(MSTATS, "gc_cpu_fraction", offsets.cycle.gc_cpu_fraction);
        let histograms = [
            (MSTATS, "gcPauseDist", h.pause_hist_in_mstats),
            ("runtime.schedt", "timeToRun", offsets.sched.time_to_run),
            (
                "runtime.schedt",
                "stwTotalTimeGC",
                offsets.sched.stw_total_gc,
            ),
        ];
        let mut shape: Option<TimeHistogramLayout> = None;
        for (outer, path, hist) in histograms {
            if let Some(t) = hist {
                b.typed(outer, path, t.offset, HIST);
                shape = Some(t);
            }
        }
        if let Some(t) = shape {
            b.array(HIST, "counts", t.counts, t.buckets, None)
                .field(HIST, "underflow", t.underflow)
                .field(HIST, "overflow", t.overflow);
        }
        let c = &offsets.gc;
        const GC: &str = "runtime.gcControllerState";
        b.size(GC, c.controller_size)
            .field(GC, "gcPercent", c.gc_percent)
            .optional(GC, "memoryLimit", c.memory_limit)
            .field(GC, "heapMarked", c.heap_marked)
            .field(GC, "heapLive", c.heap_live)
            .optional(GC, "gcPercentHeapGoal", c.gc_percent_heap_goal)
            .optional(GC, "sweepDistMinTrigger", c.sweep_dist_min_trigger)
            .optional(GC, "triggered", c.triggered)
            .optional(GC, "heapFree", c.heap_free)
            .optional(GC, "totalAlloc", c.total_alloc)
            .optional(GC, "totalFree", c.total_free)
            .optional(GC, "mappedReady", c.mapped_ready)
            .field(GC, "assistTime", c.assist_time)
            .field(GC, "dedicatedMarkTime", c.dedicated_mark_time)
            .field(GC, "fractionalMarkTime", c.fractional_mark_time)
            .field(GC, "idleMarkTime", c.idle_mark_time)
            .field(GC, "lastHeapGoal", offsets.cycle.last_heap_goal);
        let w = &offsets.cycle;
        const WORK: &str = "runtime.workType";
        b.size(WORK, w.work_size)
            .optional(WORK, "cpuStats.gcAssistTime", c.cpu_stats_assist)
            .optional(WORK, "cpuStats.gcTotalTime", c.cpu_stats_total)
            .field(WORK, "tSweepTerm", w.t_sweep_term)
            .field(WORK, "tMark", w.t_mark)
            .field(WORK, "tMarkTerm", w.t_mark_term)
            .field(WORK, "tEnd", w.t_end)
            .field(WORK, "heap0", w.heap0)
            .field(WORK, "heap1", w.heap1)
            .field(WORK, "heap2", w.heap2)
            .field(WORK, "stwprocs", w.stwprocs)
            .field(WORK, "maxprocs", w.maxprocs)
            .field(WORK, "userForced", w.user_forced);
        let s = &offsets.sched;
        const SCHED: &str = "runtime.schedt";
        b.size(SCHED, s.size);
        match s.gfree_counts[..] {
            [n] => {
                b.field(SCHED, "gFree.n", n);
            }
            [stack, no_stack, ..] => {
                b.field(SCHED, "gFree.stack.size", stack).field(
                    SCHED,
                    "gFree.noStack.size",
                    no_stack,
                );
            }
            [] => {}
        }
        b.field(SCHED, "goidgen", s.goidgen)
            .optional(SCHED, "goroutinesCreated", s.goroutines_created)
            .field(SCHED, "ngsys", s.ngsys)
            .field(SCHED, "npidle", s.trace.npidle)
            .field(SCHED, "nmspinning", s.trace.nmspinning)
            .optional(SCHED, "needspinning", s.trace.needspinning)
            .field(SCHED, "nmidle", s.trace.nmidle)
            .field(SCHED, "mnext", s.trace.mnext)
            .field(SCHED, "nmfreed", s.trace.nmfreed)
            .field(SCHED, "runqsize", s.trace.runq_size);
        let p = &offsets.p;
        b.field("runtime.p", "runqhead", p.runqhead)
            .field("runtime.p", "runqtail", p.runqtail)
            .optional("runtime.p", "goidcache", p.goidcache)
            .optional("runtime.p", "goidcacheend", p.goidcacheend)
            .optional("runtime.p", "goroutinesCreated", p.goroutines_created)
            .field("runtime.p", "gFree.n", p.gfree_count)
            .field("runtime.m", "alllink", offsets.m.alllink)
            .field("runtime.m", "ncgocall", offsets.m.ncgocall);
        if let Some(m) = &offsets.mem_profile {
            const BUCKET: &str = "runtime.bucket";
            const RECORD: &str = "runtime.memRecord";
            const CYCLE: &str = "runtime.memRecordCycle";
            b.size(BUCKET, m.bucket_size)
                .field(BUCKET, "allnext", m.allnext)
                .field(BUCKET, "typ", m.typ)
                .field(BUCKET, "size", m.size)
                .field(BUCKET, "nstk", m.nstk)
                .size(CYCLE, m.cycle_size)
                .field(CYCLE, "allocs", m.allocs)
                .field(CYCLE, "frees", m.frees)
                .optional(CYCLE, "alloc_bytes", m.alloc_bytes)
                .optional(CYCLE, "free_bytes", m.free_bytes)
                .size(RECORD, m.record_size)
                .typed(RECORD, "active", m.active, CYCLE)
                .array(RECORD, "future", m.future, m.future_cycles, Some(CYCLE))
                .field("runtime.mProfCycleHolder", "value", m.mprof_cycle_value);
        }
        b
    }
}

/// Link-time address of global `k` in synthetic binaries and images.
pub fn global_address(base: u64, global: Global) -> u64 {
    let index = Global::all().position(|g| g == global).unwrap_or(0) as u64;
    base + index * 0x4000
}

/// A Go executable with DWARF for `offsets` and every runtime global in
/// `.symtab`: `RuntimeLayout::resolve` succeeds on it.
pub fn dwarf_binary(version: &str, offsets: &RuntimeOffsets) -> Vec<u8> {
    let (abbrev, info) = DwarfBuilder::runtime(offsets).sections();
    let symbols: Vec<Symbol> = Global::all()
        .map(|g| Symbol {
            name: g.name().to_string(),
            kind: 1,
            address: global_address(0x80_0000, g),
            size: 8,
        })
        .collect();
    elf(
        &[
            Section {
                name: ".go.buildinfo".into(),
                kind: 1,
                flags: SHF_ALLOC,
                data: buildinfo(version),
            },
            Section {
                name: ".debug_abbrev".into(),
                kind: 1,
                flags: 0,
                data: abbrev,
            },
            Section {
                name: ".debug_info".into(),
                kind: 1,
                flags: 0,
                data: info,
            },
        ],
        &symbols,
    )
}

/// A stripped-like Go executable (no DWARF, no data symbols) whose
/// function symbols and code reproduce `sites`: each function's
/// RIP-relative operands point at the globals as the reference build's
/// did, so `Globals::from_sites` recovers `global_address(0x80_0000, g)`.
pub fn sites_binary(version: &str, sites: &BTreeMap<String, ReferenceSite>) -> Vec<u8> {
    // Function -> (operand count, index -> target).
    let mut functions: BTreeMap<&str, (usize, BTreeMap<usize, u64>)> = BTreeMap::new();
    for (key, site) in sites {
        let Some(global) = Global::from_key(key) else {
            continue;
        };
        let f = functions
            .entry(&site.function)
            .or_insert((site.operands, BTreeMap::new()));
        f.1.insert(
            site.index,
            global_address(0x80_0000, global).wrapping_add(site.delta),
        );
    }
    let buildinfo_len = buildinfo(version).len();
    // Sections start after the ELF and program headers (120 bytes), each
    // aligned to 16: .go.buildinfo, then .text.
    let text_offset = (120usize.next_multiple_of(16) + buildinfo_len).next_multiple_of(16) as u64;
    let mut text = Vec::new();
    let mut symbols = Vec::new();
    for (name, (operands, targets)) in &functions {
        let start = TEXT_BASE + text_offset + text.len() as u64;
        for i in 0..*operands {
            let target = targets.get(&i).copied().unwrap_or(0x90_0000);
            let next = TEXT_BASE + text_offset + text.len() as u64 + 7;
            let disp = target.wrapping_sub(next) as i64 as i32;
            text.extend_from_slice(&[0x48, 0x8d, 0x05]); // lea rax, [rip+disp32]
            text.extend_from_slice(&disp.to_le_bytes());
        }
        text.push(0xc3);
        symbols.push(Symbol {
            name: name.to_string(),
            kind: 2,
            address: start,
            size: TEXT_BASE + text_offset + text.len() as u64 - start,
        });
        text.resize(text.len().next_multiple_of(16), 0xcc);
    }
    elf(
        &[
            Section {
                name: ".go.buildinfo".into(),
                kind: 1,
                flags: SHF_ALLOC,
                data: buildinfo(version),
            },
            Section {
                name: ".text".into(),
                kind: 1,
                flags: SHF_ALLOC | SHF_EXECINSTR,
                data: text,
            },
        ],
        &symbols,
    )
}

/// A Go 1.20+ pclntab with two functions: `main.f` (lines 10, 11 in a.go)
/// and `main.g`, whose first 4 bytes are an inlined `main.inl` called from
/// its offset 6. Returns the table and its `go:func.*` bytes; text starts
/// at `TEXT_BASE`.
pub fn pclntab() -> (Vec<u8>, Vec<u8>) {
    let names = b"main.f\0main.g\0main.inl\0";
    let cutab: Vec<u8> = [0u32, 5].iter().flat_map(|v| v.to_le_bytes()).collect();
    let filetab = b"a.go\0b.go\0";
    // pc-value tables: (zig-zag value delta, pc delta)..., 0. Offset 0 is
    // reserved (no table).
    let mut pctab = vec![0u8];
    let mut table = |pairs: &[(i64, u64)]| -> u32 {
        let at = pctab.len() as u32;
        let mut value = -1i64;
        for &(v, pc) in pairs {
            let delta = v - value;
            value = v;
            push_varint(&mut pctab, ((delta << 1) ^ (delta >> 63)) as u64);
            push_varint(&mut pctab, pc);
        }
        pctab.push(0);
        at
    };
    let f_file = table(&[(0, 8)]);
    let f_line = table(&[(10, 4), (11, 4)]);
    let g_file = table(&[(1, 8)]);
    let g_line = table(&[(20, 4), (21, 4)]);
    let g_inline = table(&[(0, 4), (-1, 4)]);
    // _func records (Go 1.20 layout), after the functab of 3 entries.
    let func = |entry: u32, name: u32, file: u32, line: u32, pcdata: &[u32], funcdata: &[u32]| {
        let mut r = Vec::new();
        for v in [entry, name, 0, 0, 0, file, line, pcdata.len() as u32, 0, 0] {
            r.extend_from_slice(&v.to_le_bytes());
        }
        r.extend_from_slice(&[0, 0, 0, funcdata.len() as u8]);
        for v in pcdata.iter().chain(funcdata) {
            r.extend_from_slice(&v.to_le_bytes());
        }
        r
    };
    let f_rec = func(0, 0, f_file, f_line, &[], &[]);
    let g_rec = func(
        16,
        7,
        g_file,
        g_line,
        &[0, 0, g_inline],
        &[u32::MAX, u32::MAX, u32::MAX, 0],
    );
    let mut pcln = Vec::new();
    let functab_len = 3 * 8;
    let f_off = functab_len as u32;
    let g_off = f_off + f_rec.len() as u32;
    for (entry, off) in [(0u32, f_off), (16, g_off), (32, 0)] {
        pcln.extend_from_slice(&entry.to_le_bytes());
        pcln.extend_from_slice(&off.to_le_bytes());
    }
    pcln.extend_from_slice(&f_rec);
    pcln.extend_from_slice(&g_rec);
    let mut out = vec![0u8; 72];
    out[..4].copy_from_slice(&0xffff_fff1u32.to_le_bytes());
    out[6] = 1;
    out[7] = 8;
    let put = |out: &mut Vec<u8>, at: usize, v: u64| {
        out[at..at + 8].copy_from_slice(&v.to_le_bytes());
    };
    put(&mut out, 8, 2);
    put(&mut out, 16, 2);
    let section = |out: &mut Vec<u8>, header: usize, bytes: &[u8]| {
        let at = out.len() as u64;
        put(out, header, at);
        out.extend_from_slice(bytes);
    };
    section(&mut out, 32, names);
    section(&mut out, 40, &cutab);
    section(&mut out, 48, filetab);
    section(&mut out, 56, &pctab);
    section(&mut out, 64, &pcln);
    // go:func.*: one inlinedCall {funcID, _, nameOff, parentPc, startLine}.
    let mut gofunc = vec![0u8; 4];
    for v in [14u32, 6, 30] {
        gofunc.extend_from_slice(&v.to_le_bytes());
    }
    (out, gofunc)
}
