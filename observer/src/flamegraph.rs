//! Flame graphs of the profiles goscope writes: a pprof profile is folded
//! into "root;caller;callee value" lines (`folded`) over its primary sample
//! type (`Measure::of`), with the target's function names made safe for
//! that format, and rendered as inferno's interactive SVG (`render`); an
//! empty profile gives an SVG that says so. `write_profile` is how every
//! command writes `-o`: the gzipped pprof profile, or its flame graph when
//! the path ends in `.svg`.

use std::{collections::BTreeMap, fmt::Write as _, io::Read as _, path::Path};

use prost::Message as _;

use crate::pprof::generated as proto;

/// Largest profile read (compressed or decompressed).
pub const MAX_PROFILE_BYTES: u64 = 256 << 20;
/// Longest frame name drawn; longer names are cut (with "…").
const MAX_NAME_CHARS: usize = 1024;
/// Sample types preferred as the widths, first found wins: CPU time over
/// sample counts (cpu), bytes allocated over objects (alloc), goroutines.
/// Without any, pprof's default: the last sample type.
const PREFERRED_TYPES: &[&str] = &["cpu", "alloc_space", "goroutine"];
/// The period type of a wall-clock profile, whose sample types are states
/// (running, waiting, ...): its widths are the sum of them all.
const WALL_PERIOD_TYPE: &str = "wall";

#[derive(Debug, thiserror::Error)]
pub enum FlamegraphError {
    #[error("not a gzipped pprof profile: {0}")]
    Gzip(std::io::Error),
    #[error("the profile is larger than {MAX_PROFILE_BYTES} bytes decompressed")]
    TooLarge,
    #[error("not a pprof profile: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("the profile has no sample type {name:?} (it has: {available})")]
    NoSampleType { name: String, available: String },
    #[error("the profile declares no sample type")]
    NoSampleTypes,
    #[error("rendering the flame graph: {0}")]
    Render(std::io::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Flamegraph(#[from] FlamegraphError),
    #[error(transparent)]
    Outfile(#[from] crate::outfile::OutfileError),
}

/// True when `path` asks for a flame graph (ends in `.svg`, any case).
pub fn is_svg(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
}

/// Writes a profile to `path` (safely, `outfile::write`): the gzipped
/// pprof bytes as they are, or, for a `.svg` path, their flame graph over
/// the primary sample type with `title` (": type unit" is appended).
pub fn write_profile(path: &Path, gzipped: &[u8], title: &str) -> Result<(), WriteError> {
    if !is_svg(path) {
        return Ok(crate::outfile::write(path, gzipped)?);
    }
    let profile = decode(gzipped)?;
    let measure = Measure::of(&profile, None)?;
    let svg = render(&folded(&profile, &measure), title, &measure)?;
    Ok(crate::outfile::write(path, &svg)?)
}

/// A pprof profile, gzipped or plain, decompressed to at most
/// `MAX_PROFILE_BYTES`.
pub fn decode(raw: &[u8]) -> Result<proto::Profile, FlamegraphError> {
    let mut plain = Vec::new();
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(raw)
            .take(MAX_PROFILE_BYTES + 1)
            .read_to_end(&mut plain)
            .map_err(FlamegraphError::Gzip)?;
        if plain.len() as u64 > MAX_PROFILE_BYTES {
            return Err(FlamegraphError::TooLarge);
        }
        &plain[..]
    } else {
        raw
    };
    Ok(proto::Profile::decode(bytes)?)
}

/// What a flame graph's widths measure: one sample type, or (a wall-clock
/// profile) the sum of all of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Measure {
    selection: Selection,
    /// "cpu nanoseconds", "alloc_space bytes", "wall nanoseconds (all states)".
    pub label: String,
    /// The word after a frame's value in its tooltip ("nanoseconds").
    pub count_name: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Selection {
    Index(usize),
    Sum,
}

impl Measure {
    /// The sample type named `name`, or the profile's primary one.
    pub fn of(profile: &proto::Profile, name: Option<&str>) -> Result<Self, FlamegraphError> {
        let string = |i: i64| {
            usize::try_from(i)
                .ok()
                .and_then(|i| profile.string_table.get(i))
                .map_or("", String::as_str)
        };
        let types: Vec<(&str, &str)> = profile
            .sample_type
            .iter()
            .map(|t| (string(t.r#type), string(t.unit)))
            .collect();
        let by_name = |wanted: &str| types.iter().position(|(t, _)| *t == wanted);
        let index = match name {
            Some(name) => by_name(name).ok_or_else(|| FlamegraphError::NoSampleType {
                name: name.to_string(),
                available: types.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", "),
            })?,
            None => {
                let (&(_, unit), rest) =
                    types.split_first().ok_or(FlamegraphError::NoSampleTypes)?;
                let period = profile.period_type.as_ref().map(|p| string(p.r#type));
                if period == Some(WALL_PERIOD_TYPE) && rest.iter().all(|(_, u)| *u == unit) {
                    return Ok(Self {
                        selection: Selection::Sum,
                        label: format!("{WALL_PERIOD_TYPE} {unit} (all states)"),
                        count_name: unit.to_string(),
                    });
                }
                PREFERRED_TYPES
                    .iter()
                    .find_map(|t| by_name(t))
                    .unwrap_or(types.len() - 1)
            }
        };
        let (r#type, unit) = types[index];
        Ok(Self {
            selection: Selection::Index(index),
            label: format!("{type} {unit}"),
            // "12 count" says nothing; "12 goroutine" does.
            count_name: if unit == "count" { r#type } else { unit }.to_string(),
        })
    }

    fn value(&self, values: &[i64]) -> i64 {
        match self.selection {
            Selection::Index(i) => values.get(i).copied().unwrap_or(0),
            Selection::Sum => values.iter().fold(0i64, |a, v| a.saturating_add(*v)),
        }
    }
}

/// A frame name that cannot break a folded line: `;` (the frame
/// separator) becomes `:`, control characters (newlines) and spaces (a
/// trailing " 12" would read as a count) become no-break spaces, a
/// leading `#` (a comment line) is escaped as `\#`, an empty name is `?`,
/// and a name is at most `MAX_NAME_CHARS` characters.
pub fn safe_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(MAX_NAME_CHARS));
    for (i, c) in name.chars().enumerate() {
        if i == MAX_NAME_CHARS {
            out.push('…');
            break;
        }
        out.push(match c {
            ';' => ':',
            c if c == ' ' || c.is_control() || c.is_whitespace() => '\u{a0}',
            c => c,
        });
    }
    if out.starts_with('#') {
        out.insert(0, '\\');
    }
    if out.is_empty() {
        out.push('?');
    }
    out
}

/// The profile as folded stacks, root first, one line per distinct stack
/// ("main.main;main.work;main.hot 1234"), sorted; inlined frames are
/// frames; samples whose value is not positive are left out.
pub fn folded(profile: &proto::Profile, measure: &Measure) -> Vec<String> {
    let string = |i: i64| {
        usize::try_from(i)
            .ok()
            .and_then(|i| profile.string_table.get(i))
            .map_or("", String::as_str)
    };
    let functions: BTreeMap<u64, String> = profile
        .function
        .iter()
        .map(|f| (f.id, safe_name(string(f.name))))
        .collect();
    // Each location's frames, outermost first (pprof lists them innermost first).
    let locations: BTreeMap<u64, Vec<&str>> = profile
        .location
        .iter()
        .map(|l| {
            let frames: Vec<&str> = l
                .line
                .iter()
                .rev()
                .map(|line| functions.get(&line.function_id).map_or("?", String::as_str))
                .collect();
            (l.id, frames)
        })
        .collect();
    let mut stacks: BTreeMap<String, i64> = BTreeMap::new();
    for sample in &profile.sample {
        let value = measure.value(&sample.value);
        if value <= 0 {
            continue;
        }
        let mut stack = String::new();
        for id in sample.location_id.iter().rev() {
            match locations.get(id).filter(|frames| !frames.is_empty()) {
                Some(frames) => {
                    for frame in frames {
                        push_frame(&mut stack, frame);
                    }
                }
                // No function known: its address, as pprof shows it.
                None => {
                    let address = profile
                        .location
                        .iter()
                        .find(|l| l.id == *id)
                        .map_or(0, |l| l.address);
                    push_frame(&mut stack, &format!("{address:#x}"));
                }
            }
        }
        if stack.is_empty() {
            stack.push('?');
        }
        let total = stacks.entry(stack).or_insert(0);
        *total = total.saturating_add(value);
    }
    stacks
        .into_iter()
        .map(|(stack, value)| format!("{stack} {value}"))
        .collect()
}

fn push_frame(stack: &mut String, frame: &str) {
    if !stack.is_empty() {
        stack.push(';');
    }
    stack.push_str(frame);
}

/// The flame graph SVG of `folded` lines titled "`title`: `measure`"; with
/// no line, an SVG that says the profile has no samples.
pub fn render(
    folded: &[String],
    title: &str,
    measure: &Measure,
) -> Result<Vec<u8>, FlamegraphError> {
    let title = format!("{title}: {}", measure.label);
    if folded.is_empty() {
        return Ok(empty_svg(&title).into_bytes());
    }
    let mut options = inferno::flamegraph::Options::default();
    options.title = title;
    options.count_name = measure.count_name.clone();
    // Colours from the function name, the same in every graph.
    options.deterministic = true;
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut options, folded.iter().map(String::as_str), &mut svg)
        .map_err(FlamegraphError::Render)?;
    Ok(svg)
}

/// A valid SVG with the title and "no samples".
fn empty_svg(title: &str) -> String {
    let mut svg = String::new();
    let _ = write!(
        svg,
        concat!(
            r#"<?xml version="1.0" standalone="no"?>"#,
            "\n",
            r#"<svg version="1.1" width="1200" height="90" xmlns="http://www.w3.org/2000/svg">"#,
            "\n<title>{title}</title>\n",
            r#"<text x="600" y="30" text-anchor="middle" font-family="Verdana" font-size="17">{title}</text>"#,
            "\n",
            r#"<text x="600" y="65" text-anchor="middle" font-family="Verdana" font-size="12">no samples in this profile</text>"#,
            "\n</svg>\n"
        ),
        title = xml_escape(title)
    );
    svg
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 has no control characters but tab and newline.
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// "goscope cpu pid 123 (loadgen, go1.27.3)": the title of a command's
/// flame graph (the measure follows it).
pub fn title(command: &str, pid: u32, exe: &Path, version: impl std::fmt::Display) -> String {
    let name = exe.file_name().map_or_else(
        || exe.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    format!(
        "goscope {command} pid {pid} ({}, {version})",
        crate::format::escape_control(&name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pprof::{Location, Profile};

    fn profile_of(
        types: &[(&str, &str)],
        period: (&str, &str),
        samples: &[(&[&str], &[i64])],
    ) -> proto::Profile {
        let mut profile = Profile::new(types, period, 1);
        let mut pcs: Vec<&str> = Vec::new();
        for (stack, values) in samples {
            let locations: Vec<Location> = stack
                .iter()
                .map(|name| {
                    let pc = match pcs.iter().position(|p| p == name) {
                        Some(i) => i,
                        None => {
                            pcs.push(name);
                            pcs.len() - 1
                        }
                    };
                    Location::named(0x1000 + pc as u64, name)
                })
                .collect();
            profile.add(&locations, values);
        }
        decode(&profile.encode(0).unwrap()).unwrap()
    }

    #[test]
    fn folds_root_first_and_merges_equal_stacks() {
        // Stacks are leaf first, as pprof keeps them.
        let p = profile_of(
            &[("samples", "count"), ("cpu", "nanoseconds")],
            ("cpu", "nanoseconds"),
            &[
                (&["main.hot", "main.main"], &[2, 20]),
                (&["main.cold", "main.main"], &[1, 10]),
                (&["main.hot", "main.main"], &[3, 30]),
                (&["main.idle"], &[0, 0]),
            ],
        );
        let measure = Measure::of(&p, None).unwrap();
        assert_eq!(measure.label, "cpu nanoseconds");
        assert_eq!(
            folded(&p, &measure),
            ["main.main;main.cold 10", "main.main;main.hot 50"]
        );
        let samples = Measure::of(&p, Some("samples")).unwrap();
        assert_eq!(samples.count_name, "samples");
        assert_eq!(
            folded(&p, &samples),
            ["main.main;main.cold 1", "main.main;main.hot 5"]
        );
        assert!(matches!(
            Measure::of(&p, Some("alloc_space")),
            Err(FlamegraphError::NoSampleType { .. })
        ));
    }

    #[test]
    fn hostile_names_cannot_break_the_folded_format() {
        let p = profile_of(
            &[("goroutine", "count")],
            ("goroutine", "count"),
            &[(&["evil;fake 99\nmain.injected 5", "# comment", ""], &[7])],
        );
        let measure = Measure::of(&p, None).unwrap();
        assert_eq!(measure.count_name, "goroutine");
        let lines = folded(&p, &measure);
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert!(!line.contains('\n'), "{line:?}");
        // Three frames and one count, however the names were spelled.
        let (stack, count) = line.rsplit_once(' ').unwrap();
        assert_eq!(count, "7");
        let frames: Vec<&str> = stack.split(';').collect();
        assert_eq!(
            frames,
            [
                "?",
                "\\#\u{a0}comment",
                "evil:fake\u{a0}99\u{a0}main.injected\u{a0}5"
            ]
        );
        let svg =
            String::from_utf8(render(&lines, "goscope <test> & co", &measure).unwrap()).unwrap();
        assert!(
            svg.contains("goscope &lt;test&gt; &amp; co: goroutine count"),
            "{svg}"
        );
        assert!(svg.contains("evil:fake"));
        assert_eq!(
            safe_name(&"x".repeat(5000)).chars().count(),
            MAX_NAME_CHARS + 1
        );
    }

    #[test]
    fn an_empty_profile_is_an_svg_saying_so() {
        let p = profile_of(
            &[("samples", "count"), ("cpu", "nanoseconds")],
            ("cpu", "nanoseconds"),
            &[],
        );
        let measure = Measure::of(&p, None).unwrap();
        let lines = folded(&p, &measure);
        assert!(lines.is_empty());
        let svg = String::from_utf8(
            render(&lines, "goscope cpu pid 1 (a<b, go1.22.0)", &measure).unwrap(),
        )
        .unwrap();
        assert!(svg.starts_with("<?xml"), "{svg}");
        assert!(svg.contains("no samples in this profile"));
        assert!(svg.contains("goscope cpu pid 1 (a&lt;b, go1.22.0): cpu nanoseconds"));
        assert!(svg.trim_end().ends_with("</svg>"));
        // A profile with no sample type at all is an error, not a panic.
        assert!(matches!(
            Measure::of(&proto::Profile::default(), None),
            Err(FlamegraphError::NoSampleTypes)
        ));
    }

    #[test]
    fn a_wall_profile_measures_all_its_states() {
        let p = profile_of(
            &[("running", "nanoseconds"), ("waiting", "nanoseconds")],
            ("wall", "nanoseconds"),
            &[(&["main.work"], &[5, 7]), (&["main.sleep"], &[0, 3])],
        );
        let measure = Measure::of(&p, None).unwrap();
        assert_eq!(measure.label, "wall nanoseconds (all states)");
        assert_eq!(folded(&p, &measure), ["main.sleep 3", "main.work 12"]);
    }

    #[test]
    fn svg_paths_are_recognised() {
        assert!(is_svg(Path::new("cpu.svg")));
        assert!(is_svg(Path::new("/tmp/CPU.SVG")));
        assert!(!is_svg(Path::new("cpu.pb.gz")));
        assert!(!is_svg(Path::new("svg")));
    }
}
