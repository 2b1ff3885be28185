# syntax=docker/dockerfile:1
#
# One image for the regcheck controller and its probes: a static (musl) binary at /regcheck on
# distroless/static (CA certificates, /etc/passwd with nonroot, no shell), run as 65532.
#
#   docker build -t regcheck:dev .
#   docker run --rm regcheck:dev check --help
#
# Multi-platform (BuildKit): the builder runs on the build machine's own platform
# (--platform=$BUILDPLATFORM) and cross-compiles for each TARGETPLATFORM:
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t <registry>/regcheck:<tag> --push .
#
# PLATFORMS: linux/amd64,linux/arm64
# (the controller's --probe-image-platforms default is this list; tests/packaging.rs checks it)
#
# Toolchains (Debian bookworm packages, all versions pinned):
# - target == build platform: musl-tools' musl-gcc compiles ring's C and assembly parts, and
#   rustc links with its own self-contained musl (crt objects and libc.a from rust-std).
# - linux/arm64 built on amd64: gcc-aarch64-linux-gnu (with libc6-dev-arm64-cross) compiles
#   ring's C/assembly for aarch64 (CC_aarch64_unknown_linux_musl) and is the linker driver
#   (CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER); rustc passes -nostartfiles and links
#   rust-std's self-contained musl, so the glibc cross compiler yields a static musl binary.
#   Verified outside Docker with the same packages and rustup target: a static aarch64 ELF that
#   runs (`--version`, `explain`) under qemu-aarch64-static.
# - linux/amd64 built on arm64: the same with gcc-x86-64-linux-gnu (not verified here).
#
# Build arguments: RUST_VERSION (builder toolchain), VERSION and REVISION (OCI labels).

ARG RUST_VERSION=1.95

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS builder
ARG TARGETPLATFORM
ARG BUILDPLATFORM
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The Rust target and C toolchain of TARGETPLATFORM, written to /target.env for the build.
RUN case "${TARGETPLATFORM:-linux/amd64}" in \
      linux/amd64) target=x86_64-unknown-linux-musl; gnu=x86_64-linux-gnu ;; \
      linux/arm64) target=aarch64-unknown-linux-musl; gnu=aarch64-linux-gnu ;; \
      *) echo "TARGETPLATFORM ${TARGETPLATFORM} is not built here (PLATFORMS: linux/amd64,linux/arm64)" >&2; exit 1 ;; \
    esac \
    && apt-get update \
    && if [ "${TARGETPLATFORM:-linux/amd64}" = "${BUILDPLATFORM:-linux/amd64}" ]; then \
         apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
         && echo "TARGET=${target}" > /target.env; \
       else \
         case "${target}" in \
           aarch64-*) apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu=4:12.2.0-3 libc6-dev-arm64-cross=2.36-8cross1 ;; \
           x86_64-*) apt-get install -y --no-install-recommends gcc-x86-64-linux-gnu=4:12.2.0-3 libc6-dev-amd64-cross=2.36-8cross1 ;; \
         esac \
         && env_target="$(echo "${target}" | tr 'a-z-' 'A-Z_')" \
         && cc_target="$(echo "${target}" | tr '-' '_')" \
         && { echo "TARGET=${target}"; \
              echo "CC_${cc_target}=${gnu}-gcc"; \
              echo "AR_${cc_target}=${gnu}-ar"; \
              echo "CARGO_TARGET_${env_target}_LINKER=${gnu}-gcc"; } > /target.env; \
       fi \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add "${target}"
WORKDIR /src
# Only what the binary needs (see .dockerignore): the manifest, the lock file and the sources.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# --locked: exactly the dependency versions of Cargo.lock. The cache mounts keep the registry
# and the build directory between builds (BuildKit; the platforms' builds take turns on it,
# each in its own target/<triple>); the binary is copied out of the cache. Only a native build
# can run the binary it built.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    set -a && . /target.env && set +a \
    && cargo build --release --locked --target "${TARGET}" --bin regcheck \
    && install -D -m 0755 "target/${TARGET}/release/regcheck" /out/regcheck \
    && if [ "${TARGETPLATFORM:-linux/amd64}" = "${BUILDPLATFORM:-linux/amd64}" ]; then /out/regcheck --version; fi

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
