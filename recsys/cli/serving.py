"""``recsys bento build``, ``bento validate``, ``bento containerize`` and ``serve``: package,
check, containerize and run the service."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recsys.cli.common import (
    Commands,
    add_command,
    add_group,
    add_params_option,
    add_registry_option,
    params_from,
)


def add_parsers(commands: Commands) -> None:
    """Add ``recsys bento`` (build, validate) and ``recsys serve``."""
    bento_commands = add_group(commands, "bento", "build and validate the serving bento")
    build = add_command(bento_commands, "build", cmd_bento_build, raw=True)
    build.add_argument(
        "--champion", metavar="TAG", help="two-stage model (default: the registry's champion)"
    )
    source = build.add_mutually_exclusive_group(required=True)
    source.add_argument("--catalogue", metavar="TAG", help="stored item catalogue")
    source.add_argument("--processed", type=Path, metavar="DIR", help="store it from here")
    add_registry_option(build)
    add_params_option(build)
    build.add_argument("--version", help="bento version (default: generated)")
    build.add_argument(
        "--out", type=Path, metavar="FILE", help="also write the result (tags, lineage) as JSON"
    )
    build.add_argument(
        "--reuse",
        action="store_true",
        help="keep the bento of --out when it packaged the same champion and still exists",
    )

    validate = add_command(bento_commands, "validate", cmd_bento_validate)
    validate.add_argument("tag", metavar="TAG", help="bento tag, e.g. recsys:abc123")
    add_registry_option(validate)
    validate.add_argument("--timeout", type=float, default=180.0, help="seconds to get ready")

    image = add_command(bento_commands, "containerize", cmd_bento_containerize)
    image.add_argument(
        "--bento", metavar="TAG", help="this bento (default: the registry's deployable bento)"
    )
    add_registry_option(image)
    add_params_option(image)
    image.add_argument(
        "--out", type=Path, metavar="FILE", help="also write the result (images, labels) as JSON"
    )

    serve = add_command(commands, "serve", cmd_serve)
    add_registry_option(serve)
    serve.add_argument("--bento", metavar="TAG", help="serve this bento instead")
    serve.add_argument(
        "--host", help="address to listen on (default: BentoML's api_server.http.host, 0.0.0.0)"
    )
    serve.add_argument(
        "--port", type=int, help="port (default: BentoML's api_server.http.port, 3000)"
    )


def cmd_bento_build(args: argparse.Namespace) -> int:
    """bentoml build around the champion and the two-tower retriever

    Build a bento of the recommendation service (`bentoml build` over bentofile.yaml; no
    Docker needed) around two models of the BentoML store ($BENTOML_HOME): the champion, a
    gated two-stage model (default: the registry's champion; retrieval, index settings, M and
    ranker are inside it, as the gate measured them), and the item catalogue (--catalogue TAG,
    or --processed DIR to store it from processed data). The tags, the service settings
    (`serving:` in the parameter file) and the champion's lineage (data version, params hash,
    gate decision) are baked into the bento as bento arguments. Prints the bento tag.

    Exit status: 0 built; 2 bad input (unknown tag, no champion, build failed).
    """
    from recsys.data import io
    from recsys.serving import package

    previous = None
    if args.reuse and args.out is not None and args.out.is_file():
        previous = package.BentoResult.read(args.out)
    result = package.build_champion_bento(
        registry=args.registry,
        serving=params_from(args.params).serving,
        champion=args.champion,
        catalogue=args.catalogue,
        processed=args.processed,
        version=args.version,
        previous=previous,
    )
    if args.out is not None:
        io.write_json(result.to_dict(), args.out)
    verb = "reused" if result.reused else "built"
    print(f"{verb} bento {result.bento} (champion {result.champion})")
    return 0


def cmd_bento_validate(args: argparse.Namespace) -> int:
    """serve a bento on 127.0.0.1, probe it, stop it; mark it deployable if it passed

    Infra validation: `bentoml serve TAG` on 127.0.0.1 and a free port, wait for /readyz, send
    one sample request per endpoint (and a bad one per error kind), check /metrics, stop the
    server. The report goes to REGISTRY/bentos/; a passing bento becomes
    REGISTRY/deployable.json. Exit status: 0 deployable, 1 not, 2 bad input.
    """
    from recsys.serving import package

    report = package.validate_bento(args.tag, registry=args.registry, timeout_s=args.timeout)
    print(report.summary())
    if not report.deployable:
        print(report.log_tail, file=sys.stderr)
    return 0 if report.deployable else 1


def cmd_bento_containerize(args: argparse.Namespace) -> int:
    """build an OCI image of the deployable bento (buildah; no Docker daemon, no registry)

    `bentoml containerize --backend buildah` of the bento that REGISTRY/deployable.json names
    (--bento TAG: that bento), on the base image of bentofile.yaml's docker.base_image,
    bootstrapped from Debian packages (debootstrap; --params: container.base) the first
    time and whenever its package list changes. The image is localhost/recsys:<bento
    version>, labelled with the bento's lineage and the git revision; a rebuild with
    unchanged inputs reuses the cached layers. Run it with `buildah run` or podman; push it
    to a team's registry with `buildah push IMAGE docker://REGISTRY/recsys:<version>`
    (docs/serving.md). Needs root, buildah and debootstrap. Exit status: 0 built, 2 nothing
    to containerize or the machine cannot build.
    """
    import json

    from recsys.errors import ConfigError
    from recsys.serving import container, serve
    from recsys.serving.store import Registry

    tag = args.bento or serve.deployable_bento(Registry(args.registry))
    why = container.unavailable()
    if why is not None:
        raise ConfigError(f"this machine cannot build container images: {why}")
    base_config = params_from(args.params).container.base
    base, image = container.containerize_bento(
        tag, base=container.BaseImage.from_config(base_config)
    )
    verb = "reused" if base.reused else f"bootstrapped in {base.seconds:.0f} s"
    print(f"base image {base.name} ({base.size_bytes / 1e6:.0f} MB, {verb})")
    print(f"built {image.name} ({image.size_bytes / 1e9:.2f} GB) in {image.seconds:.0f} s")
    if args.out:
        from recsys.data import io

        result = {"bento": tag, "base": base.to_dict(), "image": image.to_dict()}
        io.write_text(json.dumps(result, indent=2) + "\n", args.out)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """serve the champion's deployable bento (bentoml serve)

    `bentoml serve` the bento that REGISTRY/deployable.json names (the last one `recsys bento
    validate` passed), after checking it was built around the registry's champion; --bento TAG
    serves that bento instead. The command becomes the server process (Ctrl-C or SIGTERM stops
    it). Exit status: the server's; 2 when there is no champion or no deployable bento for it.
    """
    from recsys.serving import serve
    from recsys.serving.store import Registry

    tag = args.bento or serve.deployable_bento(Registry(args.registry))
    serve.bento_champion(tag)  # fails with a fix when the bento is not in the store
    cmd = serve.serve_command(tag, host=args.host, port=args.port)
    print(f"serving {tag}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    serve.exec_serve(cmd)
