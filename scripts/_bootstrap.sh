# Sourced by scripts/run and scripts/test, which then call `kioku_bootstrap [uv sync options]`:
# make sure uv exists and the virtualenv matches uv.lock. A function, not top-level code, because a
# file sourced without arguments sees its caller's "$@" (the test command's pytest arguments).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

kioku_bootstrap() {
  if ! command -v uv >/dev/null 2>&1; then
    export PATH="$HOME/.local/bin:$PATH"
  fi
  if ! command -v uv >/dev/null 2>&1; then
    echo "uv not found: installing it from PyPI…" >&2
    python3 -m pip install --user --quiet uv 2>/dev/null || python3 -m pip install --quiet uv
    hash -r
  fi
  export UV_LINK_MODE="${UV_LINK_MODE:-copy}"
  uv sync --frozen "$@"
}
