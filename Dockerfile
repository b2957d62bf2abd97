# syntax=docker/dockerfile:1
# Multi-stage build: compile with the Rust toolchain, run on a small glibc base with CA
# certificates (the binary links glibc: no musl target on our toolchain; distroless "cc", not
# "static"). No shell is needed at run time.
#
# BINARY_STAGE=prebuilt takes target/release/trustkeeper from the build context instead of
# compiling (CI builds the binary on the host and assembles RUNTIME_IMAGE locally, since public
# base images cannot be pulled there).
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARY_STAGE=build

FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo ./.cargo
COPY src ./src
COPY crates ./crates
COPY benches ./benches
RUN cargo build --release --locked --bin trustkeeper \
    && install -D -m 0755 target/release/trustkeeper /out/trustkeeper

FROM scratch AS prebuilt
COPY target/release/trustkeeper /out/trustkeeper

FROM ${BINARY_STAGE} AS binary

FROM ${RUNTIME_IMAGE}
COPY --from=binary /out/trustkeeper /usr/local/bin/trustkeeper
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/trustkeeper"]
CMD ["controller"]
