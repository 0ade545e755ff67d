//! Parser for the `.go.buildinfo` section: the Go version and the build
//! settings (`go version -m` output) embedded by every Go 1.18+ linker.

use std::collections::BTreeMap;

use serde::Serialize;
use thiserror::Error;

use super::version::GoVersion;

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
/// Flag bit: version and module strings are stored inline as varint-prefixed
/// bytes (Go 1.18 and later) rather than behind pointers.
const FLAG_INLINE_STRINGS: u8 = 0x2;
const INLINE_STRINGS_OFFSET: usize = 32;
/// Sentinel framing of the module info string (16 bytes at each end).
const MODINFO_SENTINEL_LEN: usize = 16;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BuildInfoError {
    #[error("section .go.buildinfo is {0} bytes, too short for its header")]
    Truncated(usize),
    #[error(".go.buildinfo does not start with the Go build info magic")]
    BadMagic,
    #[error(
        ".go.buildinfo stores its strings behind pointers (flags {0:#x}): built by Go older than 1.18, which goscope does not support"
    )]
    PointerStrings(u8),
    #[error(".go.buildinfo string at offset {0} runs past the section end")]
    StringOutOfBounds(usize),
    #[error(".go.buildinfo Go version {0:?} is not of the form go1.N")]
    Version(String),
}

/// What the Go linker recorded about the build.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct BuildInfo {
    /// The raw version string, e.g. `go1.27.3`.
    pub go_version_string: String,
    #[serde(skip)]
    pub go_version: GoVersion,
    /// Main module path (`path` line), empty for `go run` of files.
    pub path: String,
    /// Main module (`mod` line): path and version.
    pub main_module: Option<String>,
    /// `build` settings: `GOOS`, `GOARCH`, `CGO_ENABLED`, `-buildmode`,
    /// `-ldflags`, `GOEXPERIMENT`, `vcs.revision`, ...
    pub settings: BTreeMap<String, String>,
}

impl BuildInfo {
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.get(key).map(String::as_str)
    }

    /// Parses the raw bytes of the `.go.buildinfo` section.
    pub fn parse(section: &[u8]) -> Result<Self, BuildInfoError> {
        if section.len() < INLINE_STRINGS_OFFSET {
            return Err(BuildInfoError::Truncated(section.len()));
        }
        if &section[..MAGIC.len()] != MAGIC {
            return Err(BuildInfoError::BadMagic);
        }
        let flags = section[15];
        if flags & FLAG_INLINE_STRINGS == 0 {
            return Err(BuildInfoError::PointerStrings(flags));
        }
        let (version, next) = read_varint_string(section, INLINE_STRINGS_OFFSET)?;
        let (modinfo, _) = read_varint_string(section, next)?;
        let go_version_string = String::from_utf8_lossy(version).into_owned();
        let go_version = GoVersion::parse(&go_version_string)
            .ok_or_else(|| BuildInfoError::Version(go_version_string.clone()))?;
        let mut info = BuildInfo {
            go_version_string,
            go_version,
            path: String::new(),
            main_module: None,
            settings: BTreeMap::new(),
        };
        info.parse_modinfo(&String::from_utf8_lossy(strip_sentinels(modinfo)));
        Ok(info)
    }

    fn parse_modinfo(&mut self, text: &str) {
        for line in text.lines() {
            let mut fields = line.splitn(2, '\t');
            let (Some(kind), Some(rest)) = (fields.next(), fields.next()) else {
                continue;
            };
            match kind {
                "path" => self.path = rest.to_string(),
                "mod" => {
                    let mut parts = rest.split('\t');
                    let path = parts.next().unwrap_or_default();
                    let version = parts.next().unwrap_or_default();
                    self.main_module = Some(format!("{path} {version}").trim().to_string());
                }
                "build" => {
                    if let Some((key, value)) = rest.split_once('=') {
                        self.settings
                            .insert(key.to_string(), unquote_setting(value).to_string());
                    }
                }
                _ => {}
            }
        }
    }
}

/// `go version -m` quotes values containing spaces or tabs.
fn unquote_setting(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

fn strip_sentinels(modinfo: &[u8]) -> &[u8] {
    if modinfo.len() > 2 * MODINFO_SENTINEL_LEN
        && modinfo[modinfo.len() - MODINFO_SENTINEL_LEN - 1] == b'\n'
    {
        &modinfo[MODINFO_SENTINEL_LEN..modinfo.len() - MODINFO_SENTINEL_LEN]
    } else {
        modinfo
    }
}

/// Reads a uvarint length followed by that many bytes; returns the bytes and
/// the offset after them.
fn read_varint_string(data: &[u8], offset: usize) -> Result<(&[u8], usize), BuildInfoError> {
    let mut len: u64 = 0;
    let mut shift = 0u32;
    let mut pos = offset;
    loop {
        let byte = *data
            .get(pos)
            .ok_or(BuildInfoError::StringOutOfBounds(offset))?;
        pos += 1;
        if shift >= 64 {
            return Err(BuildInfoError::StringOutOfBounds(offset));
        }
        len |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let len = usize::try_from(len).map_err(|_| BuildInfoError::StringOutOfBounds(offset))?;
    let end = pos
        .checked_add(len)
        .filter(|&end| end <= data.len())
        .ok_or(BuildInfoError::StringOutOfBounds(offset))?;
    Ok((&data[pos..end], end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(version: &str, modinfo: &str) -> Vec<u8> {
        let mut s = MAGIC.to_vec();
        s.push(8);
        s.push(FLAG_INLINE_STRINGS);
        s.resize(INLINE_STRINGS_OFFSET, 0);
        for text in [version.as_bytes().to_vec(), framed(modinfo)] {
            s.push(u8::try_from(text.len()).unwrap());
            s.extend_from_slice(&text);
        }
        s
    }

    fn framed(modinfo: &str) -> Vec<u8> {
        let mut v = vec![0x30; MODINFO_SENTINEL_LEN];
        v.extend_from_slice(modinfo.as_bytes());
        v.extend_from_slice(&[0x31; MODINFO_SENTINEL_LEN]);
        v
    }

    #[test]
    fn parses_version_and_settings() {
        let info = BuildInfo::parse(&section(
            "go1.27.3",
            "path\texample.com/app\nmod\texample.com/app\t(devel)\t\nbuild\t-ldflags=\"-s -w\"\nbuild\tCGO_ENABLED=1\n",
        ))
        .unwrap();
        assert_eq!(info.go_version, GoVersion::new(27, 3));
        assert_eq!(info.path, "example.com/app");
        assert_eq!(info.setting("-ldflags"), Some("-s -w"));
        assert_eq!(info.setting("CGO_ENABLED"), Some("1"));
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        assert_eq!(
            BuildInfo::parse(b"short"),
            Err(BuildInfoError::Truncated(5))
        );
        let mut bad = section("go1.22.1", "");
        bad[0] = 0;
        assert_eq!(BuildInfo::parse(&bad), Err(BuildInfoError::BadMagic));
        let mut old = section("go1.17", "");
        old[15] = 0;
        assert!(matches!(
            BuildInfo::parse(&old),
            Err(BuildInfoError::PointerStrings(0))
        ));
        let good = section("go1.22.1", "path\tx\n");
        for cut in 0..good.len() {
            let _ = BuildInfo::parse(&good[..cut]);
        }
        let mut huge = section("go1.22.1", "");
        huge[INLINE_STRINGS_OFFSET] = 0xff;
        assert!(BuildInfo::parse(&huge).is_err());
    }
}
