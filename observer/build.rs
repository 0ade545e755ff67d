//! Builds the kernel programs (observer-ebpf) with the nightly toolchain and
//! bpf-linker, into OUT_DIR, for `include_bytes_aligned!` in `probes::loader`.
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
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
