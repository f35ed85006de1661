# Shared set-up for scripts/up, scripts/test and scripts/lock (sourced, not run).
# Creates a virtualenv with patchwarden installed from the lock file (uv.lock);
# installs missing Debian packages when asked.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
# uv resolves and installs from uv.lock. It is pinned here, installed into the
# virtualenv's .tools/ folder (outside site-packages, so a sync never removes it).
UV_VERSION="0.13.10"
# Bytecode is compiled at install time: imports stay fast even where
# PYTHONDONTWRITEBYTECODE is set (the CLI imported in 6 s instead of 1 s without it).
export UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1 UV_COMPILE_BYTECODE=1

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root (or sudo) to run: $*"; fi
}

# apt_ensure CMD-OR-PATH PACKAGE...: install PACKAGEs when CMD is not found.
APT_UPDATED=0
apt_ensure() {
  local probe="$1"; shift
  if command -v "$probe" >/dev/null 2>&1 || [ -e "$probe" ]; then return 0; fi
  command -v apt-get >/dev/null 2>&1 || die "$probe is missing and apt-get is not available; install: $*"
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || true
    APT_UPDATED=1
  fi
  log "installing $* (for $probe)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

pick_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  die "Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)"
}

# ensure_uv: the pinned uv in $VENV/.tools (creates $VENV when needed); sets UV.
ensure_uv() {
  local py
  if [ ! -x "$VENV/bin/python" ]; then
    py="$(pick_python)"
    if ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
      local ver; ver="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
      apt_ensure /nonexistent-venv-probe "python${ver}-venv"
    fi
    log "creating virtualenv $VENV"
    "$py" -m venv "$VENV"
  fi
  UV="$VENV/.tools/bin/uv"
  if [ ! -x "$UV" ] || [ "$("$UV" --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    log "installing uv $UV_VERSION into $VENV/.tools"
    rm -rf "$VENV/.tools"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
      --target "$VENV/.tools" "uv==$UV_VERSION"
  fi
}

# ensure_venv [EXTRA]: $VENV holds exactly the locked versions (plus EXTRA, e.g. dev).
ensure_venv() {
  local extras="${1:-}"
  ensure_uv
  log "installing patchwarden${extras:+[$extras]} into $VENV from uv.lock"
  UV_PROJECT_ENVIRONMENT="$VENV" "$UV" sync --quiet --locked --python "$VENV/bin/python" \
    --directory "$ROOT" ${extras:+--extra "$extras"}
  # setuptools leaves its build metadata (a copy of the README) in src/; the editable
  # install does not use it, and src/ should hold only the package.
  rm -rf "$ROOT"/src/*.egg-info
}

# ensure_latest_venv [EXTRA]: $VENV with the newest versions pyproject.toml allows,
# ignoring uv.lock (scripts/test --latest: upstream changes show up before a lock update).
ensure_latest_venv() {
  local extras="${1:-}"
  ensure_uv
  log "installing patchwarden${extras:+[$extras]} into $VENV with the newest allowed versions"
  "$UV" pip install --quiet --python "$VENV/bin/python" --upgrade --refresh \
    -e "$ROOT${extras:+[$extras]}"
  rm -rf "$ROOT"/src/*.egg-info
}
