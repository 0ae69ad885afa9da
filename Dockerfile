# nomad-pool-operator container image.
#
#   docker build -t nomad-pool-operator:dev .
#
# A plain multi-stage build on official images with no BuildKit-only features
# (no cache mounts, no heredocs), so it builds unchanged with docker, podman or
# buildah on any machine with network access. It was written where no
# container engine runs, so it has not been built here; the cargo commands are
# the ones that build the release binary on the host.

# Builder: Debian 12 (bookworm), the same glibc as the distroless runtime below.
# A newer builder (trixie) could link symbols that bookworm's glibc lacks.
FROM docker.io/library/rust:1.95-bookworm AS builder
WORKDIR /src

# Dependency layer: build every dependency against stub sources, so editing
# the operator's code does not recompile the ~400 crates it depends on. The
# stubs only have to satisfy the workspace's manifests (both members and their
# declared targets); if a member or an explicit [[bin]]/[[bench]] target is
# added, add a stub for it here.
COPY Cargo.toml Cargo.lock ./
COPY nomad-sim/Cargo.toml nomad-sim/Cargo.toml
COPY testkit/Cargo.toml testkit/Cargo.toml
RUN mkdir -p src benches/scale_in nomad-sim/src nomad-sim/benches testkit/src \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > benches/scale_in/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > nomad-sim/src/main.rs \
 && touch nomad-sim/src/lib.rs \
 && echo 'fn main() {}' > nomad-sim/benches/scale.rs \
 && touch testkit/src/lib.rs \
 && cargo build --release --locked --bin nomad-pool-operator \
 && rm -rf src benches nomad-sim testkit

# The real build. `touch` makes the copied sources newer than the stub build
# (COPY keeps the build context's timestamps), so cargo rebuilds the crate.
COPY . .
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin nomad-pool-operator \
 && cp target/release/nomad-pool-operator /nomad-pool-operator

# Runtime: glibc and libgcc only (the binary uses rustls with aws-lc-rs, no
# OpenSSL), no shell, non-root by default.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /nomad-pool-operator /usr/local/bin/nomad-pool-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/nomad-pool-operator"]
CMD ["run"]
