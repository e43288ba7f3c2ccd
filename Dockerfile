# The keyway image for users with a Docker engine and registry access: the same layout scripts/image.sh builds
# offline with buildah (which CI runs and tests): the stripped `dist` binary as /usr/local/bin/keyway on a
# distroless runtime (glibc, CA bundle, user nonroot 65532; no shell, no package manager).
#   docker build -t registry.example.com/keyway:0.1.0 .
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# The code layout (crates/cli/build.rs, scripts/dist.sh): the functions the daemon runs placed together.
ENV KEYWAY_CODE_LAYOUT=/src/crates/cli/keyway.order
RUN cargo build --profile dist --locked -p keyway

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/dist/keyway /usr/local/bin/keyway
ENV PATH=/usr/local/bin
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/keyway"]
CMD ["--help"]
LABEL org.opencontainers.image.title=keyway \
      org.opencontainers.image.source=https://github.com/keyway-dev/keyway \
      org.opencontainers.image.licenses=Apache-2.0
