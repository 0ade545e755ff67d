//! Builds the kernel programs (observer-ebpf) with the nightly toolchain and
//! bpf-linker, into OUT_DIR, for `include_bytes_aligned!` in `probes::loader`.
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    // AYA_BUILD_SKIP=1 (fast lint, fuzzing): leave an empty object so the
    // crate compiles; loading probes then fails with a clear error.
    if std::env::var_os("AYA_BUILD_SKIP")
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    {
        let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
        std::fs::write(out.join("observer"), [])?;
    }
    let ebpf_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../observer-ebpf");
    println!("cargo:rerun-if-changed=../observer-common/src");
    aya_build::build_ebpf(
        [Package {
            name: "observer-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
