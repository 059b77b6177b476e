# Sourced by bin/pipeline and bin/test, or by hand (`source bin/_bootstrap.sh [dev]`): create or
# reuse the virtualenv idempotently, configure DVC's local default remote, switch telemetry off,
# and put the virtualenv's bin/ first on PATH. Needs only Python 3.11 on the machine.
#
# Sourcing leaves the caller's shell as it was apart from the environment: the work runs strict
# (`set -euo pipefail`) in a subshell, so an interactive shell keeps its own options (a strict
# shell would close the terminal on the next failing command) and its working directory. What
# reaches the caller: PATH, the telemetry switches, ROOT and VENV; a failure returns non-zero
# (which stops bin/pipeline and bin/test, themselves strict).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${RECSYS_VENV:-$ROOT/.venv}"

export GX_ANALYTICS_ENABLED=False DVC_NO_ANALYTICS=1 BENTOML_DO_NOT_TRACK=True \
    DAGSTER_DISABLE_TELEMETRY=1 TF_CPP_MIN_LOG_LEVEL=2 PYTHONDONTWRITEBYTECODE=1

# Not `( ... ) || return`: bash ignores `set -e` inside a subshell that is tested by || or if.
(
    set -euo pipefail
    EXTRAS="${1:-}"

    find_python() {
        for candidate in "${PYTHON:-}" python3.11 python3; do
            [ -n "$candidate" ] || continue
            if command -v "$candidate" >/dev/null 2>&1 &&
                "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null
            then
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
        # Pins marked "# override" in the lock contradict a dependency's declared requirement:
        # the resolver's pass goes without them, then they replace what it chose (--no-deps).
        override_re='^[A-Za-z0-9][^ ]*==[^ ]* *# override'
        constraints="$(mktemp)"
        trap 'rm -f "$constraints"' EXIT
        grep -v -- "$override_re" "$ROOT/requirements.lock" >"$constraints"
        mapfile -t overrides < <(grep -- "$override_re" "$ROOT/requirements.lock" | cut -d' ' -f1)
        "$VENV/bin/python" -m pip install -qq --disable-pip-version-check \
            -c "$constraints" -e "$spec"
        if [ "${#overrides[@]}" -gt 0 ]; then
            # pip reports the contradicted requirement as an ERROR line on success: keep quiet
            # unless the install itself fails.
            log="$("$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
                "${overrides[@]}" 2>&1)" || { echo "$log" >&2; exit 1; }
        fi
        echo "$want" >>"$stamp"
    fi

    # DVC: a local default remote so `dvc push` / `dvc pull` work offline. Kept in
    # .dvc/config.local (not committed): the location is per machine, override with
    # RECSYS_DVC_REMOTE.
    cd "$ROOT"
    if [ -d .git ] || git rev-parse --git-dir >/dev/null 2>&1; then
        remote="${RECSYS_DVC_REMOTE:-${XDG_DATA_HOME:-$HOME/.local/share}/recsys/dvc-remote}"
        mkdir -p "$remote"
        "$VENV/bin/dvc" remote add --local --default --force local "$remote" >/dev/null
    fi
)
_recsys_status=$?
if [ "$_recsys_status" -ne 0 ]; then
    echo "bootstrap: failed (exit $_recsys_status); the shell's PATH is unchanged" >&2
    unset _recsys_status
    return 1
fi
unset _recsys_status
case ":$PATH:" in
*":$VENV/bin:"*) ;;
*) export PATH="$VENV/bin:$PATH" ;;
esac
