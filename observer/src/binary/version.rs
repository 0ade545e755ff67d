//! Go release versions (`go1.N.P`) and the range goscope supports.

use std::fmt;

/// A Go release, major version 1 implied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoVersion {
    pub minor: u32,
    pub patch: u32,
}

/// Oldest and newest Go minor versions goscope was verified against.
pub const OLDEST_SUPPORTED: GoVersion = GoVersion::new(19, 0);
pub const NEWEST_SUPPORTED: GoVersion = GoVersion::new(27, u32::MAX);
/// Minor versions inside the range that no toolchain here could verify.
pub const UNVERIFIED_MINORS: &[u32] = &[20];

impl GoVersion {
    pub const fn new(minor: u32, patch: u32) -> Self {
        Self { minor, patch }
    }

    /// Parses `go1.22.10`, `go1.21`, `go1.23rc1`, `go1.24.0 X:boringcrypto`
    /// and `devel go1.25-abcdef ...`.
    pub fn parse(text: &str) -> Option<Self> {
        let start = text.find("go1.")? + 4;
        let rest = &text[start..];
        let minor_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let minor = rest[..minor_len].parse().ok()?;
        let rest = &rest[minor_len..];
        let patch = match rest.strip_prefix('.') {
            Some(p) => {
                let len = p.bytes().take_while(u8::is_ascii_digit).count();
                p[..len].parse().unwrap_or(0)
            }
            None => 0,
        };
        Some(Self { minor, patch })
    }

    pub fn is_supported(self) -> bool {
        (OLDEST_SUPPORTED.minor..=NEWEST_SUPPORTED.minor).contains(&self.minor)
    }

    pub fn is_verified(self) -> bool {
        self.is_supported() && !UNVERIFIED_MINORS.contains(&self.minor)
    }

    pub fn at_least(self, minor: u32) -> bool {
        self.minor >= minor
    }
}

impl fmt::Display for GoVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "go1.{}.{}", self.minor, self.patch)
    }
}

/// The supported range, for error messages.
pub fn supported_range() -> String {
    format!(
        "go1.{} to go1.{}",
        OLDEST_SUPPORTED.minor, NEWEST_SUPPORTED.minor
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_release_strings() {
        assert_eq!(GoVersion::parse("go1.22.10"), Some(GoVersion::new(22, 10)));
        assert_eq!(GoVersion::parse("go1.21"), Some(GoVersion::new(21, 0)));
        assert_eq!(GoVersion::parse("go1.23rc1"), Some(GoVersion::new(23, 0)));
        assert_eq!(
            GoVersion::parse("devel go1.25-abc123 Tue"),
            Some(GoVersion::new(25, 0))
        );
        assert_eq!(GoVersion::parse("go2"), None);
        assert!(GoVersion::new(27, 3).is_supported());
        assert!(!GoVersion::new(18, 0).is_supported());
        assert!(!GoVersion::new(20, 1).is_verified());
    }
}
