"""The bento built from the champion (a two-stage model: what the gate measured), and its
infra validation (a blocking check in checks.py, ``recsys bento validate``).

``recommender_bento`` runs ``recsys bento build --reuse``: the champion from the registry, the
processed catalogue, the ``serving:`` settings and the champion's lineage; an earlier bento of
the same champion is kept (``recsys.serving.package.build_champion_bento``). The build result
comes back as JSON (``BentoResult``). ``bento_image`` then builds the bento's OCI image
(``recsys bento containerize``) when params.yaml's ``container.enabled`` is true.
"""

from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.defs.promotion_assets import NIGHTLY_FRESHNESS, REGISTRY_DIR
from orchestration.defs.resources import OWNERS, DvcProject
from recsys.data import io
from recsys.serving import deploy
from recsys.serving.package import BentoResult

BENTO_DIR = Path("reports") / "bento"
BUILD_FILE = BENTO_DIR / "build.json"
BENTO_CODE = (
    "recsys/cli",
    "recsys/config*.py",
    "recsys/serving",
    "bentofile.yaml",
    "requirements-serving.txt",
)
"""The code ``recsys bento build`` runs and packages (``recommender_bento`` is no DVC stage)."""
HANDOFF_FILE = "latest.json"
"""``{"bento", "champion", "validated"}``: what the deployability check read and marked."""


def read_bento_handoff(dvc: DvcProject) -> dict[str, Any]:
    path = dvc.path / BENTO_DIR / HANDOFF_FILE
    data: dict[str, Any] = io.read_json(path) if path.is_file() else {}
    return data


@dg.asset(
    group_name="serving",
    kinds={"bentoml"},
    deps=["champion_model"],
    owners=OWNERS,
    freshness_policy=NIGHTLY_FRESHNESS,
)
def recommender_bento(context: dg.AssetExecutionContext, dvc: DvcProject) -> dg.MaterializeResult:
    """The BentoML bento serving the champion: the gated two-stage model (ANN retrieval, then
    the ranker) with its vocabularies and lineage inside; built by ``recsys bento build``."""
    result = dvc.run(
        [
            "recsys", "bento", "build", "--params", dvc.params_file, "--processed",
            "data/processed", "--registry", str(REGISTRY_DIR), "--out", str(BUILD_FILE), "--reuse",
        ]
    )  # fmt: skip
    context.log.info((result.stdout + result.stderr).strip()[-4000:])
    if result.returncode != 0:
        raise dg.Failure(f"recsys bento build failed:\n{result.stderr[-4000:]}")
    build = BentoResult.read(dvc.path / BUILD_FILE)
    previous = read_bento_handoff(dvc)
    validated = bool(previous.get("validated")) and previous.get("bento") == build.bento
    handoff = {"bento": build.bento, "champion": build.champion, "validated": validated}
    io.write_json(handoff, dvc.path / BENTO_DIR / HANDOFF_FILE)
    return dg.MaterializeResult(
        data_version=dg.DataVersion(build.bento),
        metadata={
            "bento": build.bento,
            "champion": build.champion,
            "reused": build.reused,
            "lineage": dg.MetadataValue.json(build.lineage),
        },
    )


IMAGE_FILE = BENTO_DIR / "image.json"
"""``recsys bento containerize --out``: the base and bento images (names, ids, sizes, seconds,
labels)."""


@dg.asset(
    group_name="serving",
    kinds={"bentoml", "docker"},
    deps=["recommender_bento"],
    owners=OWNERS,
)
def bento_image(context: dg.AssetExecutionContext, dvc: DvcProject) -> dg.MaterializeResult:
    """The OCI image of the champion's bento (``recsys bento containerize``: buildah on a
    Debian base bootstrapped with debootstrap), labelled with the bento's lineage; then its
    Kubernetes manifests, measured from the running image (``recsys bento manifests``), and,
    when ``container.registry`` is set, the push to that registry. Opt-in:
    built only with ``container.enabled: true`` in params.yaml (it needs root, buildah and
    debootstrap); otherwise the materialization records that nothing was built and why."""
    if not dvc.params().container.enabled:
        reason = "container.enabled is false in params.yaml: set it to true to build the image"
        context.log.info(reason)
        return dg.MaterializeResult(metadata={"built": False, "reason": reason})
    bento = read_bento_handoff(dvc).get("bento")
    if not bento:
        raise dg.Failure("no bento to containerize: materialize recommender_bento first")
    common = ["--bento", str(bento), "--params", dvc.params_file, "--registry", str(REGISTRY_DIR)]
    steps = [["containerize", *common, "--out", str(IMAGE_FILE)], ["manifests", *common]]
    if dvc.params().container.registry:
        steps.append(["push", *common])
    for step in steps:
        result = dvc.run(["recsys", "bento", *step])
        context.log.info((result.stdout + result.stderr).strip()[-4000:])
        if result.returncode != 0:
            raise dg.Failure(f"recsys bento {step[0]} failed:\n{result.stderr[-4000:]}")
    built = io.read_json(dvc.path / IMAGE_FILE)
    image, base = built["image"], built["base"]
    manifests = deploy.manifests_path(REGISTRY_DIR, str(bento))
    return dg.MaterializeResult(
        data_version=dg.DataVersion(image["image_id"]),
        metadata={
            "built": True,
            "image": image["name"],
            "image_id": image["image_id"],
            "size_mb": round(image["size_bytes"] / 1e6, 1),
            "build_seconds": image["seconds"],
            "base_image": base["name"],
            "base_reused": base["reused"],
            "labels": dg.MetadataValue.json(image["labels"]),
            "kubernetes_manifests": dg.MetadataValue.path(str(manifests)),
            "pushed_to": dvc.params().container.registry or "(no registry configured)",
        },
    )
