# syntax=docker/dockerfile:1
# Multi-stage build: compile with the Rust toolchain, run on a small glibc base with CA
# certificates (the binary links glibc; no musl target on our toolchain).
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin trustkeeper

FROM ${RUNTIME_IMAGE}
COPY --from=build /src/target/release/trustkeeper /usr/local/bin/trustkeeper
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/trustkeeper"]
