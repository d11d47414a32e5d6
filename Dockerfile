# syntax=docker/dockerfile:1
# Multi-stage: build with the Rust toolchain, run from a minimal, non-root, shell-less image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice --bin sluice \
 && objcopy --strip-debug target/release/sluice /sluice

# The release profile keeps line tables for the backtraces of local builds (125 MB); the
# image's binary drops them and keeps its symbols (30 MB): panics still name functions.

# glibc and libgcc only: what a Rust binary needs. Runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /sluice /usr/local/bin/sluice
USER 65532:65532
EXPOSE 8080 8443 10254
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["serve"]
