"""The ``recsys benchmark`` run: split files in, PROTOCOL.md outputs and a results table out.

``run_benchmark`` reads a train/test pair in the benchmark's file format (or a generic CSV),
preprocesses it into a ``Processed`` whose split reproduces the files exactly (no cleaning, test
rows predefined), optionally tunes each model on the *validation* files, fits every model on
train, scores it with ``recsys.evaluation`` under one of the three protocols of
``../shared/benchmarks/PROTOCOL.md``, and writes::

    OUT/<model>/recommendations.csv   # topk: user_id,item_id,rank,score (top 50, original ids)
    OUT/<model>/scores.csv            # loo:  user_id,item_id,score (held-out item + negatives)
    OUT/<model>/predictions.csv       # rating: user_id,item_id,prediction (one per test row)
    OUT/<model>/metrics.json          # metrics, CIs, train facts, chosen params, timings
    OUT/<model>/model/                # --save-models only (Recommender.save)
    OUT/results.json, OUT/results.md  # every model, the split's checksums, hardware, versions

With several folds (``rating`` cross-validation over MovieLens' u1..u5) each fold's files go to
``OUT/<model>/<fold>/`` and the model's metrics are the mean (and std) over folds.

Leakage rules: a model is fitted on a copy of the data whose interactions and ``split.test``
hold no test row (the vocabulary still lists every id, as the catalogue does), and tuning sees
only the validation files. Files are written through ``recsys.data.io``; the output directory is
built beside ``OUT`` and swapped in only when every model finished.

Tuning hook: a model class may define ``tune(request)`` (a classmethod taking a
``recsys.models.tuning.TuningRequest``) returning the constructor fields it chose; see
``Tunable``. EASE is tuned with
``tune_ease_lambda`` over ``EASE_L2_GRID``.

Every fold is fitted and scored by ``recsys.evaluation.harness.run_trial``, the path the
pipeline's train and evaluate stages share. Modules: ``config`` (options and constants),
``splits`` (reading the files), ``tuning`` (validation-only tuning), ``report`` (outcomes,
``results.json`` / ``results.md``), ``run`` (``run_benchmark``). This package re-exports what
callers use: the options, the output file names, the outcomes, the split readers and the steps
of a run; the protocol's constants (``TOPK_KS``, ``EASE_L2_GRID``, ``OUTPUT_FILES``, ...) stay
in ``recsys.benchmark.config``.
"""

from recsys.benchmark.config import (
    METRICS_FILE,
    RESULTS_JSON,
    RESULTS_MD,
    BenchmarkConfig,
    FileFormat,
    Log,
    SplitFiles,
    check_config,
    load_data_csv,
    load_model_params,
    parse_names,
    split_files,
)
from recsys.benchmark.report import (
    BenchmarkReport,
    FoldOutcome,
    ModelOutcome,
    library_versions,
)
from recsys.benchmark.run import (
    evaluate_split,
    output_frame,
    resolve_models,
    run_benchmark,
    run_model,
    score_options,
)
from recsys.benchmark.splits import (
    SplitData,
    detect_format,
    load_split,
    read_interactions,
    read_side_tables,
    read_split_file,
)
from recsys.benchmark.tuning import (
    EvaluateFn,
    Tunable,
    Tuning,
    tune_model,
    validation_evaluator,
)
from recsys.evaluation.harness import ProtocolName
from recsys.evaluation.results import Evaluation

__all__ = [
    "METRICS_FILE",
    "RESULTS_JSON",
    "RESULTS_MD",
    "BenchmarkConfig",
    "BenchmarkReport",
    "EvaluateFn",
    "Evaluation",
    "FileFormat",
    "FoldOutcome",
    "Log",
    "ModelOutcome",
    "ProtocolName",
    "SplitData",
    "SplitFiles",
    "Tunable",
    "Tuning",
    "check_config",
    "detect_format",
    "evaluate_split",
    "library_versions",
    "load_data_csv",
    "load_model_params",
    "load_split",
    "output_frame",
    "parse_names",
    "read_interactions",
    "read_side_tables",
    "read_split_file",
    "resolve_models",
    "run_benchmark",
    "run_model",
    "score_options",
    "split_files",
    "tune_model",
    "validation_evaluator",
]
