# Sourced by the scripts that build the `dist` binary (image.sh, release.sh, layout.sh, bench/): the code layout
# and the linker map every one of them builds with, so none relinks another's build (crates/cli/build.rs).
# Needs CARGO_TARGET_DIR set.
export KEYWAY_CODE_LAYOUT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/crates/cli/keyway.order"
export KEYWAY_LINK_MAP="$CARGO_TARGET_DIR/dist/keyway.map"
