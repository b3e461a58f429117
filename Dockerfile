# Multi-stage build: compile in the Rust image, run in a small Debian image as
# a non-root user. The SQLite database and the generated key live in /data.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
# Cargo.toml names the bench targets; cargo refuses a manifest whose targets are missing.
COPY benches ./benches
RUN cargo build --release --locked && strip target/release/auth-api

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin auth \
    && mkdir -p /data && chown auth /data
COPY --from=build /src/target/release/auth-api /usr/local/bin/auth-api
USER auth
WORKDIR /data
ENV BIND_ADDR=0.0.0.0:8080 \
    DATABASE_URL=sqlite:///data/auth.db \
    RUST_LOG=info
VOLUME ["/data"]
EXPOSE 8080
# The binary probes itself: no curl needed in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/auth-api", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/auth-api"]
CMD ["serve"]
