//! Human-readable numbers for text reports.

/// 1.5 KB, 12.3 MB, 2.0 GB (decimal units, as rates are read).
pub fn bytes(value: f64) -> String {
    scaled(value, &["B", "KB", "MB", "GB", "TB"], 1000.0)
}

/// 950, 12.3 k, 4.56 M.
pub fn count(value: f64) -> String {
    let s = scaled(value, &["", "k", "M", "G"], 1000.0);
    s.trim_end().to_string()
}

/// 850 ns, 12.0 µs, 3.40 ms, 1.20 s.
pub fn duration_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// `text` with control characters (escape sequences, newlines, NUL)
/// escaped, so a name taken from a target cannot drive the terminal.
pub fn escape_control(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `text` for a one-line message: control characters escaped and at most
/// `max` bytes kept (a target's build info can carry a megabyte).
pub fn bounded(text: &str, max: usize) -> String {
    let escaped = escape_control(text);
    if escaped.len() <= max {
        return escaped;
    }
    let mut cut = max;
    while !escaped.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &escaped[..cut])
}

/// Longest text taken from a target shown in one message.
pub const MAX_SHOWN: usize = 160;

/// An overhead budget: "1%", or "off" when unlimited.
pub fn budget(percent: f64) -> String {
    if percent.is_finite() {
        format!("{percent}%")
    } else {
        "off".into()
    }
}

/// GOGC as the runtime's GODEBUG would name it: "100", or "off".
pub fn gogc(percent: Option<i32>) -> String {
    percent.map_or_else(|| "off".to_string(), |p| p.to_string())
}

/// GOMEMLIMIT: "48.00 MB", or "off" when unset (math.MaxInt64 or absent).
pub fn gomemlimit(limit: Option<i64>) -> String {
    match limit {
        Some(l) if l != i64::MAX && l >= 0 => bytes(l as f64),
        _ => "off".into(),
    }
}

/// 12.3%.
pub fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

fn scaled(mut value: f64, units: &[&str], step: f64) -> String {
    let mut unit = 0;
    while value.abs() >= step && unit + 1 < units.len() {
        value /= step;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", units[0])
    } else {
        format!("{value:.2} {}", units[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(999.0), "999 B");
        assert_eq!(bytes(1_500_000.0), "1.50 MB");
        assert_eq!(count(12_300.0), "12.30 k");
        assert_eq!(count(5.0), "5");
        assert_eq!(duration_ns(12_000.0), "12.0 µs");
        assert_eq!(percent(0.123), "12.3%");
    }
}
