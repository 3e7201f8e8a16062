# Podium's container image (README, "Deploying" → "Docker"):
#
#   docker build -t podium .                      # the server
#   docker build --target demo -t podium:demo .   # the same, with the demo registry baked in
#   docker run --rm -p 8000:8000 -p 8001:8001 podium:demo
#
# Layout inside the image:
#   /opt/podium/bin/podium             the binary (the image's entrypoint)
#   /opt/podium/bin/libonnxruntime.so  ONNX Runtime, found beside the binary
#   /var/lib/podium/registry           the registry (PODIUM_REGISTRY): mount a volume
#   /var/lib/podium/tables             where to write the inference table (set PODIUM_TABLE_DIR)
#   /var/cache/podium                  artifacts downloaded from MLflow (PODIUM_CACHE_DIR)
#   /etc/podium                        for an endpoints file (PODIUM_CONFIG), keys, certificates

ARG RUST_VERSION=1.95
# The onnxruntime wheel the library comes from; the same default as scripts/setup-ort.sh.
ARG ORT_VERSION=1.31.1

# ---------------------------------------------------------------------------
# ONNX Runtime: the shared library from the onnxruntime wheel on PyPI, fetched
# by the checkout's own scripts/setup-ort.sh (in a stage of its own, so it is
# cached apart from the Rust build and runs beside it).
FROM rust:${RUST_VERSION}-slim-bookworm AS ort
ARG ORT_VERSION
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip \
 && rm -rf /var/lib/apt/lists/*
COPY scripts/setup-ort.sh /ort/scripts/setup-ort.sh
# pip trusts the system's CA store (where a TLS-intercepting proxy's CA goes).
RUN PODIUM_ORT_VERSION="$ORT_VERSION" PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    /ort/scripts/setup-ort.sh

# ---------------------------------------------------------------------------
# The release binary. The cargo registry and the target directory are cache
# mounts: after the first build, a source change recompiles Podium only, not
# its dependencies.
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# No debug info in the image's binary (the release profile keeps some for
# profiling on a workstation); a smaller binary and a faster build.
ENV CARGO_PROFILE_RELEASE_DEBUG=0
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin podium \
 && install -D -m 0755 target/release/podium /out/podium

# ---------------------------------------------------------------------------
# The runtime: Debian slim, the binary, the library, a non-root user.
FROM debian:bookworm-slim AS runtime
RUN groupadd --system --gid 10001 podium \
 && useradd --system --uid 10001 --gid podium --no-create-home \
      --home-dir /var/lib/podium --shell /usr/sbin/nologin podium \
 && mkdir -p /var/lib/podium/registry /var/lib/podium/tables /var/cache/podium /etc/podium \
 && chown -R podium:podium /var/lib/podium /var/cache/podium
COPY --from=build /out/podium /opt/podium/bin/podium
COPY --from=ort /ort/.ort/libonnxruntime.so /opt/podium/bin/libonnxruntime.so
ENV PATH=/opt/podium/bin:$PATH \
    PODIUM_LISTEN=0.0.0.0:8000 \
    PODIUM_GRPC_LISTEN=0.0.0.0:8001 \
    PODIUM_REGISTRY=/var/lib/podium/registry \
    PODIUM_CACHE_DIR=/var/cache/podium
USER podium:podium
WORKDIR /var/lib/podium
EXPOSE 8000 8001
# `podium health` asks /v2/health/live on the port of PODIUM_LISTEN (the
# image has no curl). On SIGTERM (`docker stop`) Podium drains for up to
# PODIUM_DRAIN_TIMEOUT_SECS (30 s): give `docker stop` a longer --time.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/opt/podium/bin/podium", "health"]
ENTRYPOINT ["/opt/podium/bin/podium"]
# Listens on 0.0.0.0:8000 (REST) and 0.0.0.0:8001 (gRPC) through PODIUM_LISTEN
# and PODIUM_GRPC_LISTEN; change the ports there and the HEALTHCHECK follows.
CMD ["serve"]

# ---------------------------------------------------------------------------
# The demo: fraud@champion (v1) and fraud@challenger (v2), mlp@champion, the
# 90/10 endpoint fraud-ab, and an inference table rolled every 10 s, as
# scripts/demo.sh serves them.
FROM runtime AS demo
COPY models/fraud/v1.onnx models/fraud/v2.onnx /tmp/demo/fraud/
COPY models/mlp/v1.onnx /tmp/demo/mlp/
COPY models/demo-endpoints.toml /etc/podium/demo-endpoints.toml
ENV PODIUM_REGISTRY=/opt/podium/models
USER root
RUN install -d -o podium -g podium /opt/podium/models
USER podium:podium
RUN podium models register fraud /tmp/demo/fraud/v1.onnx \
 && podium models register fraud /tmp/demo/fraud/v2.onnx \
 && podium alias set fraud champion 1 \
 && podium alias set fraud challenger 2 \
 && podium models register mlp /tmp/demo/mlp/v1.onnx \
 && podium alias set mlp champion 1 \
 && podium models list
ENV PODIUM_CONFIG=/etc/podium/demo-endpoints.toml \
    PODIUM_TABLE_DIR=/var/lib/podium/tables \
    PODIUM_TABLE_ROLL_SECS=10

# `docker build .` without --target builds the server image, not the demo.
FROM runtime
