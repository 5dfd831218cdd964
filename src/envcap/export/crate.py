"""A Research Object Crate (RO-Crate 1.1) of a run, written with the ``rocrate`` library.

A paper's artefact reviewers can open it with any RO-Crate tool. The crate holds::

    ro-crate-metadata.json      the graph below
    ro-crate-preview.html       the same, for a browser
    run.json                    the run record, byte for byte as stored
    environment/manifest.json   the environment the run was recorded in
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

LICENSE = "https://spdx.org/licenses/CC-BY-4.0"  # the crate's metadata, not the user's code or data


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def run_files(store: Any, run_id: str) -> tuple[Any, str, dict[str, bytes]]:
    """The run's record, its object id, and the files of its crate (path -> bytes)."""
    from ..runs.bundle import stored_files
    from ..store import runs as runs_store

    oid = runs_store.record_id(store, run_id)
    record = runs_store.load_object(store, oid)
    # The same files a bundle carries (runs/bundle.py), then the crate's own JSON views.
    files = {"run.json": store.get_object(oid), **stored_files(store, record)}
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


def build_crate(store: Any, run_id: str) -> Any:
    """The ``rocrate.ROCrate`` of a run, not yet written anywhere."""
    need("rocrate", "rocrate")
    from rocrate.model.contextentity import ContextEntity
    from rocrate.rocrate import ROCrate

    record, oid, files = run_files(store, run_id)
    crate = ROCrate(gen_preview=True)
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
    entity["run.json"]["description"] = "The run record as stored; its sha256 is its identifier."
    if "environment/manifest.json" in entity:
        entity["environment/manifest.json"]["identifier"] = record.manifest
        entity["environment/manifest.json"]["description"] = f"The environment manifest (env_id {record.env_id})."

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
        "@type": "SoftwareApplication", "name": "envcap", "version": envcap_version()}))
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
    props: dict[str, Any] = {"@type": "SoftwareSourceCode", "name": "the run's code"}
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


def export_crate(store: Any, run_id: str, output: str | os.PathLike[str]) -> int:
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
