"""``envcap audit RUN``: does everything the run recorded still check out?

- every stored object of the run (record, manifest, diff, untracked files, parameter
  files, metrics) is re-hashed, and the manifest's ids are recomputed;
- the recorded commit must still exist in the repository;
- each parameter file recorded from the repository must match its content at the
  recorded commit plus the recorded diff (or the untracked copy), and the file as it is
  now must match what the run read;
- data and outputs are fingerprinted again;
- the environment is captured again, with the run's interpreter, and compared with the
  run's: any difference in the software layer is drift, listed change by change.

A mismatch makes the audit fail. What cannot be checked here (the repository or the
data are not on this machine) is said, and does not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import EnvcapError, ManifestError, StoreError
from ..store import runs as runs_store
from .data import HashCache, fingerprint, hash_bytes, hash_file
from ..core.run import RunRecord
from ..store.base import StoreBackend

OK, MISMATCH, UNCHECKED, INFO = "ok", "mismatch", "unchecked", "info"
FILES_SHOWN = 20  # changed files listed per dataset in text; --json lists them all


@dataclass(frozen=True, slots=True)
class Finding:
    status: str
    what: str
    detail: str = ""
    files: dict[str, list[str]] | None = None  # a dataset's files that changed, added, removed

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "what": self.what, "detail": self.detail}
        if self.files is not None:
            out["files"] = self.files
        return out


@dataclass
class AuditReport:
    run_id: str
    findings: list[Finding] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.status == MISMATCH for f in self.findings)

    def add(self, status: str, what: str, detail: str = "", files: dict[str, list[str]] | None = None) -> None:
        self.findings.append(Finding(status, what, detail, files))

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run_id, "ok": self.ok, "findings": [f.to_dict() for f in self.findings],
                "drift": list(self.drift)}

    def lines(self) -> list[str]:
        marks = {OK: "ok  ", MISMATCH: "FAIL", UNCHECKED: "skip", INFO: "note"}
        out = [f"audit of run {self.run_id}"]
        for f in self.findings:
            out.append(f"  {marks[f.status]}  {f.what}" + (f": {f.detail}" if f.detail else ""))
            for kind, paths in (f.files or {}).items():
                out += [f"        {kind:<8}{p}" for p in paths[:FILES_SHOWN]]
                if len(paths) > FILES_SHOWN:
                    out.append(f"        ... and {len(paths) - FILES_SHOWN} more {kind}")
        if self.drift:
            out.append("  environment drift (run → now):")
            out += [f"        {line}" for line in self.drift]
        bad = sum(1 for f in self.findings if f.status == MISMATCH)
        out.append(f"{bad} mismatch(es)" if bad else "everything matches")
        return out


def audit_run(store: StoreBackend, run_id: str, *, check_environment: bool = True) -> AuditReport:
    report = AuditReport(run_id)
    record_oid = runs_store.record_id(store, run_id)
    try:
        record = runs_store.load_object(store, record_oid)
    except StoreError as exc:
        report.add(MISMATCH, "run record", str(exc))
        return report
    report.add(OK, "run record", record_oid)
    if not record.finished:
        report.add(INFO, "state", "the run is unfinished (still going, or envcap was stopped)")
    manifest = _check_objects(store, record, report)
    _check_code(store, record, report)
    cache = HashCache(store)
    _check_paths(store, record.data, "data", cache, report)
    _check_paths(store, [o for o in record.outputs if not o.get("missing")], "output", cache, report)
    if check_environment:
        _check_environment(record, manifest, report)
    return report


def _check_objects(store: StoreBackend, record: RunRecord, report: AuditReport) -> Any:
    manifest = None
    for oid, kind, what in record.objects():
        if kind == "manifest":
            continue  # checked through the snapshot, which recomputes its ids
        try:
            if kind == "snapshot":
                manifest = store.get(oid)
                if manifest.id != record.manifest or manifest.env_id != record.env_id:
                    raise StoreError(f"snapshot {oid} holds manifest {manifest.id}, not the run's {record.manifest}")
            else:
                store.get_object(oid)
        except (StoreError, ManifestError) as exc:
            report.add(MISMATCH, what, str(exc))
            continue
        report.add(OK, what, oid)
    return manifest


def _check_code(store: StoreBackend, record: RunRecord, report: AuditReport) -> None:
    from ..core import proc
    from .git import file_at

    git = record.git
    root = git.get("root")
    in_repo = bool(git.get("in_repository")) and bool(root) and os.path.isdir(str(root))
    if git.get("in_repository") and not in_repo:
        report.add(UNCHECKED, "commit", f"the repository {root} is not on this machine")
    if in_repo and git.get("commit"):
        found = proc.git(["cat-file", "-e", f"{git['commit']}^{{commit}}"], str(root))
        if found is not None and found.returncode == 0:
            report.add(OK, "commit", f"{git['commit']} is in {root}")
        else:
            report.add(MISMATCH, "commit", f"{git['commit']} is no longer in {root} (history rewritten?)")
    diff_oid = (git.get("diff") or {}).get("object")
    for pf in record.params_files:
        label = f"parameter file {pf['path']}"
        if in_repo and pf.get("repo_path"):
            try:
                diff = store.get_object(diff_oid) if diff_oid else None
                then = file_at(str(root), git.get("commit"), diff, pf["repo_path"])
            except EnvcapError as exc:
                report.add(UNCHECKED, f"{label} at the recorded commit", str(exc))
                then = b""
            if then is None:
                untracked = {u["path"]: u for u in git.get("untracked") or ()}
                item = untracked.get(pf["repo_path"])
                if item is None:
                    report.add(MISMATCH, f"{label} at the recorded commit",
                               "not in the commit, the diff or the untracked files")
                elif item.get("sha256") != pf["sha256"]:
                    report.add(MISMATCH, f"{label} at the recorded commit",
                               f"the untracked copy hashes to {item.get('sha256')}, the run read {pf['sha256']}")
                else:
                    report.add(OK, f"{label} at the recorded commit", "matches the untracked copy")
            elif then:
                if hash_bytes(then) == pf["sha256"]:
                    report.add(OK, f"{label} at the recorded commit", "matches commit + diff")
                else:
                    report.add(MISMATCH, f"{label} at the recorded commit",
                               f"commit + diff give {hash_bytes(then)}, the run read {pf['sha256']}")
        current = os.path.join(str(root), pf["repo_path"]) if in_repo and pf.get("repo_path") else pf["path"]
        if not os.path.isfile(current):
            report.add(UNCHECKED, f"{label} now", f"{current} is not there")
        else:
            now = hash_file(current)
            if now == pf["sha256"]:
                report.add(OK, f"{label} now", "unchanged since the run")
            else:
                report.add(MISMATCH, f"{label} now", f"changed since the run (now {now}, the run read {pf['sha256']})")


def _check_paths(store: StoreBackend, entries: Any, kind: str, cache: HashCache, report: AuditReport) -> None:
    for entry in entries:
        path = entry.get("abspath") or entry.get("path")
        label = f"{kind} {entry.get('name') or entry.get('path')}"
        if not path or not os.path.exists(path):
            report.add(UNCHECKED, label, f"{path} is not there")
            continue
        try:
            now = fingerprint(path, cache)
        except EnvcapError as exc:
            report.add(UNCHECKED, label, str(exc))
            continue
        if now.fingerprint == entry.get("fingerprint"):
            report.add(OK, label, entry["fingerprint"])
        else:
            files = _changed_files(store, entry, path, cache) if now.kind == "dir" else None
            counts = f"; {', '.join(f'{len(v)} {k}' for k, v in files.items())}" if files else ""
            report.add(MISMATCH, label, f"changed (recorded {entry.get('fingerprint')}, now {now.fingerprint}){counts}",
                       files)


def _changed_files(store: StoreBackend, entry: Any, path: str, cache: HashCache) -> dict[str, list[str]] | None:
    """Which files of a directory changed since the run, from the listing kept with it."""
    from .data import changed_files, listing

    oid = entry.get("listing")
    if not oid:
        return None
    try:
        before = store.get_object(oid)
        after = listing(path, cache)
    except EnvcapError:
        return None
    return changed_files(before, after)


def _check_environment(record: RunRecord, recorded: Any, report: AuditReport) -> None:
    from ..capture.collect import snapshot

    if recorded is None:
        report.add(UNCHECKED, "environment", "the run has no manifest to compare with")
        return
    python = (record.python or {}).get("executable")
    if python and not os.path.exists(python):
        report.add(MISMATCH, "environment", f"the run's interpreter {python} is gone")
        return
    try:
        now = snapshot(python=python)
    except EnvcapError as exc:
        report.add(UNCHECKED, "environment", str(exc))
        return
    # Under the newest identity rule: a run recorded by an envcap of another schema minor
    # has not drifted for that alone.
    if now.current_env_id() == recorded.current_env_id():
        report.add(OK, "environment", f"env_id {now.env_id} unchanged")
    else:
        from ..compare.diff import changes_between, describe

        changes = changes_between(recorded, now, layers=["software"])
        report.drift = [describe(c, "run", "now") for c in changes]
        report.add(MISMATCH, "environment", f"env_id was {recorded.env_id}, now {now.env_id} "
                   f"({len(changes)} change(s))")
    if now.platform_id != recorded.platform_id:
        report.add(INFO, "platform", f"another platform now ({now.platform_id}); not a mismatch")
