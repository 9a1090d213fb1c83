# syntax=docker/dockerfile:1
# The pipeline daemon as a container image.
#   docker build -t pipeline:local .
#   docker run --rm -p 9898:9898 -v "$PWD/pipeline.toml:/etc/pipeline/pipeline.toml:ro" \
#       --env-file deploy/pipeline.env.example pipeline:local
# See docs/deploy.md. Linted by scripts/validate-deploy (hadolint).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- build ------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# The whole context (see .dockerignore): Cargo needs every declared target's file and every
# workspace member (crates/randomuser, benches/ceiling) to parse the manifest, the migrations
# are embedded by sqlx::migrate!, and pipeline.toml by a test.
COPY . .
# The cargo features of the binary. The default keeps `pipeline emulator` (compose.yaml's
# emulator service runs this image); a production image may leave it out with
# --build-arg CARGO_FEATURES=mimalloc.
ARG CARGO_FEATURES="mimalloc emulator"
# Registry, git checkouts and target/ live in BuildKit cache mounts: a rebuild after a source
# change recompiles only the crate itself. The binary is copied out of the cache mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin pipeline \
        --no-default-features --features "${CARGO_FEATURES}" \
    && install -D -m 0755 target/release/pipeline /out/pipeline

# ---- runtime ----------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: TLS to the real API. curl: the HEALTHCHECK below (the slim image has no HTTP
# client; the daemon has no self-probe subcommand). Versions are not pinned (DL3008): the
# bookworm security archive replaces old versions, so pins would break rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 pipeline \
    && useradd --system --uid 10001 --gid pipeline --home-dir /var/lib/pipeline \
       --create-home --shell /usr/sbin/nologin pipeline
COPY --from=builder /out/pipeline /usr/local/bin/pipeline
COPY pipeline.toml /etc/pipeline/pipeline.toml
# In a container the metrics/health endpoint must listen beyond loopback to be scraped and
# published; override with -e PIPELINE_HTTP__LISTEN=... (env wins over the config file).
# Beyond loopback the status page needs a bearer token: mount one at /run/secrets/http_token
# (compose secrets do; docs/deploy.md). DL3064 flags the name: the value is a path, not a secret.
# hadolint ignore=DL3064
ENV PIPELINE_HTTP__LISTEN=0.0.0.0:9898 \
    PIPELINE_HTTP__TOKEN_FILE=/run/secrets/http_token \
    PIPELINE_LOG__FORMAT=json
# Numeric, so that Kubernetes' runAsNonRoot can verify it (uid/gid 10001 = pipeline).
USER 10001:10001
WORKDIR /var/lib/pipeline
EXPOSE 9898
# /healthz answers as soon as the HTTP listener is up (liveness); /readyz is the readiness view.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:9898/healthz"]
# The daemon drains on SIGTERM within runtime.shutdown_deadline (30s by default): give it time
# with `docker stop -t 45` / compose stop_grace_period.
STOPSIGNAL SIGTERM
ENTRYPOINT ["pipeline"]
CMD ["run", "--config", "/etc/pipeline/pipeline.toml"]
