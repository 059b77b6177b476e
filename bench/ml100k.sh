#!/usr/bin/env bash
# Quality and cost benchmark on the shared MovieLens 100K splits (PROTOCOL.md), every model side
# by side in one run per protocol. Results go to reports/benchmarks/ (git-ignored: they hold
# recommendations derived from MovieLens); the tables are copied into docs/benchmarks.md by hand.
#
#   bench/ml100k.sh [topk|loo|rating|playcount|all]     (SHARED=../shared by default)
#   bench/ml100k.sh tune      recsys tune on ml100k-u1's and ml100k-loo's validation files
#                             (TRIALS=20, TIMEOUT=240 s per model), reports/tuning/ml100k-*
#   PARAMS_TOPK=bench/ml100k-u1-tuned.yaml bench/ml100k.sh topk   the settings tune chose
#   NO_TUNE=1 PARAMS_TOPK=bench/ml100k-u1-tuned.yaml bench/ml100k.sh topk   those settings as
#                             they are: no validation files read, one fit per model
#   MODELS_TOPK=" " bench/ml100k.sh topk   every registered model (rating models are skipped)
#   JOBS=1 bench/ml100k.sh ...   models one after the other in one process (default:
#                             recsys benchmark --jobs auto, one worker process per core)
#
# playcount: ml100k-u1 rewritten as a play-count log (bench/playcount_from_ml100k.py: ratings
# read as 1..5 plays, no timestamps, no side tables): models that need item content or explicit
# ratings are skipped with the reason in results.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SHARED="${SHARED:-../shared}"
S="$SHARED/benchmarks/splits"
ML="$SHARED/datasets/ml-100k"
OUT="${OUT:-reports/benchmarks}"
P=bench/ml100k
what="${1:-all}"
export PATH="$PWD/.venv/bin:$PATH" TF_CPP_MIN_LOG_LEVEL=2

if [ "$what" = tune ]; then
    # Starts from the hand-chosen files; trial 0 of every study replays them, so a chosen
    # setting is never below them on validation. The test files are never read.
    TUNE=(--trials "${TRIALS:-20}" --timeout "${TIMEOUT:-240}" --items "$ML/u.item" --users "$ML/u.user")
    recsys tune --protocol topk --params "$P-u1.yaml" "${TUNE[@]}" \
        --val-train "$S/ml100k-u1/val_train.tsv" --val-test "$S/ml100k-u1/val_test.tsv" \
        --models "${MODELS_TOPK:-itemknn,ease,als,bpr,multdae,neumf,twotower,content,hybrid}" \
        --out reports/tuning/ml100k-u1
    recsys tune --protocol loo --params "$P-loo.yaml" "${TUNE[@]}" \
        --val-train "$S/ml100k-loo/val_train.tsv" --val-test "$S/ml100k-loo/val_test.tsv" \
        --val-negatives "$S/ml100k-loo/val_negatives.tsv" \
        --models "${MODELS_LOO:-itemknn,ease,als,bpr,multdae,neumf,twotower}" \
        --out reports/tuning/ml100k-loo
fi
JOBS_ARG=(--jobs "${JOBS:-auto}")
VAL_U1=(--val-train "$S/ml100k-u1/val_train.tsv" --val-test "$S/ml100k-u1/val_test.tsv")
[ -z "${NO_TUNE:-}" ] || VAL_U1=()
if [ "$what" = topk ] || [ "$what" = all ]; then
    recsys benchmark --protocol topk --params "${PARAMS_TOPK:-$P-u1.yaml}" "${JOBS_ARG[@]}" \
        --train "$S/ml100k-u1/train.tsv" --test "$S/ml100k-u1/test.tsv" ${VAL_U1[@]+"${VAL_U1[@]}"} \
        --items "$ML/u.item" --users "$ML/u.user" \
        --models "${MODELS_TOPK:-mostpop,itemknn,ease,als,bpr,neumf,content,hybrid,twotower,multdae,ensemble}" \
        --out "$OUT/ml100k-u1-topk"
fi
if [ "$what" = loo ] || [ "$what" = all ]; then
    recsys benchmark --protocol loo --params "${PARAMS_LOO:-$P-loo.yaml}" "${JOBS_ARG[@]}" \
        --train "$S/ml100k-loo/train.tsv" --test "$S/ml100k-loo/test.tsv" \
        --negatives "$S/ml100k-loo/negatives.tsv" \
        --val-train "$S/ml100k-loo/val_train.tsv" --val-test "$S/ml100k-loo/val_test.tsv" \
        --val-negatives "$S/ml100k-loo/val_negatives.tsv" \
        --items "$ML/u.item" --users "$ML/u.user" \
        --models "${MODELS_LOO:-mostpop,itemknn,ease,als,bpr,neumf,twotower,multdae,ensemble}" \
        --out "$OUT/ml100k-loo"
fi
if [ "$what" = playcount ] || [ "$what" = all ]; then
    PC="$OUT/ml100k-playcount-files"
    python bench/playcount_from_ml100k.py "$S/ml100k-u1" "$PC"
    recsys benchmark --protocol topk --params "${PARAMS_PLAYCOUNT:-$P-u1.yaml}" --format playcount \
        "${JOBS_ARG[@]}" \
        --train "$PC/train.tsv" --test "$PC/test.tsv" \
        --val-train "$PC/val_train.tsv" --val-test "$PC/val_test.tsv" \
        ${MODELS_PLAYCOUNT:+--models "$MODELS_PLAYCOUNT"} \
        --out "$OUT/ml100k-playcount"
fi
if [ "$what" = rating ] || [ "$what" = all ]; then
    recsys benchmark --protocol rating --params "$P-rating.yaml" "${JOBS_ARG[@]}" \
        --data-dir "$ML" --folds u1,u2,u3,u4,u5 \
        --models "${MODELS_RATING:-autorec}" \
        --out "$OUT/ml100k-rating-cv"
fi
