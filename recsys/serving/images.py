"""The bento images in local storage and in a team's registry: the name a cluster pulls,
``buildah push`` to a registry (or an OCI archive), and pruning old local images."""

from __future__ import annotations

import json
from collections.abc import Sequence

from recsys.serving import container

APP = "recsys"
PUSH_TRANSPORTS = ("docker://", "oci:", "oci-archive:", "dir:", "docker-archive:")
"""Destinations ``push`` passes to ``buildah push`` as they are; anything else is a registry."""


def image_reference(image: str, registry: str = "") -> str:
    """Where a cluster pulls ``image`` from: ``REGISTRY/recsys:<version>``, or the local name
    when no registry is configured."""
    if not registry:
        return image
    _, _, version = image.rpartition(":")
    return f"{registry.rstrip('/')}/{APP}:{version}"


def push_destination(image: str, registry: str) -> str:
    """``buildah push``'s destination: a transport-qualified one (``oci-archive:/x.tar``,
    ``docker://host/repo:tag``) as it is, else ``docker://REGISTRY/recsys:<version>``."""
    if registry.startswith(PUSH_TRANSPORTS):
        return registry
    return f"docker://{image_reference(image, registry)}"


def push(image: str, registry: str, *, tls_verify: bool = True) -> str:
    """``buildah push IMAGE DESTINATION``; returns the destination."""
    if not registry:
        raise container.ContainerError(
            "no registry to push to",
            fix="pass --to REGISTRY (host[:port]/path) or set container.registry in params.yaml",
        )
    destination = push_destination(image, registry)
    cmd = ["buildah", "push", f"--tls-verify={str(tls_verify).lower()}", image, destination]
    container.tool(
        cmd,
        what=f"pushing {image} to {destination}",
        fix="log in first (`buildah login REGISTRY`); an http registry needs --insecure",
    )
    return destination


def prune_images(
    keep: int, protect: Sequence[str] = (), repository: str = container.IMAGE_REPOSITORY
) -> list[str]:
    """Remove the local images of ``repository`` (``localhost/recsys:*``) but ``protect``
    (the deployable bento's) and the ``keep`` newest others; returns the names removed.
    Layers that a kept image uses stay (buildah removes only what nothing references)."""
    out = container.tool(["buildah", "images", "--json"], what="buildah images", fix="")
    ours: list[tuple[float, str]] = []
    for row in json.loads(out):
        for name in row.get("names") or []:
            if name.startswith(f"{repository}:"):
                ours.append((float(row.get("created") or 0), name))
    ours.sort(reverse=True)
    others = [name for _, name in ours if name not in protect]
    removed = others[keep:]
    for name in removed:
        container.tool(
            ["buildah", "rmi", name],
            what=f"buildah rmi {name}",
            fix="a container still uses it: `buildah containers` lists them",
        )
    return removed
