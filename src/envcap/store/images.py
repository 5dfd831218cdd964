"""Built images in the store: which registry digest holds which environment.

One row per pushed image: the env id it was built from, the repository, tag and the
registry's manifest digest (never a local image id, which no other machine can use),
whether the fidelity check found it complete or partial, and what differed. Beside it,
``image_inputs`` keeps what each image was built from (the manifest id and the digests
of the Dockerfile and lockfiles), which ``envcap attest`` states; a table of its own, so
that a store written by this envcap still works with one from before. The tables live
in the store's index and are created on first use.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from .base import StoreBackend as Store



@dataclass(frozen=True, slots=True)
class ImageRecord:
    env_id: str
    repository: str
    tag: str
    digest: str
    status: str  # "complete", "partial", or "unchecked" (found in the registry, not built here)
    engine: str
    base: str
    differences: tuple[str, ...] = ()
    built_at: str = ""
    # {"manifest": id, "dockerfile": sha256, "lockfiles": {name: sha256}}; empty when the
    # image was not built here or was recorded before envcap kept its inputs.
    inputs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"

    def to_dict(self) -> dict[str, Any]:
        return {"env_id": self.env_id, "repository": self.repository, "tag": self.tag, "digest": self.digest,
                "reference": self.reference, "status": self.status, "engine": self.engine, "base": self.base,
                "differences": list(self.differences), "built_at": self.built_at,
                "inputs": dict(self.inputs)}


def _ready(store: Store) -> None:
    """The images tables (declared in :mod:`.schema`): there from the index's first opening;
    created here only in an index that could not be migrated."""
    if not (store.has_table("images") and store.has_table("image_inputs")):
        from ._ddl import SQLITE

        store.ensure_schema([sql for sql in SQLITE if " images " in sql or " image_inputs " in sql])


def record(store: Store, image: ImageRecord) -> ImageRecord:
    _ready(store)
    stamp = image.built_at or time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    store.transaction([(
        "INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (image.env_id, image.repository, image.tag, image.digest, image.status, image.engine, image.base,
         json.dumps(list(image.differences)), stamp),
    ), (
        # Replaced with the image: a record without inputs leaves none behind.
        "DELETE FROM image_inputs WHERE repository = ? AND digest = ?", (image.repository, image.digest),
    ), *([(
        "INSERT INTO image_inputs VALUES (?, ?, ?)",
        (image.repository, image.digest, json.dumps(dict(image.inputs), sort_keys=True)),
    )] if image.inputs else [])])
    return find(store, image.env_id, image.repository) or image


def images(store: Store, env_id: str | None = None) -> list[ImageRecord]:
    _ready(store)
    sql = ("SELECT i.env_id, i.repository, i.tag, i.digest, i.status, i.engine, i.base, i.differences, i.built_at, "
           "n.inputs FROM images i LEFT JOIN image_inputs n ON n.repository = i.repository AND n.digest = i.digest")
    params: tuple[Any, ...] = ()
    if env_id:
        sql += " WHERE i.env_id = ?"
        params = (env_id,)
    rows = store.db.execute(sql + " ORDER BY i.built_at, i.repository, i.digest", params).fetchall()
    return [ImageRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], tuple(json.loads(r[7])), r[8],
                        json.loads(r[9]) if r[9] else {}) for r in rows]


def find(store: Store, env_id: str, repository: str) -> ImageRecord | None:
    """The newest image of ``env_id`` recorded in ``repository``."""
    matches = [i for i in images(store, env_id) if i.repository == repository]
    return matches[-1] if matches else None
