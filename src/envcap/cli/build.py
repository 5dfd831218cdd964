"""The ``envcap lock``, ``envcap build`` and ``envcap images`` commands: click code only.

The work is in :mod:`envcap.builder`. Errors are :class:`envcap.core.errors.EnvcapError`,
which the ``envcap`` group turns into a message and exit code 2.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from typing import Any

import click

from .common import safe

_INDEX_HELP = "The package index the Python packages came from."
_PIN_HELP = ("Which OS packages to pin: auto (the default: what the run needs: the libraries its compiled code "
             "links, compilers, CUDA), all, or package names to add (repeatable, or comma-separated).")


def _pins(values: tuple[str, ...]) -> tuple[str, ...]:
    from .rebuild import _pins as pins

    return pins(values)


def _progress(started: float) -> Callable[[str], None]:
    def show(line: str) -> None:
        click.echo(f"[{time.monotonic() - started:6.1f}s] {line}", err=True)
    return show


@click.command()
@click.argument("env", metavar="ENV")
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False),
              help="Write the lockfiles into DIR (made if needed).")
@click.option("--index-url", default="https://pypi.org/simple", show_default=True, help=_INDEX_HELP)
@click.option("--extra-index-url", "extra", multiple=True, metavar="URL",
              help="Another index to look in (repeatable), e.g. the one local versions (+cu130) came from.")
@click.option("--offline", is_flag=True, help="Use only hashes cached earlier; ask no index.")
@click.option("--refresh", is_flag=True, help="Ask the index again even for releases already cached.")
@click.option("--pin-os", "pin_os", multiple=True, metavar="auto|all|NAME", help=_PIN_HELP)
def lock(env: str, output: str, index_url: str, extra: tuple[str, ...], offline: bool, refresh: bool,
         pin_os: tuple[str, ...]) -> None:
    """Write pinned lockfiles for ENV (a manifest file, or a stored id or prefix).

    Python: requirements.txt with --hash for every file the index serves for each
    release (pip install --require-hashes); VCS installs pinned to their commit. conda:
    an explicit lockfile. OS packages: name=version pins. Nothing is resolved again.
    """
    import tempfile
    from pathlib import Path

    from ..builder.carry import StoreSources
    from ..builder.pipeline import make_lock
    from ..store.resolve import resolve_manifest
    from .common import open_store

    manifest = resolve_manifest(env)
    # What no index serves must be on this machine or carried into the store by a run's bundle.
    from contextlib import nullcontext

    from ..core.errors import EnvcapError

    try:
        opened: Any = open_store()
    except EnvcapError:
        opened = nullcontext(None)  # no store here: only this machine's files count
    with opened as store, tempfile.TemporaryDirectory(prefix="envcap-carried-") as scratch:
        sources = StoreSources(store, Path(scratch), env_id=manifest.env_id, offline=offline)
        result, hashes = make_lock(manifest, index_url=index_url, extra_index_urls=extra, offline=offline,
                                   refresh=refresh, pin_os=_pins(pin_os), sources=sources)
    if not offline:
        # A pinned OS version that neither the mirror nor the dated archive serves: the
        # lockfiles are still written (a site may have an archive that holds it), and the
        # warning says that envcap build would refuse them.
        from ..builder import aptindex
        from ..builder.settings import BuildSettings
        from ..pins.errors import LockError

        try:
            aptindex.check(result, mirror=BuildSettings.load().apt_mirror,
                           progress=lambda line: click.echo(line, err=True))
        except LockError as exc:
            click.echo(f"warning: {safe(str(exc))} (envcap build refuses these pins as they are)", err=True)
    if result.pin_os:
        click.echo(f"OS packages pinned: {result.pin_os}", err=True)
    for path in result.write(output):
        click.echo(f"wrote {path}")
    for item in result.unlocked:
        click.echo(f"not locked: {safe(item.text())}", err=True)
    asked = f"asked the index for {hashes.requests} project page(s)" if hashes.requests else \
        "every index hash came from the cache"
    click.echo(f"env {manifest.env_id}: {asked}")


@click.command()
@click.argument("env", metavar="ENV")
@click.option("--registry", required=True, metavar="HOST[:PORT]/REPO",
              help="Push the image here, e.g. 127.0.0.1:5000/envs.")
@click.option("--base", metavar="REF", help="Build on this base image instead of the mapped one.")
@click.option("--reproducible", is_flag=True,
              help="Build with buildah (--timestamp 0) so that the same manifest gives the same image digest.")
@click.option("--ca-bundle", type=click.Path(dir_okay=False, exists=True),
              help="A CA bundle for a TLS-intercepting proxy, handed to the build without staying in the image.")
@click.option("--env", "env_allow", multiple=True, metavar="NAME",
              help="Also set this captured environment variable in the image (repeatable).")
@click.option("--index-url", default="https://pypi.org/simple", show_default=True, help=_INDEX_HELP)
@click.option("--extra-index-url", "extra", multiple=True, metavar="URL", help="Another index (repeatable).")
@click.option("--force", is_flag=True, help="Build and push even when the registry already has the image.")
@click.option("--context", "context_dir", type=click.Path(file_okay=False),
              help="Keep the rendered Dockerfile and lockfiles in DIR.")
@click.option("--pin-os", "pin_os", multiple=True, metavar="auto|all|NAME", help=_PIN_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def build(env: str, registry: str, base: str | None, reproducible: bool, ca_bundle: str | None,
          env_allow: tuple[str, ...], index_url: str, extra: tuple[str, ...], force: bool,
          context_dir: str | None, pin_os: tuple[str, ...], as_json: bool) -> None:
    """Build ENV into an image, check it against its manifest, push it to REGISTRY.

    Prints the image by digest. When the registry already holds ENV's image, returns
    it at once. Exit 0 when the image captures as the same env id, 1 when it is
    partial (the differences are listed), 2 on error (nothing is recorded).
    """
    from ..builder.pipeline import BuildOptions
    from ..builder.pipeline import build as run_build
    from ..store.resolve import resolve_manifest
    from ..store.factory import open_store

    started = time.monotonic()
    manifest = resolve_manifest(env)
    options = BuildOptions(registry=registry, base=base, reproducible=reproducible,
                           ca_bundle=Path(ca_bundle) if ca_bundle else None, env_allow=env_allow,
                           index_url=index_url, extra_index_urls=extra, force=force,
                           context_dir=Path(context_dir) if context_dir else None, pin_os=_pins(pin_os))
    with open_store(create=True) as store:
        result = run_build(manifest, options, store=store, progress=_progress(started))
    record = result.record
    if as_json:
        click.echo(json.dumps({**record.to_dict(), "already": result.already, "seconds": round(result.seconds, 2),
                               "notes": list(result.notes), "timings": result.timings}, indent=2))
    else:
        if result.already:
            click.echo(f"already in the registry ({record.status}); nothing built", err=True)
        elif result.fidelity is not None:
            for line in result.fidelity.lines():
                click.echo(safe(line), err=True)
        elif record.status == "partial":
            click.echo(f"recorded as partial: {len(record.differences)} difference(s) (envcap images --json)", err=True)
        click.echo(record.reference)
    sys.exit(1 if record.status == "partial" else 0)


@click.command()
@click.argument("env", required=False, metavar="[ENV]")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def images(env: str | None, as_json: bool) -> None:
    """List the images built and pushed, by env id (of ENV only, when given)."""
    from ..store import images as image_store
    from ..store.factory import open_store
    from ..capture.summary import short

    env_id = None
    with open_store(create=False) as store:
        if env:
            from ..store.resolve import resolve_manifest

            env_id = resolve_manifest(env, store=store).env_id
        rows = image_store.images(store, env_id)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    if not rows:
        click.echo("no images built yet (envcap build ENV --registry HOST/REPO)")
        return
    for r in rows:
        click.echo(f"{short(r.env_id)}  {r.status:<9} {r.built_at}  {r.reference}")
