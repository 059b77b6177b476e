#!/usr/bin/env bash
# RecBole 1.2.1 reference timings (NeuMF, LightGCN, BPR) on ml100k-u1, measured on THIS machine.
#
#   bench/recbole_reference.sh            # full: RecBole defaults, early stopping (minutes)
#   bench/recbole_reference.sh --quick    # at most 2 epochs per model: checks that it works
#   bench/recbole_reference.sh --models neumf,lightgcn [--epochs N] [--out DIR]
#   bench/recbole_reference.sh --models neumf,lightgcn --refit-epochs neumf=30,lightgcn=145
#       (refit only, for the epochs an earlier full run chose on validation: timing runs)
#
# 1. builds .venv-recbole/ (git-ignored; the project's .venv is not touched) with the pins below;
#    rebuilt when the pins change;
# 2. trains with .venv-recbole (bench/recbole_reference.py train): tune the epoch count on
#    val_train/val_test, refit on train, export each model's top 50 to recommendations.csv;
# 3. scores the lists with the project's own metric code (.venv, recsys.evaluation) and writes
#    OUT/results.json (default OUT: reports/benchmarks/recbole/, or .../recbole-quick/).
# Runs under `nice -n 10` (NICE=0 to change); records `uptime` before and after: timings taken
# under load are inflated, compare only ratios measured side by side.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-recbole"
PYTHON="${PYTHON:-python3.11}"
NICE="${NICE:-10}"
TORCH_WHEEL="${TORCH_WHEEL:-/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl}"

# RecBole 1.2.1's requirements, pinned. Why these versions:
# - numpy 1.26.4: RecBole's Config.compatibility_settings() runs on every Config and assigns
#   np.float = np.float_ (and np.complex_, np.unicode_), all removed in numpy 2: numpy<2 is a must.
# - scipy 1.11.4: LightGCN (and NGCF, ...) build their adjacency with dok_matrix._update, which
#   scipy 1.12 removed (AttributeError: 'dok_matrix' object has no attribute '_update').
# - pandas 2.2.3 / scikit-learn 1.5.2: releases built for numpy 1.26 (pandas 2.2.3 only warns
#   about RecBole's chained fillna(inplace=True)).
# - colorlog 4.7.2 / colorama 0.4.4: RecBole pins these exactly.
# - ray (RecBole wants ray<=2.6.3) and hyperopt are NOT installed: only recbole.quick_start and
#   hyper-parameter search import them; bench/recbole_reference.py does not. recbole is therefore
#   installed with --no-deps and its other requirements are listed here.
# - torch 2.13.0+cpu from the local wheel (REFERENCE.md: "RecBole 1.2.1 (PyTorch 2.13 CPU)").
PINS=(
  "recbole==1.2.1"
  "numpy==1.26.4"
  "scipy==1.11.4"
  "pandas==2.2.3"
  "scikit-learn==1.5.2"
  "colorlog==4.7.2"
  "colorama==0.4.4"
  "tqdm==4.70.1"
  "PyYAML==6.0.4"
  "tensorboard==2.21.0"
  "thop==0.1.1.post2209072238"
  "tabulate==0.10.0"
  "plotly==7.1.0"
  "texttable==1.7.2"
  "psutil==7.2.2"
)
STAMP="$VENV/.pins"
WANT="$(basename "$TORCH_WHEEL") ${PINS[*]}"

QUICK=0
OUT=""
ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1; ARGS+=("--quick"); shift ;;
    --out) OUT="$2"; shift 2 ;;
    --models|--epochs|--refit-epochs) ARGS+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$OUT" ]]; then
  OUT="$ROOT/reports/benchmarks/recbole"
  [[ $QUICK == 1 ]] && OUT="$ROOT/reports/benchmarks/recbole-quick"
fi

if [[ ! -x "$VENV/bin/python" || ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
  echo "== building $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "$TORCH_WHEEL"
  "$VENV/bin/pip" install --quiet --no-deps "${PINS[0]}"
  "$VENV/bin/pip" install --quiet "${PINS[@]:1}"
  "$VENV/bin/python" -c "import recbole, torch, numpy; print('recbole', recbole.__version__, 'torch', torch.__version__, 'numpy', numpy.__version__)"
  echo "$WANT" > "$STAMP"
fi

# libgomp's default spin-wait makes torch's 2 OpenMP threads crawl whenever another process holds
# a core (measured under load 6 on 2 cores: RecBole BPR 2.1 s/epoch active vs 0.24 s/epoch
# passive, 0.31 s/epoch with 1 thread). Passive waiting is the fair setting on a shared machine;
# set OMP_WAIT_POLICY=ACTIVE to measure the default.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

mkdir -p "$OUT"
"$VENV/bin/pip" freeze > "$OUT/pip-freeze.txt"
UPTIME_BEFORE="$(uptime)"
echo "== load before: $UPTIME_BEFORE"
nice -n "$NICE" "$VENV/bin/python" -u "$ROOT/bench/recbole_reference.py" train --out "$OUT" "${ARGS[@]}"
UPTIME_AFTER="$(uptime)"
echo "== load after: $UPTIME_AFTER"
cd "$ROOT"
nice -n "$NICE" "$ROOT/.venv/bin/python" bench/recbole_reference.py score --out "$OUT" \
  --uptime "before: $UPTIME_BEFORE | after: $UPTIME_AFTER"
echo "== wrote $OUT/results.json"
