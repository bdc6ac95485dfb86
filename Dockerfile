# authlab in a container: build with the Rust toolchain, run on a slim Debian.
#   docker compose up --build     (see README.md: create jwt.secret first)
#
# Base images are pinned by tag, builder and runtime on the same Debian release (bookworm), so the
# binary finds the glibc it was linked against. To bump: pick the newest `rust:X.Y.Z-slim-bookworm`
# (not older than `rust-version` in Cargo.toml) and the newest `debian:bookworm-YYYYMMDD-slim` from
# the Docker Hub tag lists of the official `rust` and `debian` images, change both ARGs below, and
# rebuild with `docker compose build --pull`.
ARG RUST_IMAGE=rust:1.95.0-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-20260824-slim

# The workspace reduced to what decides the dependency build: every Cargo.toml, Cargo.lock, and an
# empty file at each target's path. This stage reruns on any change, but its output only changes
# when a manifest or the lock file does, so the `COPY --from=skeleton` below stays cached.
FROM ${RUST_IMAGE} AS skeleton
WORKDIR /src
COPY . .
RUN set -eu; \
    cargo metadata --no-deps --format-version 1 --locked \
        | grep -o '"src_path":"[^"]*"' | cut -d'"' -f4 | sort -u >/tmp/targets; \
    mkdir /skeleton; \
    find . -name Cargo.toml -not -path './target/*' -exec cp --parents {} /skeleton/ \; ; \
    cp Cargo.lock /skeleton/; \
    while read -r path; do \
        stub="/skeleton/${path#/src/}"; \
        mkdir -p "$(dirname "$stub")"; \
        case "$stub" in \
            */lib.rs) : >"$stub" ;; \
            *) echo 'fn main() {}' >"$stub" ;; \
        esac; \
    done </tmp/targets

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# A stripped binary without debug info: what a container ships (a backtrace still names functions
# in a debug build run locally). Set here, for both builds below, so the dependency layer matches.
ENV CARGO_PROFILE_RELEASE_STRIP=true \
    CARGO_PROFILE_RELEASE_DEBUG=false
# 1. The dependencies alone, in their own layer: rebuilt only when a manifest or Cargo.lock changes.
#    --locked: build exactly the versions in Cargo.lock, or fail.
COPY --from=skeleton /skeleton/ ./
RUN cargo build --release --locked --bin authlab
# 2. The real sources (crates/ wholesale, so a new workspace member needs no change here). Their
#    files may be older than the stubs just built: touch them so cargo rebuilds every workspace
#    crate instead of trusting the stubs' fingerprints.
COPY . .
RUN find src crates -name '*.rs' -exec touch {} + \
    && cargo build --release --locked --bin authlab \
    && cp target/release/authlab /usr/local/bin/authlab

FROM ${RUNTIME_IMAGE}
# curl: the compose healthcheck runs it against /readyz inside the container.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
# Not root. The working directory is writable so the default SQLite file (./authlab.db) works
# when the image runs without a database URL.
RUN useradd --system --uid 10001 --home-dir /var/lib/authlab --create-home authlab
COPY --from=builder /usr/local/bin/authlab /usr/local/bin/authlab
USER authlab
WORKDIR /var/lib/authlab
EXPOSE 8080
ENTRYPOINT ["authlab"]
CMD ["serve", "--bind", "0.0.0.0:8080"]
