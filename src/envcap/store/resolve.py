"""Resolving what a user typed to a stored manifest.

Every command that takes a manifest reference (``show``, ``diff``, ``lock``, ``build``,
``images``) goes through :func:`resolve_manifest`, so a new kind of reference is added in
this one place.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from ..core.errors import ManifestError, NotFoundError, StoreError, UsageError
from ..core.manifest import Manifest

if TYPE_CHECKING:  # the diff of two files loads nothing of the store
    from .base import StoreBackend


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and verify a manifest file."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError as exc:
        raise NotFoundError(f"{path}: no such file") from exc
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror}") from exc
    return Manifest.from_json(data, source=str(path))


def resolve_manifest(ref: str, *, store: StoreBackend | None = None, earliest: bool = False) -> Manifest:
    """The manifest REF names: a manifest file, else a stored manifest or snapshot id.

    Every command that takes a manifest reference goes through here, so a new kind of
    reference is added in this one place. A run id (or a unique prefix) names the
    environment the run was recorded in.

    A stored manifest comes with the observations of its newest snapshot, or with
    ``earliest`` of its first one: what stays the same however often the same
    environment is captured again (an SBOM of it is then the same bytes).
    """
    # os.path, not pathlib: importing pathlib would cost `envcap diff` milliseconds.
    if os.path.isfile(ref):
        return load_manifest(ref)
    from ..core.run import looks_like_run_ref
    from .factory import open_store

    if os.path.exists(ref):
        raise UsageError(f"{ref}: not a manifest file")
    hexpart = ref.removeprefix("sha256:")
    is_hex = re.fullmatch(r"[0-9a-f]{4,64}", hexpart) is not None
    is_run = os.sep not in ref and looks_like_run_ref(ref)
    if os.sep in ref or ref.endswith(".json") or not (is_hex or is_run):
        raise NotFoundError(f"{ref}: no such file, and not a manifest id, run id or id prefix")
    if store is not None:
        found = _stored_manifest(store, ref, is_hex, is_run)
        return first_snapshot(store, found) if earliest else found
    try:
        opened = open_store(create=False)
    except StoreError as exc:
        raise NotFoundError(f"{ref}: no such file, and {exc}") from exc
    with opened:
        found = _stored_manifest(opened, ref, is_hex, is_run)
        return first_snapshot(opened, found) if earliest else found


def first_snapshot(store: StoreBackend, manifest: Manifest) -> Manifest:
    """The same manifest with the observations of its first snapshot in STORE."""
    # The store lists snapshots oldest first.
    first = next((row.record for row in store.snapshots() if row.manifest_id == manifest.id), None)
    return manifest if first is None else store.get(first)


def resolve_run(ref: str, *, store: StoreBackend) -> Any:
    """The run record REF names, or None when it names a manifest, a file or nothing.

    The same precedence as :func:`resolve_manifest`: a file, then a manifest or snapshot
    id, then a run id (or unique prefix). ``envcap diff RUN_A RUN_B`` compares two runs
    whole when both name runs.
    """
    from ..core.run import looks_like_run_ref
    from . import runs as runs_store

    if os.sep in ref or os.path.exists(ref) or not looks_like_run_ref(ref):
        return None
    if re.fullmatch(r"[0-9a-f]{4,64}", ref.removeprefix("sha256:")) is not None:
        try:
            store.get(ref)
            return None
        except NotFoundError:
            pass
    try:
        return runs_store.load(store, runs_store.resolve(store, ref))
    except NotFoundError:
        return None


def _stored_manifest(store: StoreBackend, ref: str, is_hex: bool, is_run: bool) -> Manifest:
    """A stored manifest by id, else the environment of the run REF names."""
    from . import runs as runs_store

    if is_hex:
        try:
            return store.get(ref)
        except NotFoundError:
            if not is_run:
                raise
    try:
        record = runs_store.load(store, runs_store.resolve(store, ref))
    except NotFoundError as exc:
        if is_hex:  # It could have been either: say so rather than only "no run".
            raise NotFoundError(f"no manifest, snapshot or run with id {ref} in {store.where}") from exc
        raise
    if not record.manifest:
        raise NotFoundError(f"run {record.id} has no captured environment to compare")
    return store.get(record.manifest)
