"""``envcap push`` and ``envcap pull``: records between this machine's store and the shared one."""

from __future__ import annotations

import json
from typing import Any

import click

from .common import err


def _shared() -> Any:
    from ..core.errors import UsageError
    from ..store.factory import is_shared, open_store, store_url

    if not is_shared(store_url()):
        raise UsageError("no shared store is set: give --store postgresql://..., set ENVCAP_STORE, "
                         "or run `envcap config set store postgresql://...`")
    return open_store(create=True)


@click.command(name="push")
@click.argument("refs", nargs=-1, metavar="[RUN|ID]...")
@click.option("--registry", metavar="HOST/REPO",
              help="Push the run's bundle to this OCI repository, as an artifact beside its image.")
@click.option("--carry-limit", metavar="SIZE",
              help="With --registry: carry dependencies no index serves up to SIZE (default 100M, "
                   "or ENVCAP_CARRY_LIMIT).")
@click.option("--json", "as_json", is_flag=True, help="Print what was sent as JSON.")
def push(refs: tuple[str, ...], registry: str | None, carry_limit: str | None, as_json: bool) -> None:
    """Copy runs and snapshots (all when none is named) from this machine's store to the shared one.

    All or nothing, and only what the shared store lacks is sent: pushing twice sends nothing
    the second time. With --registry, push one run's bundle to an OCI registry instead, as an
    artifact whose subject is the run's image (plain HTTP for a registry on loopback).
    """
    from ..store.factory import open_embedded

    if registry:
        from ..core.errors import UsageError
        from ..store.factory import open_store
        from ..reproduce.oci import push_bundle

        if len(refs) != 1:
            raise UsageError("--registry pushes one run: give its id")
        with open_store() as store:
            from ..store.carried import parse_size

            limit = parse_size(carry_limit) if carry_limit else None
            ref = push_bundle(store, refs[0], registry, progress=err, carry_limit=limit)
        click.echo(json.dumps({"artifact": ref}) if as_json else ref)
        return
    from ..store.sync import copy

    with open_embedded() as local, _shared() as shared:
        report = copy(local, shared, refs)
        where = shared.where
    _say(report, where, "pushed to", as_json)


@click.command(name="pull")
@click.argument("refs", nargs=-1, required=True, metavar="RUN|ID...")
@click.option("--json", "as_json", is_flag=True, help="Print what was copied as JSON.")
def pull(refs: tuple[str, ...], as_json: bool) -> None:
    """Copy runs or snapshots from the shared store into this machine's store (all or nothing)."""
    from ..store.factory import open_embedded
    from ..store.sync import copy

    with _shared() as shared, open_embedded(create=True) as local:
        report = copy(shared, local, refs)
        where = local.where
    _say(report, where, "pulled into", as_json)


def _say(report: Any, where: str, verb: str, as_json: bool) -> None:
    data = report.to_dict()
    if as_json:
        click.echo(json.dumps({**data, "store": where}, indent=2))
        return
    if report.nothing_new:
        click.echo(f"nothing to copy: {where} already holds the {data['runs']} run(s) and "
                   f"{data['snapshots']} snapshot(s) ({data['objects_present']} object(s)); nothing was sent")
        return
    click.echo(f"{data['new_runs']} new run(s), {data['new_snapshots']} new snapshot(s) and {data['new_notes']} "
               f"new note(s) {verb} {where}: {data['objects_sent']} object(s) sent, "
               f"{data['objects_present']} already there")
