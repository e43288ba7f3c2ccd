#!/usr/bin/env bash
# Builds every artifact a user installs Keyway from, into OUT_DIR (default: dist/), with SHA256SUMS:
#   keyway-VERSION-x86_64-unknown-linux-gnu.tar.gz   the binary (dist profile), LICENSE, README.md, the systemd units
#   keyway-VERSION-*.whl, keyway_cli-VERSION-*.whl   the Python package (abi3) and the command as a wheel,
#                                                    manylinux-tagged, checked by auditwheel
#   keyway-VERSION.tgz                               the Helm chart (packaged by Helm's own Go SDK)
#   keyway-VERSION-oci.tar                           the container image (scripts/image.sh)
#   keyway-VERSION-rust.cdx.json, -python.cdx.json   SBOMs (CycloneDX) of the Rust and Python dependencies
#   keyway-VERSION-crates/                           the crates `cargo install keyway` needs, as `cargo package`
#                                                    makes and verifies them (built from the packaged sources alone)
# Offline but for the package registries (crates.io, PyPI, Debian); installs what it needs (buildah, the venv's
# tools, cargo-cyclonedx under $KEYWAY_TOOLS) idempotently. Runs as root (buildah). Only x86_64 Linux here: other
# targets (aarch64 Linux, macOS) need a toolchain and a C sysroot rustup cannot fetch on these machines.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/keyway/target}
export CARGO_TERM_COLOR=never
out=$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)
tools=${KEYWAY_TOOLS:-$HOME/.cache/keyway/tools}
venv=$("$root/scripts/python-env.sh")
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
target=x86_64-unknown-linux-gnu
[ "$(uname -m)-unknown-linux-gnu" = "$target" ] || { echo "error: release builds run on $target" >&2; exit 1; }
# Empties OUT_DIR only when it is a release directory already (or empty): a mistyped path such as `.` or `/`
# must not be wiped.
if [ -n "$(ls -A "$out")" ] && [ ! -f "$out/SHA256SUMS" ]; then
  echo "error: $out holds files and no SHA256SUMS, so it is not a release directory; give an empty or new one" >&2
  exit 2
fi
rm -rf "${out:?}"/*

echo "==> the keyway binary (cargo build --profile dist, with the code layout)" >&2
source scripts/dist.sh
cargo build --profile dist --locked -p keyway
scripts/layout.sh --check >&2
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
bundle=$stage/keyway-$version-$target
mkdir -p "$bundle/systemd"
install -m 0755 "$CARGO_TARGET_DIR/dist/keyway" "$bundle/keyway"
install -m 0644 LICENSE README.md "$bundle/"
install -m 0644 deploy/systemd/* "$bundle/systemd/"
tar -C "$stage" --owner=0 --group=0 --numeric-owner -czf "$out/keyway-$version-$target.tar.gz" "keyway-$version-$target"

echo "==> the wheels (maturin, auditwheel)" >&2
for project in crates/python crates/cli; do
  "$venv/bin/maturin" build --quiet --locked --profile dist --auditwheel check -m "$project/Cargo.toml" -o "$out" >&2
done
for wheel in "$out"/*.whl; do
  # auditwheel: the manylinux tag the wheel carries is one its shared objects' symbol versions allow.
  tag=$(basename "$wheel" .whl | awk -F- '{print $NF}')
  "$venv/bin/auditwheel" show "$wheel" | tr -s '\n ' '  ' >"$stage/auditwheel.txt"
  grep -q "consistent with the following platform tag: \"$tag\"" "$stage/auditwheel.txt" || {
    cat "$stage/auditwheel.txt" >&2
    echo "error: auditwheel does not agree with $(basename "$wheel")'s tag $tag" >&2
    exit 1
  }
done
ls "$out"/keyway-"$version"-cp311-abi3-manylinux*.whl "$out"/keyway_cli-"$version"-py3-none-manylinux*.whl >/dev/null

echo "==> the Helm chart (Helm's SDK)" >&2
"$venv/bin/python" -c 'import sys, helm_python as helm; print(helm.package(sys.argv[1], destination=sys.argv[2]))' \
  deploy/chart/keyway "$out" >/dev/null
[ -f "$out/keyway-$version.tgz" ]

echo "==> the image (scripts/image.sh)" >&2
scripts/image.sh "$out" >/dev/null

echo "==> SBOMs (cargo-cyclonedx, cyclonedx-py)" >&2
if [ ! -x "$tools/bin/cargo-cyclonedx" ]; then
  cargo install --quiet --locked cargo-cyclonedx --version 0.5.9 --root "$tools"
fi
PATH=$tools/bin:$PATH cargo cyclonedx --quiet --manifest-path crates/cli/Cargo.toml --format json \
  --target "$target" --override-filename "keyway-sbom"
mv crates/cli/keyway-sbom.json "$out/keyway-$version-rust.cdx.json"
# The Python SBOM is the environment the wheels install into (pip's resolution; the `ray` extra left out).
python3 -m venv "$stage/venv"
"$stage/venv/bin/pip" install --quiet --no-index "$out"/*.whl
"$venv/bin/cyclonedx-py" environment --output-format JSON --output-file "$out/keyway-$version-python.cdx.json" \
  "$stage/venv/bin/python" >&2

echo "==> the crates (cargo package, verified)" >&2
crates=(keyway-core keyway-api keyway-client keyway-config keyway-providers keyway-daemon keyway-inject
  keyway-webhook keyway)
# Verification builds the packaged crates as registry crates in this target directory, and cargo trusts a
# registry crate it built before at the same version without reading its sources again: an earlier run's
# keyway-core stood in for this one's and keyway-daemon failed against it. Their unpacked copies, tarballs and
# fingerprints go first (the workspace's keyway crates rebuild with them: a minute or two).
rm -rf "$CARGO_TARGET_DIR/package" "$CARGO_TARGET_DIR"/debug/.fingerprint/keyway-*
for crate in "${crates[@]}"; do
  rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/-*/"$crate-$version"
done
cargo package --quiet --locked --allow-dirty $(printf -- '-p %s ' "${crates[@]}") >&2
mkdir -p "$out/keyway-$version-crates"
for crate in "${crates[@]}"; do
  cp "$CARGO_TARGET_DIR/package/$crate-$version.crate" "$out/keyway-$version-crates/"
done

echo "==> the Install lines of README.md, as a user runs them" >&2
tar -C "$stage" -xzf "$out/keyway-$version-$target.tar.gz"
check_version() { # the binary at $1 says it is this version
  [ "$("$1" --version)" = "keyway $version" ] || { echo "error: $1 --version: $("$1" --version)" >&2; exit 1; }
}
check_version "$stage/keyway-$version-$target/keyway"
cargo install --quiet --locked --profile dist --path crates/cli --root "$stage/cargo" >&2
check_version "$stage/cargo/bin/keyway"
check_version "$stage/venv/bin/keyway" # the keyway-cli wheel, installed above
"$stage/venv/bin/python" -c 'import keyway' # the keyway wheel (keyway.ray needs the `ray` extra: Ray itself)
buildah --storage-driver vfs pull --quiet "oci-archive:$out/keyway-$version-oci.tar" >/dev/null
"$venv/bin/python" - "$out/keyway-$version.tgz" "$version" <<'PY'
import sys, yaml, helm_python as helm
chart = helm.Chart.load_archive(open(sys.argv[1], "rb").read())
docs = chart.render({"image": {"repository": "registry.example.com/keyway"}}, name="keyway", namespace="keyway",
                    is_install=True)
images = {c["image"] for text in docs.values() for d in yaml.safe_load_all(text) if d and d["kind"] in
          ("DaemonSet", "Deployment") for c in d["spec"]["template"]["spec"]["containers"]}
assert images == {f"registry.example.com/keyway:{sys.argv[2]}"}, images
PY

echo "==> checksums" >&2
(cd "$out" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
(cd "$out" && sha256sum --quiet -c SHA256SUMS)
echo "==> $out:" >&2
(cd "$out" && ls -l --block-size=K . "keyway-$version-crates") >&2
echo "$out"
