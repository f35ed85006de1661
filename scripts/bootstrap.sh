# Shared set-up for scripts/up and scripts/test (sourced, not run).
# Creates .venv with patchwarden installed; installs missing Debian packages when asked.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

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

ensure_venv() {
  local py extras="${1:-}"
  py="$(pick_python)"
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$py" -c 'import ensurepip, venv' 2>/dev/null; then
      local ver; ver="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
      apt_ensure /nonexistent-venv-probe "python${ver}-venv"
    fi
    log "creating virtualenv $VENV"
    "$py" -m venv "$VENV"
  fi
  local stamp="$VENV/.installed${extras:+-$extras}"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    log "installing patchwarden${extras:+[$extras]} into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    "$VENV/bin/python" -m pip install -q -e "$ROOT${extras:+[$extras]}"
    # setuptools leaves its build metadata (a copy of the README) in src/; the editable
    # install does not use it, and src/ should hold only the package.
    rm -rf "$ROOT"/src/*.egg-info
    touch "$stamp"
  fi
}
