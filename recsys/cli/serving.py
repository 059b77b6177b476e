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

    manifests = add_command(bento_commands, "manifests", cmd_bento_manifests)
    add_image_options(manifests)
    manifests.add_argument("--clients", type=int, default=8, help="load while measuring")
    manifests.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    manifests.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="write here (default: REGISTRY/bentos/<name>/<version>.kubernetes.yaml)",
    )

    push = add_command(bento_commands, "push", cmd_bento_push)
    add_image_options(push)
    push.add_argument(
        "--to",
        metavar="DEST",
        help="registry host[:port]/path, or oci-archive:FILE (default: container.registry)",
    )
    push.add_argument(
        "--insecure", action="store_true", help="plain http / unverified TLS (a local registry)"
    )

    prune = add_command(bento_commands, "prune", cmd_bento_prune)
    prune.add_argument(
        "--keep", type=int, metavar="N", help="newest images kept (default: container.keep_images)"
    )
    add_registry_option(prune)
    add_params_option(prune)

    serve = add_command(commands, "serve", cmd_serve)
    add_registry_option(serve)
    serve.add_argument("--bento", metavar="TAG", help="serve this bento instead")
    serve.add_argument(
        "--host", help="address to listen on (default: BentoML's api_server.http.host, 0.0.0.0)"
    )
    serve.add_argument(
        "--port", type=int, help="port (default: BentoML's api_server.http.port, 3000)"
    )
    serve.add_argument(
        "--front",
        type=int,
        metavar="PORT",
        help="serve through HAProxy on PORT and switch to each new deployable bento without "
        "dropping a request (blue/green; needs Debian's haproxy)",
    )
    serve.add_argument(
        "--watch", type=float, default=10.0, metavar="S", help="--front: registry poll seconds"
    )


def add_image_options(parser: argparse.ArgumentParser) -> None:
    """--bento (whose image), --registry and --params: the commands on a built image."""
    parser.add_argument(
        "--bento", metavar="TAG", help="this bento's image (default: the deployable bento's)"
    )
    add_registry_option(parser)
    add_params_option(parser)


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
    unchanged inputs reuses the cached layers. Run it with `buildah run` or podman; `recsys
    bento push` sends it to a team's registry, `recsys bento manifests` writes its Kubernetes
    manifests (docs/operations.md). Needs root, buildah and debootstrap. Exit status: 0
    built, 2 nothing to containerize or the machine cannot build.
    """
    import json

    from recsys.serving import container, serve
    from recsys.serving.store import Registry

    tag = args.bento or serve.deployable_bento(Registry(args.registry))
    _require_buildah("build")
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


def _require_buildah(what: str) -> None:
    """A ``ConfigError`` naming why this machine cannot ``what`` container images."""
    from recsys.errors import ConfigError
    from recsys.serving import container

    why = container.unavailable()
    if why is not None:
        raise ConfigError(f"this machine cannot {what} container images: {why}")


def _built_image(args: argparse.Namespace) -> tuple[str, str, dict[str, str]]:
    """(bento tag, its local image name, the image's labels) of --bento or the deployable
    bento; a clear error when the image was not built."""
    from recsys.serving import container, serve
    from recsys.serving.store import Registry

    _require_buildah("run")
    tag = args.bento or serve.deployable_bento(Registry(args.registry))
    image = container.image_name(tag)
    info = container.inspect(image)
    if info is None:
        raise container.ContainerError(
            f"no image {image} in local storage",
            fix=f"build it: recsys bento containerize --bento {tag}",
        )
    return tag, image, container.image_labels(info)


def cmd_bento_manifests(args: argparse.Namespace) -> int:
    """measure the bento's image, then write its Kubernetes manifests

    Runs the image of the deployable bento (--bento TAG: that bento's; `recsys bento
    containerize` builds it), drives POST /recommend with --clients clients for --duration
    seconds and measures the container's memory (PSS) and CPU; from those it writes a
    Deployment (probes on /readyz and /livez, requests and limits), a Service, a
    HorizontalPodAutoscaler and a PodDisruptionBudget (replicas and CPU target: `container:`
    in the parameter file) as one YAML file beside the bento's validation report, with the
    measurement beside it. The image is named in container.registry when that is set.
    Exit status: 0 written; 2 no image or the machine cannot run it.
    """
    import tempfile

    from recsys.serving import deploy, infra

    tag, image, labels = _built_image(args)
    config = params_from(args.params).container
    bodies = infra.recommend_bodies(tag)
    with tempfile.TemporaryDirectory(prefix="recsys-manifests-") as tmp:
        footprint = deploy.measure_footprint(
            image,
            bodies,
            log=Path(tmp) / "container.log",
            clients=args.clients,
            duration_s=args.duration,
        )
    docs = deploy.kubernetes_manifests(
        image, footprint, labels, config.kubernetes, registry=config.registry
    )
    path = deploy.write_manifests(
        docs, footprint, args.out or deploy.manifests_path(args.registry, tag)
    )
    res = deploy.resources(footprint)
    print(
        f"measured {image}: ready in {footprint.ready_s:.1f} s, peak"
        f" {footprint.peak_memory_bytes / 2**20:.0f} MiB, {footprint.load_cpu_cores:.2f} cores"
        f" at {footprint.clients} clients ({footprint.throughput_rps:.0f} rps)"
    )
    print(f"requests {res['requests']}, limits {res['limits']}")
    print(f"wrote {path} (kubectl apply -f {path})")
    return 0


def cmd_bento_push(args: argparse.Namespace) -> int:
    """push the bento's image to a team's registry (buildah push)

    `buildah push` of the deployable bento's image (--bento TAG: that bento's) to --to
    (default: container.registry in the parameter file) as REGISTRY/recsys:<version>; a
    transport-qualified destination (oci-archive:FILE, docker://HOST/REPO:TAG) is used as it
    is. Log in first with `buildah login REGISTRY`. Exit status: 0 pushed; 2 no image, no
    destination or the push failed.
    """
    from recsys.serving import images

    _, image, _ = _built_image(args)
    destination = args.to or params_from(args.params).container.registry
    pushed = images.push(image, destination, tls_verify=not args.insecure)
    print(f"pushed {image} to {pushed}")
    return 0


def cmd_bento_prune(args: argparse.Namespace) -> int:
    """remove old bento images from local storage

    Keeps the deployable bento's image and the --keep newest others (default:
    container.keep_images in the parameter file); layers a kept image uses stay.
    Exit status: 0.
    """
    from recsys.serving import container, images, infra

    keep = args.keep if args.keep is not None else params_from(args.params).container.keep_images
    deployable = infra.deployable(args.registry)
    protect = [container.image_name(deployable)] if deployable else []
    removed = images.prune_images(keep, protect)
    print(f"removed {len(removed)} image(s)" + "".join(f"\n  {name}" for name in removed))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """serve the champion's deployable bento (bentoml serve)

    `bentoml serve` the bento that REGISTRY/deployable.json names (the last one `recsys bento
    validate` passed), after checking it was built around the registry's champion; --bento TAG
    serves that bento instead. The command becomes the server process (Ctrl-C or SIGTERM stops
    it). With --front PORT, HAProxy serves on PORT in front of the deployable bento, and each
    new deployable bento (a promotion, or a rollback once the old champion's bento is
    validated again) takes over without a dropped request (docs/serving.md "Zero-downtime
    switches"). Exit status: the server's (0 with --front); 2 when there is no champion or no
    deployable bento for it.
    """
    from recsys.serving import serve
    from recsys.serving.store import Registry

    if args.front:
        return _serve_front(args)
    tag = args.bento or serve.deployable_bento(Registry(args.registry))
    serve.bento_champion(tag)  # fails with a fix when the bento is not in the store
    cmd = serve.serve_command(tag, host=args.host, port=args.port)
    print(f"serving {tag}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    serve.exec_serve(cmd)


def _serve_front(args: argparse.Namespace) -> int:
    """``recsys serve --front PORT``: recsys.serving.bluegreen.supervise until SIGTERM/SIGINT."""
    import signal
    import tempfile
    import threading

    from recsys.serving import bluegreen
    from recsys.serving.store import Registry

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="recsys-front-") as work:
        front = bluegreen.BlueGreen(Path(work), port=args.front, host=args.host or "0.0.0.0")
        bluegreen.supervise(
            Registry(args.registry),
            front,
            stop,
            poll_s=args.watch,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    return 0
