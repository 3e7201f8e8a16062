#!/usr/bin/env bash
# Builds the top-level Dockerfile, unchanged, and tests the image for real,
# offline: a private Docker daemon, local base images made from Debian
# packages (no image registry is reachable), the demo target run with
# --network=host on 127.0.0.1 ports, a real inference with tritonclient over
# REST and gRPC, the non-root user and the HEALTHCHECK, then SIGTERM during
# load (every accepted request answered, exit status 0, the last inference
# table file written). Fails, never skips, when Docker cannot run.
#
# What it sets up (root needed; all of it removed on exit):
# - Debian's docker.io and debootstrap, via apt when missing (the client at
#   /usr/bin/docker with DOCKER_BUILDKIT=1; a `docker` elsewhere on the PATH
#   may lack BuildKit);
# - a dockerd of its own: data, exec root and socket under a temporary folder
#   in /var/tmp, and --iptables=false --ip-forward=false --ip-masq=false
#   --bridge=none, so the host's firewall, forwarding and bridges stay as
#   they are (builds and containers then use --network=host);
# - debian:bookworm-slim from `debootstrap --variant=minbase`, and
#   rust:VERSION-slim-bookworm from it plus gcc, libc6-dev, pkg-config and
#   this machine's Rust toolchain (VERSION: the Dockerfile's RUST_VERSION),
#   with this machine's extra CA certificates (an intercepting HTTPS proxy)
#   so that cargo and pip inside the build reach their registries.
#
# Costs about 2.5–4 GB of disk while it runs, and refuses to start with less
# than 6 GB free; the release build of Podium inside the image is most of its
# time (see README, "Deploying").
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

say() { echo "test-container: $*" >&2; }
die() { say "FAILED: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (it starts its own dockerd); run it as root or in CI"

if [ ! -x /usr/bin/docker ] || [ ! -x /usr/sbin/dockerd ] || ! command -v debootstrap >/dev/null; then
  say "installing docker.io and debootstrap (apt)"
  # A fresh machine may have no package lists yet: update once and retry.
  install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      docker.io debootstrap >/dev/null
  }
  install || { apt-get update -q >/dev/null && install; } \
    || die "apt-get install docker.io debootstrap failed"
fi
py=.venv-test/bin/python
[ -x "$py" ] || die "no $py: run ./scripts/test.sh first (it makes the test virtualenv)"

# The daemon's data, the base images and the release build inside the image
# need room; a full disk otherwise surfaces minutes later as an apt or cargo
# "No space left on device" in the middle of the build log.
need_gb=6
free_gb=$(( $(df -Pk /var/tmp | awk 'NR==2 {print $4}') / 1024 / 1024 ))
[ "$free_gb" -ge "$need_gb" ] \
  || die "needs about $need_gb GB free under /var/tmp; $free_gb GB left. Free some disk (old cargo target directories are the usual culprit: cargo clean, or remove \$CARGO_TARGET_DIR) and run it again"

work="$(mktemp -d /var/tmp/podium-container.XXXXXX)"
sock="$work/docker.sock"
docker=(/usr/bin/docker -H "unix://$sock")
export DOCKER_BUILDKIT=1
container="podium-test-$$"
dockerd_pid=""

cleanup() {
  local rc=$?
  set +e
  if [ -n "$dockerd_pid" ]; then
    "${docker[@]}" rm -f "$container" >/dev/null 2>&1
    kill "$dockerd_pid" 2>/dev/null
    wait "$dockerd_pid" 2>/dev/null
    # Mounts a killed daemon may leave behind, deepest first.
    grep -o " $work/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m"; done
  fi
  if [ "$rc" != 0 ] && [ -f "$work/dockerd.log" ]; then
    say "dockerd log (last 30 lines):"; tail -n 30 "$work/dockerd.log" >&2
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

started=$SECONDS
say "starting dockerd (data in $work)"
/usr/sbin/dockerd --storage-driver=overlay2 \
  --iptables=false --ip-forward=false --ip-masq=false --bridge=none \
  --data-root="$work/data" --exec-root="$work/exec" --pidfile="$work/dockerd.pid" \
  -H "unix://$sock" >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 1 300); do
  "${docker[@]}" version >/dev/null 2>&1 && break
  kill -0 "$dockerd_pid" 2>/dev/null || die "dockerd exited at start (log below)"
  sleep 0.1
done
"${docker[@]}" version >/dev/null 2>&1 || die "dockerd did not answer on $sock within 30 s"

# --- local base images -------------------------------------------------------
if ! "${docker[@]}" image inspect debian:bookworm-slim >/dev/null 2>&1; then
  mirror="$(grep -rhoE 'https?://deb\.debian\.org/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null | head -n 1 || true)"
  mirror="${mirror:-http://deb.debian.org/debian}"
  say "debian:bookworm-slim from debootstrap ($mirror)"
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
  tar -C "$work/rootfs" -c . | "${docker[@]}" import - debian:bookworm-slim >/dev/null
  rm -rf "$work/rootfs"
fi

rust_version="$(sed -n 's/^ARG RUST_VERSION=//p' Dockerfile)"
[ -n "$rust_version" ] || die "no 'ARG RUST_VERSION=' in the Dockerfile"
builder="rust:$rust_version-slim-bookworm"
if ! "${docker[@]}" image inspect "$builder" >/dev/null 2>&1; then
  sysroot="$(rustc --print sysroot)"
  say "$builder from debian:bookworm-slim and this machine's toolchain ($(rustc --version))"
  mkdir -p "$work/builder/certs"
  cp /usr/local/share/ca-certificates/*.crt "$work/builder/certs/" 2>/dev/null || true
  cat >"$work/builder/Dockerfile" <<'EOF'
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates pkg-config \
 && rm -rf /var/lib/apt/lists/*
COPY certs/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY toolchain/ /usr/local/rust/
ENV CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/rust/bin:$PATH
EOF
  # One tar stream as the context: the Dockerfile and certificates, and the
  # toolchain under toolchain/ (without copying its ~1 GB first).
  tar -c -C "$work/builder" Dockerfile certs \
      -C "$sysroot" --exclude=./share/doc --transform='s,^\./,toolchain/,' . \
    | "${docker[@]}" build --network=host -q -t "$builder" - >/dev/null
fi
say "base images ready after $((SECONDS - started)) s"

# --- the project's Dockerfile, unchanged --------------------------------------
build_start=$SECONDS
say "docker build (the release build inside takes minutes)"
"${docker[@]}" build --network=host --progress=plain -t podium:test . >"$work/build.log" 2>&1 \
  || { tail -n 40 "$work/build.log" >&2; die "docker build of the Dockerfile failed"; }
"${docker[@]}" build --network=host --progress=plain --target demo -t podium:demo . >>"$work/build.log" 2>&1 \
  || { tail -n 40 "$work/build.log" >&2; die "docker build --target demo failed"; }
say "images built in $((SECONDS - build_start)) s: $("${docker[@]}" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' podium | tr '\n' ' ')"

# The server image (the default target) runs its entrypoint, the binary.
[ "$("${docker[@]}" run --rm --network=host podium:test --version)" = "podium $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)" ] \
  || die "podium --version in the image does not print the Cargo.toml version"

# --- run the demo -------------------------------------------------------------
read -r http_port grpc_port < <("$py" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
"${docker[@]}" run -d --name "$container" --network=host \
  -e PODIUM_LISTEN="127.0.0.1:$http_port" -e PODIUM_GRPC_LISTEN="127.0.0.1:$grpc_port" \
  -e PODIUM_INFERENCE_THREADS=1 podium:demo >/dev/null
say "demo container on 127.0.0.1:$http_port (REST) and :$grpc_port (gRPC)"

user="$("${docker[@]}" exec "$container" id -u)"
[ "$user" = 10001 ] || die "the server runs as uid $user, not the image's non-root user 10001"

health=""
for _ in $(seq 1 600); do
  health="$("${docker[@]}" inspect -f '{{.State.Health.Status}}' "$container")"
  [ "$health" = starting ] || break
  sleep 0.1
done
[ "$health" = healthy ] || die "HEALTHCHECK status is '$health', not healthy: $("${docker[@]}" inspect -f '{{json .State.Health}}' "$container")"
say "non-root (uid $user), HEALTHCHECK: $health"

DOCKER="${docker[*]}" "$py" tests/container/check_container.py "$http_port" "$grpc_port" "$container" \
  || { "${docker[@]}" logs --tail 30 "$container" >&2; die "the container check failed"; }

code="$("${docker[@]}" wait "$container")"
[ "$code" = 0 ] || { "${docker[@]}" logs --tail 30 "$container" >&2; die "podium exited with status $code after SIGTERM"; }
"${docker[@]}" cp "$container:/var/lib/podium/tables" "$work/tables"
files="$(find "$work/tables" -name '*.parquet' | wc -l)"
[ "$files" -gt 0 ] || die "no inference table file in /var/lib/podium/tables after the drain"
say "exit status 0 after SIGTERM; $files table file(s) written"
say "passed in $((SECONDS - started)) s"
