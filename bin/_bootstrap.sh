# Sourced by bin/pipeline and bin/test: create or reuse the virtualenv idempotently, configure
# DVC's local default remote, and switch telemetry off. Needs only Python 3.11 on the machine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RECSYS_VENV:-$ROOT/.venv}"
EXTRAS="${1:-}"

export GX_ANALYTICS_ENABLED=False DVC_NO_ANALYTICS=1 BENTOML_DO_NOT_TRACK=True \
    DAGSTER_DISABLE_TELEMETRY=1 TF_CPP_MIN_LOG_LEVEL=2 PYTHONDONTWRITEBYTECODE=1

find_python() {
    for candidate in "${PYTHON:-}" python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "error: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    py="$(find_python)"
    echo "bootstrap: creating virtualenv $VENV with $py"
    "$py" -m venv "$VENV"
fi

# Reinstall only when the pins or the requested extras change.
want="$(cat "$ROOT/pyproject.toml" "$ROOT/requirements.lock" | sha256sum | cut -c1-16)-${EXTRAS:-base}"
stamp="$VENV/.recsys-installed"
if ! grep -qx -- "$want" "$stamp" 2>/dev/null; then
    echo "bootstrap: installing pinned dependencies into $VENV (first run takes a few minutes)"
    spec="$ROOT"
    [ -n "$EXTRAS" ] && spec="$ROOT[$EXTRAS]"
    "$VENV/bin/python" -m pip install -qq --disable-pip-version-check \
        -c "$ROOT/requirements.lock" -e "$spec"
    echo "$want" >>"$stamp"
fi
export PATH="$VENV/bin:$PATH"

# DVC: a local default remote so `dvc push` / `dvc pull` work offline. Kept in .dvc/config.local
# (not committed): the location is per machine, override with RECSYS_DVC_REMOTE.
cd "$ROOT"
if [ -d .git ] || git rev-parse --git-dir >/dev/null 2>&1; then
    remote="${RECSYS_DVC_REMOTE:-${XDG_DATA_HOME:-$HOME/.local/share}/recsys/dvc-remote}"
    mkdir -p "$remote"
    dvc remote add --local --default --force local "$remote" >/dev/null
fi
