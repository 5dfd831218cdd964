"""A Research Object Crate (RO-Crate 1.3) of a run, written with the ``rocrate`` library.

A paper's artefact reviewers can open it with any RO-Crate tool. The crate holds::

    ro-crate-metadata.json      the graph below
    ro-crate-preview.html       the same, for a browser
    run.json                    the run record, without the author's absolute paths
    environment/manifest.json   the environment the run was recorded in, likewise
    code/diff.patch             the uncommitted changes, when there were any
    code/untracked/PATH         untracked files whose content was kept
    params/PATH                 parameter files as read
    params.json, seeds.json, data.json, outputs.json, metrics.json
    metrics.jsonl               every metric point, when the run logged any

and describes the run as a ``CreateAction`` (start and end time, status) whose
``instrument`` is the code (``SoftwareSourceCode`` at its commit) and the environment's
manifest, whose ``object`` is the parameters and the data (each by its fingerprint, as
``identifier``: the data themselves are not copied), and whose ``result`` is the
outputs (by fingerprint) and the final metrics (``PropertyValue``). Everything is
copied from stored, already redacted records.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from .sbom import envcap_version, need
from ..store.base import StoreBackend

LICENSE = "https://spdx.org/licenses/CC-BY-4.0"  # the crate's metadata, not the user's code or data
# The RO-Crate version the crate declares (conformsTo), and the one docs/export.md names.
RO_CRATE_VERSION = "1.3"
ENVCAP_URL = "https://envcap.dev"
# Keys whose values say only where things lay on the author's machine: left out of the
# crate's copies of the run record and the manifest.
MACHINE_KEYS = frozenset({"abspath", "root", "PATH", "VIRTUAL_ENV"})


def portable(value: Any, places: list[tuple[str, str]]) -> Any:
    """``value`` without :data:`MACHINE_KEYS`, and with each absolute path under one of
    ``places`` (``(path, placeholder)``, longest first) written relative to it."""
    if isinstance(value, dict):
        return {k: portable(v, places) for k, v in value.items() if k not in MACHINE_KEYS}
    if isinstance(value, list):
        return [portable(v, places) for v in value]
    if isinstance(value, str) and "/" in value:
        for path, placeholder in places:
            value = value.replace(path, placeholder)
    return value


def _places(record: Any, manifest: dict[str, Any] | None) -> list[tuple[str, str]]:
    python = ((manifest or {}).get("sections") or {}).get("python") or {}
    found = [(record.git.get("root"), "{project}"), (record.cwd, "{cwd}"),
             (python.get("prefix"), "{prefix}"), (python.get("base_prefix"), "{base_prefix}"),
             (os.path.expanduser("~"), "~")]
    places = [(p.rstrip("/"), name) for p, name in found if isinstance(p, str) and len(p.rstrip("/")) > 1]
    return sorted(places, key=lambda item: -len(item[0]))


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def run_files(store: StoreBackend, run_id: str) -> tuple[Any, str, dict[str, bytes]]:
    """The run's record, its object id, and the files of its crate (path -> bytes)."""
    from ..runs.bundle import stored_files
    from ..store import runs as runs_store

    oid = runs_store.record_id(store, run_id)
    record = runs_store.load_object(store, oid)
    # The same files a bundle carries (runs/bundle.py), then the crate's own JSON views.
    files = {"run.json": store.get_object(oid), **stored_files(store, record)}
    # The record and the manifest without the paths of the author's machine (their
    # identifiers still name the stored originals).
    manifest = json.loads(files["environment/manifest.json"]) if "environment/manifest.json" in files else None
    places = _places(record, manifest)
    files["run.json"] = _json_bytes(portable(json.loads(files["run.json"]), places))
    if manifest is not None:
        files["environment/manifest.json"] = _json_bytes(portable(manifest, places))
    files["params.json"] = _json_bytes({"params_id": record.params_id, "params": [p.to_dict() for p in record.params]})
    files["seeds.json"] = _json_bytes(dict(record.seeds))
    files["data.json"] = _json_bytes([_fingerprint(d) for d in record.data])
    files["outputs.json"] = _json_bytes([_fingerprint(o) for o in record.outputs])
    files["metrics.json"] = _json_bytes(dict(record.metrics))
    return record, oid, files


def _fingerprint(item: Any) -> dict[str, Any]:
    # The absolute path stays out: where the data lay on the author's machine is no
    # reviewer's business, and the relative path names it.
    return {k: v for k, v in dict(item).items() if k != "abspath"}


def build_crate(store: StoreBackend, run_id: str) -> Any:
    """The ``rocrate.ROCrate`` of a run, not yet written anywhere."""
    need("rocrate", "rocrate")
    from rocrate.model.contextentity import ContextEntity
    from rocrate.rocrate import ROCrate

    record, oid, files = run_files(store, run_id)
    crate = ROCrate(gen_preview=True, version=RO_CRATE_VERSION)
    crate.name = f"envcap run {record.id}"
    crate.description = (f"The provenance of run {record.id} ({record.command}), recorded by envcap: "
                         "its record, environment, code revision, parameters, data and output fingerprints, "
                         "and metrics.")
    crate.datePublished = record.ended_at or record.started_at
    crate.license = crate.add(ContextEntity(crate, LICENSE, properties={"@type": "CreativeWork",
                                                                       "name": "CC BY 4.0"}))
    entity = {}
    for path, data in sorted(files.items()):
        props: dict[str, Any] = {"name": path, "contentSize": str(len(data))}
        if path.endswith(".json"):
            props["encodingFormat"] = "application/json"
        entity[path] = crate.add_file(io.BytesIO(data), dest_path=path, properties=props)
    entity["run.json"]["identifier"] = oid
    entity["run.json"]["description"] = ("The run record, its absolute paths written relative to the project, "
                                         "the interpreter's prefix or the home directory ({project}, {prefix}, ~); "
                                         "the identifier is the sha256 of the record as stored.")
    if "environment/manifest.json" in entity:
        entity["environment/manifest.json"]["identifier"] = record.manifest
        entity["environment/manifest.json"]["description"] = (
            f"The environment manifest (env_id {record.env_id}), its absolute paths written relative as "
            "run.json's; the identifier is the id of the manifest as stored.")

    code = crate.add(ContextEntity(crate, "#code", properties=_code(record)))
    kept = [entity[p] for p in sorted(entity) if p == "code/diff.patch" or p.startswith("code/untracked/")]
    if kept:
        code["hasPart"] = kept
    inputs = [entity["params.json"]] + [
        crate.add(ContextEntity(crate, f"#data-{i}", properties=_artifact(d, "Input data")))
        for i, d in enumerate(record.data)]
    results = [crate.add(ContextEntity(crate, f"#output-{i}", properties=_artifact(o, "Output")))
               for i, o in enumerate(record.outputs)]
    results += [crate.add(ContextEntity(crate, f"#metric-{name}", properties={
        "@type": "PropertyValue", "name": name, "value": value if isinstance(value, (str, int, float)) else
        json.dumps(value)})) for name, value in sorted(record.metrics.items())]
    tool = crate.add(ContextEntity(crate, "#envcap", properties={
        "@type": "SoftwareApplication", "name": "envcap", "version": envcap_version(), "url": ENVCAP_URL}))
    action = {
        "@type": "CreateAction",
        "name": f"run {record.id}: {record.command}",
        "description": f"status {record.status}" + (f", exit {record.exit_code}" if record.exit_code is not None
                                                    else ""),
        "startTime": record.started_at,
        "actionStatus": {"@id": "http://schema.org/CompletedActionStatus" if record.status == "ok"
                         else "http://schema.org/FailedActionStatus"},
        "instrument": [code, *([entity["environment/manifest.json"]] if "environment/manifest.json" in entity
                               else [])],
        "object": inputs,
        "result": results,
        "agent": tool,
        "identifier": record.id,
    }
    if record.ended_at:
        action["endTime"] = record.ended_at
    run = crate.add(ContextEntity(crate, f"#run-{record.id}", properties=action))
    crate.root_dataset["mentions"] = [run]
    crate.mainEntity = run
    return crate


def _code(record: Any) -> dict[str, Any]:
    git = record.git
    # RO-Crate 1.3 calls code a Script, a File as well as SoftwareSourceCode; its local
    # identifier (#code) says that the files are not in the crate.
    props: dict[str, Any] = {"@type": ["File", "SoftwareSourceCode"], "name": "the run's code"}
    if not git.get("in_repository"):
        props["description"] = "not in a git repository"
        return props
    props["version"] = git.get("commit")
    if git.get("remote"):
        props["codeRepository"] = git["remote"]
    state = [f"branch {git['branch']}"] if git.get("branch") else []
    if git.get("dirty"):
        kept = [what for what, there in (("code/diff.patch", (git.get("diff") or {}).get("object")),
                                         ("code/untracked/", any(u.get("object") for u in git.get("untracked") or ())))
                if there]
        state.append("with uncommitted changes" + (f" ({', '.join(kept)})" if kept else ""))
    else:
        state.append("clean")
    props["description"] = f"git commit {git.get('commit')}, " + ", ".join(state)
    return props


def _artifact(item: Any, what: str) -> dict[str, Any]:
    props = {"@type": "File" if item.get("kind") == "file" else "Dataset",
             "name": str(item.get("path") or item.get("name")),
             "identifier": item.get("fingerprint"),
             "description": f"{what}, {item.get('files')} file(s): not included; its fingerprint is its identifier"}
    if item.get("bytes") is not None:
        props["contentSize"] = str(item["bytes"])
    return props


def export_crate(store: StoreBackend, run_id: str, output: str | os.PathLike[str]) -> int:
    """Write the run's crate to ``output`` (a ``.zip`` file, else a new directory), whole
    or not at all; return the number of files in it."""
    crate = build_crate(store, run_id)
    out = Path(output)
    tmp = out.with_name(f".{out.name}.envcap-tmp")
    zipped = out.name.lower().endswith(".zip")
    if not zipped and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists: give a new directory or a .zip file for the crate")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        if zipped:
            crate.write_zip(tmp)
        else:
            crate.write(tmp)
            if out.is_dir():
                out.rmdir()
        tmp.replace(out)
    except OSError as exc:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {out}: {exc.strerror}") from exc
    return len(crate.data_entities) + 2  # the metadata file and its HTML preview


def read_crate(path: str | os.PathLike[str]) -> Any:
    """A crate read back with the library (a directory or a zip file)."""
    need("rocrate", "rocrate")
    from rocrate.rocrate import ROCrate

    return ROCrate(str(path))
