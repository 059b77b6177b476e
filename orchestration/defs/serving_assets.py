"""The bento built from the champion, and its infra validation (a blocking check).

``recommender_bento`` runs ``recsys bento build`` (champion = ranking model, the two-tower
model of the same split = retriever, the processed catalogue); ``check_bento_deployable``
(checks.py) runs ``recsys bento validate``, which serves it on 127.0.0.1 and only then marks it
deployable in the registry. Both are skipped when the champion and retriever are unchanged
and that bento was already validated.
"""

from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.defs.promotion_assets import REGISTRY_DIR, STORE_PREFIX, _stored
from orchestration.defs.resources import DvcProject

BENTO_DIR = Path("reports") / "bento"
HANDOFF_FILE = "latest.json"
RETRIEVER_FAMILY = "twotower"


def retriever_tag(champion_tag: str) -> str:
    """The two-tower model for the champion: itself, or the newest one saved on its split."""
    from recsys.serving import store

    if champion_tag.startswith(f"{STORE_PREFIX}{RETRIEVER_FAMILY}:"):
        return champion_tag
    split = store.get_model(champion_tag).info.metadata.get(store.SPLIT_KEY)
    same_split = [
        m for m in _stored(f"{STORE_PREFIX}{RETRIEVER_FAMILY}")
        if m.info.metadata.get(store.SPLIT_KEY) == split
    ]  # fmt: skip
    if not same_split:
        raise dg.Failure(
            f"no '{RETRIEVER_FAMILY}' model saved on the champion's split: the bento needs one "
            f"for retrieval; keep '{RETRIEVER_FAMILY}' among the candidates in params.yaml"
        )
    return str(max(same_split, key=lambda m: m.info.creation_time).tag)


def read_bento_handoff(dvc: DvcProject) -> dict[str, Any]:
    from recsys.data import io

    path = dvc.path / BENTO_DIR / HANDOFF_FILE
    data: dict[str, Any] = io.read_json(path) if path.is_file() else {}
    return data


@dg.asset(group_name="serving", kinds={"bentoml"}, deps=["champion_model"])
def recommender_bento(context: dg.AssetExecutionContext, dvc: DvcProject) -> dg.MaterializeResult:
    """The BentoML bento serving the champion (two-stage: two-tower ANN retrieval, champion
    re-ranking), with the preprocessing vocabularies inside; built by ``recsys bento build``."""
    from recsys.data import io
    from recsys.serving import store

    champion = store.Registry(dvc.path / REGISTRY_DIR).champion()
    if champion is None:
        raise dg.Failure("there is no champion to package yet")
    retriever = retriever_tag(champion.tag)
    previous = read_bento_handoff(dvc)
    unchanged = (previous.get("champion"), previous.get("retriever")) == (champion.tag, retriever)
    if unchanged and _bento_exists(previous.get("bento", "")):
        tag, output = previous["bento"], "champion and retriever unchanged: bento reused"
    else:
        result = dvc.run(
            [
                "recsys", "bento", "build", "--champion", champion.tag, "--retriever", retriever,
                "--processed", "data/processed", "--registry", str(REGISTRY_DIR),
            ]
        )  # fmt: skip
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0:
            raise dg.Failure(f"recsys bento build failed:\n{output[-4000:]}")
        built = [ln for ln in result.stdout.splitlines() if ln.startswith("built bento ")]
        tag = built[-1].split()[2]
    context.log.info(output)
    handoff = {"champion": champion.tag, "retriever": retriever, "bento": tag}
    if unchanged and previous.get("bento") == tag:
        handoff["validated"] = previous.get("validated", False)
    io.write_json(handoff, dvc.path / BENTO_DIR / HANDOFF_FILE)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(tag),
        metadata={"bento": tag, "champion": champion.tag, "retriever": retriever},
    )


def _bento_exists(tag: str) -> bool:
    """The bento ``name:version`` is in the local bento store ($BENTOML_HOME/bentos)."""
    from recsys.serving import store

    name, _, version = tag.partition(":")
    return bool(name and version) and (store.bentoml_home() / "bentos" / name / version).is_dir()
