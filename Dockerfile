# The keyway image: one static-ish binary on a distroless runtime (no shell, no package manager).
# Build: docker build -t keyway .   (no Docker engine runs on the development machines; CI tests the binary itself)
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p keyway \
 && strip target/release/keyway

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/keyway /usr/local/bin/keyway
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/keyway"]
