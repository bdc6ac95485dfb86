# authlab in a container: build with the Rust toolchain, run on a slim Debian.
#   docker compose up --build     (see README.md: create jwt.secret first)

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# --locked: build exactly the versions in Cargo.lock, or fail.
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# Not root. The working directory is writable so the default SQLite file (./authlab.db) works
# when the image runs without a database URL.
RUN useradd --system --uid 10001 --home-dir /var/lib/authlab --create-home authlab
COPY --from=builder /src/target/release/authlab /usr/local/bin/authlab
USER authlab
WORKDIR /var/lib/authlab
EXPOSE 8080
ENTRYPOINT ["authlab"]
CMD ["serve", "--bind", "0.0.0.0:8080"]
