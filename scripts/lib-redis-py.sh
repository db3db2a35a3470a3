# redis-py 8 (the latest 8.x from PyPI) in target/readme-venv, installed once and shared by
# the scripts that drive the module from Python. Source after scripts/lib.sh; sets VENV.
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
