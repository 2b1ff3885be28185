# syntax=docker/dockerfile:1
#
# One image for the regcheck controller and its probes: a static (musl) binary at /regcheck on
# distroless/static (CA certificates, /etc/passwd with nonroot, no shell), run as 65532.
#
#   docker build -t regcheck:dev .
#   docker run --rm regcheck:dev check --help
#
# Build arguments: RUST_VERSION (builder toolchain), VERSION and REVISION (OCI labels).

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
ARG TARGET=x86_64-unknown-linux-musl
# musl-gcc compiles ring's C and assembly parts for the musl target (bookworm's version).
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add "${TARGET}"
WORKDIR /src
# Only what the binary needs (see .dockerignore): the manifest, the lock file and the sources.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# --locked: exactly the dependency versions of Cargo.lock. The cache mounts keep the registry
# and the build directory between builds (BuildKit); the binary is copied out of the cache.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target "${TARGET}" --bin regcheck \
    && install -D -m 0755 "target/${TARGET}/release/regcheck" /out/regcheck \
    && /out/regcheck --version

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="regcheck" \
      org.opencontainers.image.description="Finds out why a Kubernetes cluster cannot reach its container registry: controller and probe" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"
COPY --from=builder /out/regcheck /regcheck
USER 65532:65532
ENTRYPOINT ["/regcheck"]
CMD ["--help"]
