//! Whether the tree at DIR is the code a binary was built from: each of
//! the module's named functions (closures and wrappers aside) must start,
//! by the binary's pclntab (`_func.startLine`), on a line of the tree that
//! declares it. A tree edited since the build moves declarations; the
//! join would then put reasons on the wrong lines, so it is said, never
//! done silently.

use std::path::Path;

use crate::binary::{GoBinary, lines::LineTable};

/// Functions checked at most.
const MAX_CHECKED: usize = 2000;

/// How the tree and the binary compare.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    pub checked: usize,
    /// (function, file:line in the binary) declared elsewhere in the tree.
    pub moved: Vec<(String, String)>,
}

/// The bare name a declaration line must hold ("main.(*T).Run" → "Run").
fn declared_name(function: &str) -> Option<&str> {
    let function = function.strip_suffix("[...]").unwrap_or(function);
    let last = function.rsplit('.').next()?;
    let generic_free = last;
    let plain = !function.contains(".func")
        && !function.contains("gowrap")
        && !function.ends_with("-fm")
        && !generic_free.is_empty()
        && generic_free != "init"
        && generic_free
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_');
    plain.then_some(generic_free)
}

/// Compares the functions of the binary's `package_prefixes` packages.
pub fn compare(
    binary: &GoBinary,
    root: &Path,
    relative: impl Fn(&str) -> Option<String>,
    package_prefixes: &[String],
) -> Comparison {
    let Ok(lines) = LineTable::parse(binary) else {
        return Comparison::default();
    };
    let mut result = Comparison::default();
    let mut functions: Vec<_> = binary
        .functions
        .iter()
        .filter(|f| {
            package_prefixes
                .iter()
                .any(|p| f.name.starts_with(p.as_str()))
        })
        .collect();
    functions.sort_by_key(|f| f.address);
    for f in functions.into_iter().take(MAX_CHECKED) {
        let Some(name) = declared_name(&f.name) else {
            continue;
        };
        let Some((_, file, start)) = lines.function_start(f.address) else {
            continue;
        };
        let Some(rel) = relative(&file) else { continue };
        let Ok(text) = std::fs::read_to_string(root.join(&rel)) else {
            continue;
        };
        result.checked += 1;
        let declares = usize::try_from(start - 1)
            .ok()
            .and_then(|i| text.lines().nth(i))
            .is_some_and(|l| l.trim_start().starts_with("func") && l.contains(name));
        if !declares {
            result
                .moved
                .push((f.name.clone(), format!("{rel}:{start}")));
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::declared_name;

    #[test]
    fn closures_and_wrappers_are_not_checked() {
        assert_eq!(declared_name("main.retPtr"), Some("retPtr"));
        assert_eq!(declared_name("main.(*T).Run"), Some("Run"));
        assert_eq!(declared_name("main.main.func1"), None);
        assert_eq!(declared_name("main.startRecv.gowrap1"), None);
        assert_eq!(declared_name("main.init"), None);
        assert_eq!(declared_name("main.Map[...]"), Some("Map"));
    }
}
