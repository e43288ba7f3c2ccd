//! Code layout of the `keyway` binary, when `KEYWAY_CODE_LAYOUT` names an lld symbol-ordering file (the
//! project's build scripts set it through `scripts/dist.sh`; plain `cargo build` links as usual): the
//! functions the daemon runs (start-up, the first fetches, cached reads; `crates/cli/keyway.order`, made by
//! `scripts/layout.sh` from a callgrind profile) are placed together, so the kernel, which maps code in 64 KB
//! blocks around each fault, maps a few MB of the binary instead of most of it (docs/benchmarks.md).
//! `KEYWAY_LINK_MAP` asks lld for its map, which `scripts/layout.sh --check` reads.

fn main() {
    println!("cargo::rerun-if-env-changed=KEYWAY_CODE_LAYOUT");
    println!("cargo::rerun-if-env-changed=KEYWAY_LINK_MAP");
    if let Some(order) = std::env::var_os("KEYWAY_CODE_LAYOUT").filter(|v| !v.is_empty()) {
        let order = std::path::PathBuf::from(order);
        println!("cargo::rerun-if-changed={}", order.display());
        println!(
            "cargo::rustc-link-arg-bin=keyway=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        // Functions the file names that this build does not have (renamed since) are skipped, not errors.
        println!("cargo::rustc-link-arg-bin=keyway=-Wl,--no-warn-symbol-ordering");
    }
    if let Some(map) = std::env::var_os("KEYWAY_LINK_MAP").filter(|v| !v.is_empty()) {
        println!(
            "cargo::rustc-link-arg-bin=keyway=-Wl,-Map={}",
            std::path::Path::new(&map).display()
        );
    }
}
