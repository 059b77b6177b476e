"""Data assets: the raw input, the validated canonical tables, the processed split.

``raw_interactions`` only fingerprints the input (files under ``data/raw`` and ``data.path``,
plus the ``data`` params); ``check_raw_interactions`` (checks.py) validates it and blocks the
run when it fails. ``prepared_interactions`` and ``processed_interactions`` run the DVC stages
``prepare`` and ``preprocess``.
"""

import dataclasses
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.defs.config import StageConfig
from orchestration.defs.resources import DVC_POOL, OWNERS, DvcProject, StageRun

RAW_DIR = Path("data") / "raw"
RAW_CODE = ("recsys/data/sources", "recsys/data/synthetic")
"""What gives the raw input its meaning (the readers, the synthetic generator): the code version
of ``raw_interactions``, which runs no DVC stage."""
PREPARE_STAGE, PREPROCESS_STAGE = "prepare", "preprocess"


def stage_metadata(run: StageRun) -> dict[str, Any]:
    """What every DVC-stage asset records about its ``dvc repro``."""
    return {
        "dvc stages": ", ".join(run.stages),
        "dvc skipped (unchanged)": ", ".join(run.skipped) or "none",
        "dvc seconds": run.seconds,
    }


def raw_input_paths(dvc: DvcProject) -> list[Path]:
    params = dvc.params()
    paths = [dvc.path / RAW_DIR]
    if params.data.path:
        extra = Path(params.data.path)
        extra = extra if extra.is_absolute() else dvc.path / extra
        if not extra.is_relative_to(dvc.path / RAW_DIR):
            paths.append(extra)
    return paths


@dg.asset(group_name="data", kinds={"dvc"}, owners=OWNERS)
def raw_interactions(dvc: DvcProject) -> dg.MaterializeResult:
    """The raw input named by ``data`` in params.yaml (the embedded synthetic generator, or
    files under data/raw). Its data version fingerprints the files and the ``data`` params."""
    params = dvc.params()
    paths = raw_input_paths(dvc)
    files = [f for p in paths for f in (p.rglob("*") if p.is_dir() else [p]) if f.is_file()]
    version = dvc.fingerprint(paths, {"data": dataclasses.asdict(params.data)})
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={
            "source": params.data.source,
            "path": str(params.data.path or RAW_DIR),
            "files": len(files),
            "bytes": sum(f.stat().st_size for f in files),
            "data version": version,
        },
    )


@dg.asset(
    group_name="data",
    kinds={"dvc", "parquet"},
    deps=[raw_interactions],
    pool=DVC_POOL,
    owners=OWNERS,
)
def prepared_interactions(
    context: dg.AssetExecutionContext, config: StageConfig, dvc: DvcProject
) -> dg.MaterializeResult:
    """Validated canonical tables (DVC stage ``prepare``): data/prepared."""
    run = dvc.repro(
        PREPARE_STAGE, force=config.force, set_params=config.set_params, log=context.log.info
    )
    meta = _read_json(dvc.path / "data" / "prepared" / "dataset.json")
    rows = meta.get("rows", {})
    return dg.MaterializeResult(
        data_version=dvc.data_version("prepare"),
        metadata={
            **stage_metadata(run),
            **{f"rows: {table}": int(n) for table, n in rows.items()},
            # Dagster's standard table metadata: shown as the asset's row count and columns.
            "dagster/row_count": int(rows.get("interactions", 0)),
            **_column_schema(dvc.path / "data" / "prepared" / "interactions.parquet"),
            "dataset": str(meta.get("name", "")),
            "feedback": str(meta.get("feedback", "")),
            "data version": dvc.data_version("prepare").value,
            "path": dg.MetadataValue.path(str(dvc.path / "data" / "prepared")),
        },
    )


@dg.asset(
    group_name="data",
    kinds={"dvc", "parquet"},
    deps=[prepared_interactions],
    pool=DVC_POOL,
    owners=OWNERS,
)
def processed_interactions(
    context: dg.AssetExecutionContext, config: StageConfig, dvc: DvcProject
) -> dg.MaterializeResult:
    """Cleaned interactions, id vocabularies, content features and the train/val/test split
    (DVC stage ``preprocess``): data/processed."""
    run = dvc.repro(
        PREPROCESS_STAGE, force=config.force, set_params=config.set_params, log=context.log.info
    )
    meta = _read_json(dvc.path / "data" / "processed" / "meta.json")
    info = meta.get("split", {}).get("info", {})
    stats = meta.get("stats", {})
    return dg.MaterializeResult(
        data_version=dvc.data_version("preprocess"),
        metadata={
            **stage_metadata(run),
            "rows: interactions": int(stats.get("n_interactions", 0)),
            "dagster/row_count": int(stats.get("n_interactions", 0)),
            "users": int(stats.get("n_users", 0)),
            "items": int(stats.get("n_items", 0)),
            "split method": str(meta.get("split", {}).get("method", "")),
            "rows: train": int(info.get("n_train", 0)),
            "rows: val": int(info.get("n_val", 0)),
            "rows: test": int(info.get("n_test", 0)),
            "data version": dvc.data_version("preprocess").value,
            "path": dg.MetadataValue.path(str(dvc.path / "data" / "processed")),
        },
    )


def _column_schema(parquet: Path) -> dict[str, dg.TableSchema]:
    """``dagster/column_schema`` of a Parquet table (names and Arrow types, from its footer)."""
    if not parquet.is_file():
        return {}
    import pyarrow.parquet as pq

    schema = pq.read_schema(parquet)
    columns = [dg.TableColumn(name=f.name, type=str(f.type)) for f in schema]
    return {"dagster/column_schema": dg.TableSchema(columns=columns)}


def _read_json(path: Path) -> dict[str, Any]:
    from recsys.data import io

    data: dict[str, Any] = io.read_json(path) if path.is_file() else {}
    return data
