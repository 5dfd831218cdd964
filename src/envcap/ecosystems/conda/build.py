"""conda's part of a build: an explicit lockfile and the step that installs it.

The lockfile is the ``@EXPLICIT`` form (what ``conda-lock --kind explicit`` writes and
``conda create --file`` reads), made from the conda-meta records: URLs and hashes, no
solving.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...pins import validate as v
from ...core.manifest import Manifest
from ..build import LOCK_DIR, NO_BUILD, BuildPart, LockPart, LockRequest, Step, Unlocked, plain
from .record import CondaSection

if TYPE_CHECKING:
    from ..build import Lock


def lock_part(manifest: Manifest, request: LockRequest, unlocked: list[Unlocked]) -> LockPart:
    conda = manifest.record(CondaSection)
    if conda is None:
        return LockPart()
    prefix = v.path("sections.conda.prefix", conda.prefix)
    urls, subdirs = [], Counter[str]()
    for i, package in enumerate(conda.packages):
        try:
            r = v.conda_record(f"sections.conda.packages[{i}]", package.to_dict())
        except v.ManifestRefused as exc:
            # One record that cannot be pinned (a private channel's URL, its token
            # redacted) is reported; the other packages are still locked.
            unlocked.append(Unlocked("conda", plain(package.name) or f"packages[{i}]", plain(package.version) or "?",
                                     f"not pinned: {_refused_reason(exc)}"))
            continue
        if r["subdir"] and r["subdir"] != "noarch":
            subdirs[r["subdir"]] += 1
        if not r["url"]:
            unlocked.append(Unlocked("conda", str(r["name"]), str(r["version"]),
                                     "the conda-meta record has no URL: install it from its channel by hand"))
            continue
        # Every conda reads "#<md5>"; only newer ones read "#sha256:<hex>".
        digest = f"#{r['md5']}" if r["md5"] else f"#sha256:{r['sha256']}" if r["sha256"] else ""
        urls.append(f"{r['url']}{digest}")
    subdir = subdirs.most_common(1)[0][0] if subdirs else "noarch"
    fields = {"conda_prefix": prefix, "conda_subdir": subdir, "conda_urls": tuple(sorted(urls))}
    files = {f"conda-{subdir}.lock": _lockfile(request, fields)} if urls else {}
    return LockPart(fields=fields, files=files)


def _refused_reason(exc: Exception) -> str:
    text = str(exc).removeprefix("manifest refused: ")
    if "[REDACTED]" in text:
        return ("its URL holds a redacted secret (a private channel's token): "
                "install it from that channel by hand, with its credentials")
    return text


def _lockfile(request: LockRequest, fields: Mapping[str, Any]) -> str:
    head = [
        f"# envcap lock: conda packages of env {request.manifest.env_id} (prefix {fields['conda_prefix']})",
        "# This file may be used to create an environment using:",
        "# $ conda create --prefix <prefix> --file <this file>",
        f"# platform: {fields['conda_subdir']}",
        "@EXPLICIT",
    ]
    return "\n".join(head + list(fields["conda_urls"])) + "\n"


def steps(manifest: Manifest, lock: Lock) -> BuildPart:
    if not (lock.conda_urls and lock.conda_prefix):
        return NO_BUILD
    name = f"conda-{lock.conda_subdir}.lock"
    return BuildPart(
        steps=(Step(comment="conda packages from their explicit lockfile (no solving).", script="conda",
                    args=(lock.conda_prefix, f"{LOCK_DIR}/{name}"), copy=(name,)),),
        files={name: lock.files[name]})
