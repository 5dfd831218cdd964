"""Provenance bundles: one run, self-contained, in a zip file.

::

    README.md                   what the run was and how to reproduce it
    envcap-bundle.json          the index: format, run id, record id, the sha256 of
                                every other file, the notes
    run.json                    the run record, byte for byte as stored (its sha256 is
                                the record's id)
    environment/manifest.json   the manifest taken at the start (verified by its ids)
    code/diff.patch             the uncommitted changes (git apply)
    code/untracked/PATH         untracked files whose content was kept
    code/editables/NAME.patch   the uncommitted changes of other checkouts installed editable
    params/PATH                 parameter files as read
    metrics.jsonl               every metric point
    resources.json              the resource usage samples (envcap.resources/1)
    configs/NAME.FORMAT         configs a framework composed (Hydra's)
    deps/wheels/FILE.whl        what no index serves (:mod:`envcap.store.carried`): local
    deps/git/NAME-COMMIT.bundle wheels, git repositories (local or remote) and editable
    deps/editable/NAME-COMMIT.bundle  checkouts other than the run's own, at the recorded commit
    params.json, seeds.json,    the parameters, seeds and data fingerprints, copied out
    data.json, notes.json       of the record for people to read

Importing checks every file against the index and every object against the id the
record names, and the manifest against its own ids, before anything is written; then
it writes the run into the store in one transaction. Members are written with a fixed
date, so exporting a run twice gives the same bytes (until a note is added).
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.canonical import digest
from ..core.redact import default_redactor
from ..core.errors import ManifestError, StoreError, UsageError
from ..store import runs as runs_store
from ..core.run import RUN_ID, RunRecord, check_untrusted
from ..store.base import StoreBackend

FORMAT = "envcap.bundle/1"
INDEX = "envcap-bundle.json"
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)
_MAX_MEMBER = 1 << 30
_MAX_TOTAL = 4 << 30


def is_bundle(path: str | os.PathLike[str]) -> bool:
    """Whether a file is (or is meant to be) a bundle: a zip file, or named ``*.zip``."""
    if str(path).lower().endswith(".zip"):
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PK\x03\x04"
    except OSError:
        return False


# -- export ----------------------------------------------------------------------------------


def export_run(store: StoreBackend, run_id: str, output: str | os.PathLike[str], *, carry_limit: int | None = None) -> int:
    """Write the bundle of a run to ``output``; return the number of files in it.

    What no index serves (local wheels, local git repositories) is carried in it, up to
    ``carry_limit`` bytes (default :func:`envcap.store.carried.limit_from`); what cannot be
    carried refuses the export, naming the package, before anything is written.
    """
    record_oid = runs_store.record_id(store, run_id)
    record_bytes = store.get_object(record_oid)
    record = runs_store.load_object(store, record_oid)
    notes = [n.to_dict() for n in runs_store.notes(store, run_id)]
    carried_files, carried_index = carry(store, record, carry_limit)
    files = {"run.json": record_bytes, **stored_files(store, record), **carried_files}
    for name, value in (("params.json", [p.to_dict() for p in record.params]), ("seeds.json", dict(record.seeds)),
                        ("data.json", [dict(d) for d in record.data]), ("notes.json", notes)):
        files[name] = (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    files["README.md"] = readme(record, files).encode("utf-8")
    index = {
        "format": FORMAT,
        "run": record.id,
        "record": record_oid,
        "files": {name: digest(data) for name, data in sorted(files.items())},
        "notes": notes,
    }
    if carried_index:
        index["carried"] = carried_index
    files[INDEX] = (json.dumps(index, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    _write_zip(Path(output), files)
    return len(files)


def stored_files(store: StoreBackend, record: Any) -> dict[str, bytes]:
    """The files a run's record points at in the store, by their path in a bundle (or a
    crate): its manifest, code diff and untracked files, parameter files, metrics log,
    resource samples and composed configs. Every object is re-hashed as it is read."""
    files: dict[str, bytes] = {}
    if record.snapshot:
        files["environment/manifest.json"] = (store.get(record.snapshot).to_json() + "\n").encode("utf-8")
    diff = record.git.get("diff") or {}
    if diff.get("object"):
        files["code/diff.patch"] = store.get_object(diff["object"])
    for item in record.git.get("untracked") or ():
        if item.get("object"):
            files[_member("code/untracked", item["path"])] = store.get_object(item["object"])
    for item in record.git.get("editables") or ():
        if (item.get("diff") or {}).get("object"):
            files[_member("code/editables", f"{item.get('name')}.patch")] = store.get_object(item["diff"]["object"])
    for item in record.params_files:
        if item.get("object"):
            files[_member("params", item.get("repo_path") or os.path.basename(item["path"]))] = \
                store.get_object(item["object"])
    if record.metrics_log and record.metrics_log.get("object"):
        files["metrics.jsonl"] = store.get_object(record.metrics_log["object"])
    if record.resources and record.resources.get("object"):
        files["resources.json"] = store.get_object(record.resources["object"])
    for item in record.configs:
        if item.get("object"):
            files[_member("configs", f"{item['name']}.{item.get('format') or 'txt'}")] = store.get_object(item["object"])
    return files


def carry(store: StoreBackend, record: Any, limit: int | None) -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """The dependencies of the run's environment that no index serves, as bundle members
    and the index's list of them; refused (naming the package) when one cannot be had or
    they pass the limit."""
    from ..store import carried

    if not record.snapshot:
        return {}, []
    manifest = store.get(record.snapshot)
    limit = carried.limit_from() if limit is None else limit
    files: dict[str, bytes] = {}
    index = []
    total = 0
    own = [record.git.get("root")] if record.git.get("in_repository") else []
    for dep in carried.needs(manifest, own=own):
        data = carried.obtain(store, dep)
        if data is None:
            raise UsageError(f"cannot export run {record.id}: {dep.what} cannot be had: {carried.why_not(dep)}, "
                             "and no bundle carried it here. Export the run on a machine that has it, or install "
                             "that package from an index and record the run again")
        total += len(data)
        if total > limit:
            raise UsageError(f"cannot export run {record.id}: carrying {dep.what} ({carried.size_text(len(data))}) "
                             f"takes the bundle's dependencies to {carried.size_text(total)}, over the limit of "
                             f"{carried.size_text(limit)}: raise it with --carry-limit SIZE (or ENVCAP_CARRY_LIMIT), "
                             "or install that package from an index")
        files[dep.member] = data
        index.append({**dep.to_dict(), "sha256": digest(data)})
    return files, index


def _member(folder: str, rel: str) -> str:
    parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return "/".join([folder, *parts])


def _write_zip(path: Path, files: dict[str, bytes]) -> None:
    tmp = path.with_name(f".{path.name}.envcap-tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name in sorted(files, key=lambda n: (n != "README.md", n != INDEX, n)):
                info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, files[name])
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {exc.strerror}") from exc


def readme(record: RunRecord, files: dict[str, bytes]) -> str:
    git = record.git
    lines = [
        f"# envcap run {record.id}",
        "",
        f"- command: `{record.command}` (in `{record.cwd}`)",
        f"- started {record.started_at} on {record.host}; status: {record.status}"
        + (f", exit {record.exit_code}" if record.exit_code is not None else ""),
        f"- environment: env_id `{record.env_id}` (manifest in `environment/manifest.json`)",
    ]
    if git.get("in_repository"):
        lines.append(f"- code: commit `{git.get('commit')}`" + (f" on `{git['branch']}`" if git.get("branch") else "")
                     + (f", remote `{git['remote']}`" if git.get("remote") else "")
                     + (", with uncommitted changes" if git.get("dirty") else ""))
    else:
        lines.append("- code: not in a git repository")
    lines.append(f"- parameters: `params.json` (params_id `{record.params_id}`)")
    if record.seeds.get("global") is not None:
        lines.append(f"- seed: {record.seeds['global']} (all seeds in `seeds.json`)")
    if record.data:
        lines.append("- data: " + ", ".join(f"{d['name']} `{d['fingerprint']}`" for d in record.data)
                     + " (`data.json`)")
    if record.metrics:
        lines.append("- metrics: " + ", ".join(f"{k}={v}" for k, v in record.metrics.items()))
    lines += ["", "## Reproduce it", "",
              f"1. Check and keep this bundle: `envcap import THIS.zip`, then `envcap show {record.id}`."]
    step = 2
    if git.get("in_repository"):
        clone = git.get("remote") or "<the repository>"
        lines.append(f"{step}. Get the code: `git clone {clone} code && cd code && git checkout {git.get('commit')}`")
        step += 1
        if "code/diff.patch" in files:
            lines.append(f"{step}. Apply the uncommitted changes, from the checkout: "
                         "`git apply --binary BUNDLE/code/diff.patch` (BUNDLE: where this zip is unpacked)")
            step += 1
        if any(name.startswith("code/untracked/") for name in files):
            lines.append(f"{step}. Copy the untracked files: `cp -a BUNDLE/code/untracked/. .`")
            step += 1
    lines.append(f"{step}. Rebuild the environment that `environment/manifest.json` describes "
                 f"(its env_id must come out as `{record.env_id}`: check with `envcap snapshot`).")
    step += 1
    lines.append(f"{step}. Check the data against the fingerprints in `data.json`.")
    step += 1
    lines.append(f"{step}. Run, from `{record.cwd}`: `{record.command}`"
                 + (f" with seed {record.seeds['global']}" if record.seeds.get("global") is not None else ""))
    lines += ["", "Every file here is listed with its sha256 in `envcap-bundle.json`.", ""]
    return "\n".join(lines)


# -- import ----------------------------------------------------------------------------------


@dataclass
class Bundle:
    """A bundle read and verified, not yet written anywhere."""

    source: str
    record: RunRecord
    record_id: str
    record_bytes: bytes
    objects: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # id -> (bytes, kind)
    manifest: Any = None
    notes: list[dict[str, str]] = field(default_factory=list)
    carried: list[tuple[Any, str, bytes]] = field(default_factory=list)  # (Dependency, object id, bytes)

    @property
    def run_id(self) -> str:
        return self.record.id

    def write_into(self, store: StoreBackend) -> str:
        """Add the run to ``store`` (all or nothing); say what was done."""
        return write_bundles(store, [self])[0]

    def check_against(self, store: StoreBackend) -> None:
        """Refuse, before anything is written, a bundle the store cannot take: a run it
        holds finished with another record."""
        existing = runs_store.find(store, self.run_id)
        if existing == [self.run_id]:
            current = runs_store.record_id(store, self.run_id)
            if current != self.record_id:
                old = runs_store.load_object(store, current)
                if old.finished:
                    raise StoreError(f"{self.source}: run {self.run_id} is already in {store.where} "
                                     "with a different record")

    def parts(self, store: StoreBackend) -> tuple[list[bytes], list[tuple[str, tuple[Any, ...]]]]:
        """The objects to write and the index rows naming them, every check done first."""
        blobs = [data for data, _ in self.objects.values()] + [self.record_bytes]
        statements: list[tuple[str, tuple[Any, ...]]] = []
        if self.manifest is not None:
            body, snapshot_bytes, snapshot_rows = store.snapshot_parts(self.manifest)
            if self.record.snapshot and digest(snapshot_bytes) != self.record.snapshot:
                raise StoreError(f"{self.source}: the manifest's observations do not match the run's "
                                 f"snapshot {self.record.snapshot}")
            blobs += [body, snapshot_bytes]
            statements += snapshot_rows
        from ..store import carried

        if self.carried:
            carried.ensure_tables(store)
        blobs += [data for _, _, data in self.carried]
        have = {(n.time, n.text) for n in runs_store.notes(store, self.run_id)}
        statements += runs_store.object_statements((oid, len(data), kind) for oid, (data, kind) in self.objects.items())
        statements += runs_store.object_statements((oid, len(data), "carried") for _, oid, data in self.carried)
        statements += [s for dep, oid, _ in self.carried for s in carried.statements(dep, oid)]
        statements += runs_store.record_statements(
            self.record, self.record_id, len(self.record_bytes),
            runs_store.metric_ranges(store, self.record, {oid: data for oid, (data, _) in self.objects.items()}))
        # A stranger's notes are redacted as this machine's are.
        redactor = default_redactor()
        notes = [(n["time"], redactor.free_text(n["text"])) for n in self.notes]
        for t, x in dict.fromkeys(notes):
            if (t, x) not in have:
                statements += runs_store.note_statements(store, self.run_id, runs_store.Note(t, x))
        return blobs, statements


def write_bundles(store: StoreBackend, bundles: list[Bundle]) -> list[str]:
    """Write verified bundles into ``store``: every one checked against the store and the
    others first, then the objects, then every index row in one transaction. A refusal
    leaves nothing behind, an object included."""
    runs_store.ensure_tables(store)
    seen: dict[str, Bundle] = {}
    for b in bundles:
        other = seen.setdefault(b.run_id, b)
        if other.record_id != b.record_id and other.record.finished and b.record.finished:
            raise StoreError(f"{b.source} and {other.source} hold run {b.run_id} with different records; "
                             "nothing was imported")
        b.check_against(store)
    planned = [b.parts(store) for b in bundles]
    statements: list[tuple[str, tuple[Any, ...]]] = []
    for blobs, rows in planned:
        for data in blobs:
            store.put_object(data)
        statements += rows
    store.transaction(statements)
    return [b.run_id for b in bundles]


def read_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read a bundle and verify every byte of it; nothing is written."""
    source = str(path)
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError as exc:
        raise UsageError(f"{source}: no such file") from exc
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise StoreError(f"{source}: not a readable bundle (a corrupt or truncated zip file?): {exc}") from exc
    with zf:
        members = _read_members(zf, source)
    if INDEX not in members:
        raise StoreError(f"{source}: not an envcap bundle (no {INDEX})")
    try:
        index = json.loads(members.pop(INDEX))
    except (ValueError, RecursionError) as exc:
        raise StoreError(f"{source}: {INDEX} is not JSON: {exc}") from exc
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise StoreError(f"{source}: not a bundle of a format this envcap reads ({FORMAT})")
    listed = index.get("files")
    if not isinstance(listed, dict):
        raise StoreError(f"{source}: {INDEX} lists no files")
    for name, data in members.items():
        if name not in listed:
            raise StoreError(f"{source}: {name} is not listed in {INDEX}")
        if digest(data) != listed[name]:
            raise StoreError(f"{source}: {name} does not match its hash (recorded {listed[name]}, "
                             f"content hashes to {digest(data)}); the bundle was changed or damaged")
    missing = sorted(set(listed) - set(members))
    if missing:
        raise StoreError(f"{source}: missing {', '.join(missing)}")
    return _assemble(source, index, members)


def _read_members(zf: zipfile.ZipFile, source: str) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    total = 0
    try:
        for info in zf.infolist():
            if info.is_dir():
                continue
            name = info.filename
            if name.startswith("/") or ".." in name.split("/") or name in members:
                raise StoreError(f"{source}: a member has an unsafe or repeated name: {name!r}")
            if info.flag_bits & 0x1:
                raise StoreError(f"{source}: {name} is encrypted; an envcap bundle never is")
            total += info.file_size
            if info.file_size > _MAX_MEMBER or total > _MAX_TOTAL:
                raise StoreError(f"{source}: too large to be a bundle ({name})")
            members[name] = zf.read(info)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError) as exc:  # RuntimeError: zipfile's word for a member that needs a password
        raise StoreError(f"{source}: not a readable bundle (a corrupt or truncated zip file?): {exc}") from exc
    except Exception as exc:  # zlib.error and its kin: the compressed data is damaged
        if type(exc).__module__ in ("zlib", "bz2", "lzma"):
            raise StoreError(f"{source}: damaged compressed data: {exc}") from exc
        raise
    return members


def _assemble(source: str, index: dict[str, Any], members: dict[str, bytes]) -> Bundle:
    record_id = index.get("record")
    record_bytes = members.get("run.json", b"")
    if not isinstance(record_id, str) or digest(record_bytes) != record_id:
        raise StoreError(f"{source}: run.json is not the record {record_id}")
    try:
        record = RunRecord.from_dict(json.loads(record_bytes), source=f"{source}: run.json")
    except (ValueError, RecursionError) as exc:
        raise StoreError(f"{source}: run.json is not JSON: {exc}") from exc
    if record.id != index.get("run") or not RUN_ID.match(record.id):
        raise StoreError(f"{source}: the index names run {index.get('run')}, the record {record.id}")
    check_untrusted(record, f"{source}: run.json")
    by_digest = {digest(data): data for name, data in members.items()}
    bundle = Bundle(source=source, record=record, record_id=record_id, record_bytes=record_bytes)
    for oid, kind, what in record.objects():
        if kind in ("snapshot", "manifest"):
            continue
        data = by_digest.get(oid)
        if data is None:
            raise StoreError(f"{source}: the {what} ({oid}) is not in the bundle")
        bundle.objects[oid] = (data, kind)
    if record.manifest:
        text = members.get("environment/manifest.json")
        if text is None:
            raise StoreError(f"{source}: the run's manifest is not in the bundle")
        from ..core.manifest import Manifest

        try:
            manifest = Manifest.from_json(text, source=f"{source}: environment/manifest.json")
        except ManifestError as exc:
            raise StoreError(str(exc)) from exc
        if manifest.id != record.manifest or manifest.env_id != record.env_id:
            raise StoreError(f"{source}: environment/manifest.json is not the run's manifest {record.manifest}")
        bundle.manifest = manifest
    notes = index.get("notes") or []
    if not isinstance(notes, list) or not all(isinstance(n, dict) and isinstance(n.get("time"), str)
                                              and isinstance(n.get("text"), str) for n in notes):
        raise StoreError(f"{source}: the notes in {INDEX} must each have a time and a text")
    bundle.notes = notes
    bundle.carried = _carried(source, index, members, bundle.manifest)
    return bundle


def _carried(source: str, index: dict[str, Any], members: dict[str, bytes], manifest: Any) -> list[Any]:
    """What the bundle carries, each checked against what the run's manifest says it is."""
    from ..store import carried

    listed = index.get("carried") or []
    if not isinstance(listed, list):
        raise StoreError(f"{source}: {INDEX}'s carried is not a list")
    wanted = {d.member: d for d in (carried.needs(manifest) if manifest is not None else [])}
    out = []
    for entry in listed:
        member = entry.get("member") if isinstance(entry, dict) else None
        dep = wanted.get(member) if isinstance(member, str) else None
        if dep is None or member not in members:
            raise StoreError(f"{source}: it carries {member!r}, which the run's environment does not name")
        data = members[member]
        if dep.kind == "wheel" and hashlib.sha256(data).hexdigest() != dep.key:
            raise StoreError(f"{source}: {member} is not the wheel the run's environment recorded "
                             f"(sha256 {dep.key})")
        if dep.kind != "wheel" and not carried.bundle_holds(data, dep):
            raise StoreError(f"{source}: {member} is not a git bundle whose HEAD is the recorded commit "
                             f"{dep.commit}")
        out.append((dep, digest(data), data))
    return out


def import_bundles(paths: list[str], store: StoreBackend) -> list[str]:
    """Verify every bundle, then write them all; the run ids imported."""
    return write_bundles(store, [read_bundle(p) for p in paths])
