"""Lockfiles from what a manifest already pins: no resolution, every value checked.

- Python: a pip-tools style ``requirements.txt`` (``name==version`` with a ``--hash``
  for every file the index serves for that release, as ``pip-compile
  --generate-hashes`` writes and ``pip install --require-hashes`` accepts); VCS
  installs pinned to their commit in ``requirements-vcs.txt`` (pip cannot hash a
  checkout); local wheels pinned by the sha256 pip recorded; editable and directory
  installs listed as needing their source.
- conda: an explicit lockfile (``@EXPLICIT``, the form ``conda-lock --kind explicit``
  writes and ``conda create --file`` reads) from the conda-meta records: URLs and
  hashes, no solving.
- OS: ``name=version`` pins for dpkg (``apt.txt``), ``name-version.arch`` for rpm and
  ``name=version`` for apk, with a dated Debian/Ubuntu archive snapshot beside them.

The same manifest gives byte-identical files: everything is sorted, and nothing but
the manifest and the index's (cached) answers goes in.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.files import write_text_atomic
from ..core.manifest import Manifest
from . import validate as v
from .errors import LockError
from .hashes import PYPI, FileHash, IndexHashes, indexes_for

# Installers that mean "the system package manager put this here": its package pins it.
SYSTEM_INSTALLERS = frozenset({None, "debian", "dpkg", "rpm", "apk"})
_DPKG_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf", "ppc64le": "ppc64el",
              "s390x": "s390x", "i686": "i386", "riscv64": "riscv64"}
ARCH_FROM_DPKG = {d: m for m, d in _DPKG_ARCH.items()}


@dataclass(frozen=True, slots=True)
class PipPin:
    name: str
    version: str
    hashes: tuple[str, ...] = ()
    url: str | None = None  # a direct URL (VCS or archive) instead of name==version
    comment: str | None = None
    local_file: str | None = None  # a local wheel, served to the build from this path


@dataclass(frozen=True, slots=True)
class Unlocked:
    """A distribution that no lockfile can pin, and why."""

    section: str
    name: str
    version: str
    reason: str

    def text(self) -> str:
        return f"{self.section} {self.name} {self.version}: {self.reason}"


@dataclass(frozen=True, slots=True)
class PythonEnv:
    version: str
    prefix: str
    base_prefix: str | None
    executable: str | None

    @property
    def is_venv(self) -> bool:
        return self.base_prefix is not None and self.base_prefix != self.prefix


@dataclass(frozen=True, slots=True)
class Lock:
    """What a manifest pins, in checked form, and the lockfiles made of it."""

    env_id: str
    arch: str | None  # the machine's architecture (x86_64, aarch64, ...), when known
    os_id: str | None
    os_codename: str | None
    os_version: str | None
    system_manager: str | None
    system_pins: tuple[tuple[str, str, str], ...] = ()  # (name, version, arch)
    python: PythonEnv | None = None
    pip_hashed: tuple[PipPin, ...] = ()
    pip_vcs: tuple[PipPin, ...] = ()
    requested: tuple[tuple[str, bool], ...] = ()  # REQUESTED marker per pip-installed name
    indexes: tuple[str, ...] = ()
    conda_prefix: str | None = None
    conda_subdir: str | None = None
    conda_urls: tuple[str, ...] = ()
    unlocked: tuple[Unlocked, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)

    def write(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write the lockfiles into ``directory`` (made if needed); return their paths."""
        out = Path(directory)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LockError(f"cannot write lockfiles to {out}: {exc.strerror}") from exc
        written = []
        for name, text in sorted(self.files.items()):
            write_text_atomic(out / name, text)
            written.append(out / name)
        return written


def lock(manifest: Manifest, *, hashes: IndexHashes | None, index_url: str = PYPI,
         extra_index_urls: Iterable[str] = ()) -> Lock:
    """The lock of ``manifest``; ``hashes`` None leaves index hashes out (render only)."""
    sections = manifest.sections
    index_url = v.url("--index-url", index_url).rstrip("/")
    extras = tuple(v.url("--extra-index-url", u).rstrip("/") for u in extra_index_urls)
    os_section = sections.get("os") or {}
    parts: dict[str, Any] = {
        "env_id": manifest.env_id,
        "arch": _arch(sections),
        "os_id": _plain(os_section.get("id")),
        "os_codename": _plain(os_section.get("version_codename")),
        "os_version": _plain(os_section.get("version_id")),
        "system_manager": None,
    }
    unlocked: list[Unlocked] = []
    files: dict[str, str] = {}
    system = sections.get("system")
    if system:
        parts.update(_system(system, unlocked))
        files.update(_system_files(manifest, parts))
    conda = sections.get("conda")
    if conda:
        parts.update(_conda(conda, unlocked))
        if parts["conda_urls"]:
            files[f"conda-{parts['conda_subdir']}.lock"] = _conda_file(manifest, parts)
    python = sections.get("python")
    if python:
        parts.update(_python(python, unlocked, hashes, index_url, extras))
        if parts["pip_hashed"] or unlocked:
            files["requirements.txt"] = _requirements(manifest, parts, unlocked)
        if parts["pip_vcs"]:
            files["requirements-vcs.txt"] = _requirements_vcs(manifest, parts)
    parts["unlocked"] = tuple(sorted(unlocked, key=lambda u: (u.section, u.name)))
    return Lock(files=dict(sorted(files.items())), **parts)


def _plain(value: Any) -> str | None:
    """A free-text manifest value used in comments and base keys: one safe token."""
    return v.plain(value)


def _arch(sections: Mapping[str, Any]) -> str | None:
    cpu = sections.get("cpu") or {}
    if isinstance(cpu, Mapping) and isinstance(cpu.get("architecture"), str):
        return v.plain(cpu["architecture"])
    system = sections.get("system") or {}
    if system.get("manager") == "dpkg":
        counts = Counter(p.get("arch") for p in system.get("packages", []) if p.get("arch") not in (None, "", "all"))
        if counts:
            return ARCH_FROM_DPKG.get(str(counts.most_common(1)[0][0]))
    return None


# -- system packages -------------------------------------------------------------------


def _system(system: Mapping[str, Any], unlocked: list[Unlocked]) -> dict[str, Any]:
    manager = v.system_manager("sections.system.manager", system.get("manager"))
    pins = []
    for i, record in enumerate(system.get("packages") or []):
        where = f"sections.system.packages[{i}]"
        name, version, arch = v.system_package(where, str(manager), record)
        status = record.get("status")
        if status not in (None, "installed"):
            status = v.token(f"{where}.status", status)
            unlocked.append(Unlocked("system", name, version, f"dpkg state {status!s}: not installed, not pinned"))
            continue
        pins.append((name, version, arch))
    return {"system_manager": manager, "system_pins": tuple(sorted(pins))}


def native_dpkg_arch(pins: Iterable[tuple[str, str, str]]) -> str | None:
    counts = Counter(arch for _, _, arch in pins if arch not in ("", "all"))
    return counts.most_common(1)[0][0] if counts else None


def system_pin_lines(manager: str, pins: Iterable[tuple[str, str, str]]) -> list[str]:
    pins = list(pins)
    if manager == "dpkg":
        native = native_dpkg_arch(pins)
        return [f"{n}:{a}={ver}" if a not in ("", "all", native) else f"{n}={ver}" for n, ver, a in pins]
    if manager == "rpm":
        return [f"{n}-{ver}.{a}" if a else f"{n}-{ver}" for n, ver, a in pins]
    return [f"{n}={ver}" for n, ver, _ in pins]


_SYSTEM_FILE = {"dpkg": "apt.txt", "rpm": "rpm.txt", "apk": "apk.txt"}
_INSTALL_HINT = {
    "dpkg": "apt-get install --no-install-recommends --allow-downgrades $(grep -v '^#' apt.txt)",
    "rpm": "dnf install $(grep -v '^#' rpm.txt)",
    "apk": "apk add $(grep -v '^#' apk.txt)",
}
_SNAPSHOT_ARCHIVES = {"debian": "https://snapshot.debian.org/archive/debian/{stamp}/",
                      "ubuntu": "https://snapshot.ubuntu.com/ubuntu/{stamp}/"}


def _system_files(manifest: Manifest, parts: Mapping[str, Any]) -> dict[str, str]:
    manager = parts["system_manager"]
    head = [f"# envcap lock: {manager} packages of env {manifest.env_id}",
            f"# Install with: {_INSTALL_HINT[manager]}"]
    out = {_SYSTEM_FILE[manager]: "\n".join(head + system_pin_lines(manager, parts["system_pins"])) + "\n"}
    snapshot = _archive_snapshot(manifest, parts)
    if snapshot:
        out["apt-snapshot.sources"] = snapshot
    return out


def _archive_snapshot(manifest: Manifest, parts: Mapping[str, Any]) -> str | None:
    """A deb822 source for the distribution's dated archive at the time of the snapshot.

    The archive serves every version published at that moment, so it installs pins that
    the live mirror has since replaced. The date is the snapshot's, so unlike the other
    lockfiles this one can differ between two snapshots with the same content.
    """
    template = _SNAPSHOT_ARCHIVES.get(parts["os_id"] or "")
    taken = manifest.observed.get("time")
    if parts["system_manager"] != "dpkg" or template is None or not parts["os_codename"] or not isinstance(taken, str):
        return None
    digits = "".join(c for c in taken[:19] if c.isdigit())
    if len(digits) != 14:
        return None
    stamp = f"{digits[:8]}T{digits[8:]}Z"
    return (f"# envcap lock: the {parts['os_id']} archive as it was when env {manifest.env_id} was captured.\n"
            "# Use it in place of the mirror when the mirror no longer serves the pinned versions:\n"
            "#   cp apt-snapshot.sources /etc/apt/sources.list.d/ && apt-get update\n"
            "Types: deb\n"
            f"URIs: {template.format(stamp=stamp)}\n"
            f"Suites: {parts['os_codename']}\n"
            "Components: main\n"
            "Check-Valid-Until: no\n")


# -- conda -----------------------------------------------------------------------------


def _conda(conda: Mapping[str, Any], unlocked: list[Unlocked]) -> dict[str, Any]:
    prefix = v.path("sections.conda.prefix", conda.get("prefix"))
    urls, subdirs = [], Counter()
    for i, record in enumerate(conda.get("packages") or []):
        try:
            r = v.conda_record(f"sections.conda.packages[{i}]", record)
        except v.ManifestRefused as exc:
            # One record that cannot be pinned (a private channel's URL, its token
            # redacted) is reported; the other packages are still locked.
            name, version = (record.get(k) if isinstance(record, Mapping) else None for k in ("name", "version"))
            unlocked.append(Unlocked("conda", _plain(name) or f"packages[{i}]", _plain(version) or "?",
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
    return {"conda_prefix": prefix, "conda_subdir": subdir, "conda_urls": tuple(sorted(urls))}


def _refused_reason(exc: Exception) -> str:
    text = str(exc).removeprefix("manifest refused: ")
    if "[REDACTED]" in text:
        return ("its URL holds a redacted secret (a private channel's token): "
                "install it from that channel by hand, with its credentials")
    return text


def _conda_file(manifest: Manifest, parts: Mapping[str, Any]) -> str:
    head = [
        f"# envcap lock: conda packages of env {manifest.env_id} (prefix {parts['conda_prefix']})",
        "# This file may be used to create an environment using:",
        "# $ conda create --prefix <prefix> --file <this file>",
        f"# platform: {parts['conda_subdir']}",
        "@EXPLICIT",
    ]
    return "\n".join(head + list(parts["conda_urls"])) + "\n"


# -- python ----------------------------------------------------------------------------


def _python(python: Mapping[str, Any], unlocked: list[Unlocked], hashes: IndexHashes | None,
            index_url: str, extras: tuple[str, ...]) -> dict[str, Any]:
    env = PythonEnv(
        version=v.python_version("sections.python.version", python.get("version")),
        prefix=v.path("sections.python.prefix", python.get("prefix")),
        base_prefix=v.path("sections.python.base_prefix", python["base_prefix"])
        if python.get("base_prefix") else None,
        executable=v.path("sections.python.executable", python["executable"]) if python.get("executable") else None,
    )
    from_index: list[tuple[str, str]] = []
    pins: list[PipPin] = []
    vcs: list[PipPin] = []
    requested: list[tuple[str, bool]] = []
    for i, record in enumerate(python.get("packages") or []):
        where = f"sections.python.packages[{i}]"
        if not isinstance(record, Mapping):
            raise v.ManifestRefused(f"manifest refused: {where} is not a package record")
        name = v.python_name(f"{where}.name", record.get("name"))
        version = v.python_version(f"{where}.version", record.get("version"))
        origin = record.get("origin") if isinstance(record.get("origin"), Mapping) else {}
        kind = origin.get("kind")
        installer = record.get("installer")
        if kind == "conda" or installer == "conda":
            continue  # the conda lockfile has it
        if installer in SYSTEM_INSTALLERS and kind in ("unknown", "egg-info", None):
            continue  # the system package that installed it is pinned in the OS lockfile
        if record.get("requested") is not None:
            requested.append((name, bool(record.get("requested"))))
        if kind in ("index", "egg-info"):
            from_index.append((name, version))
        elif kind == "vcs":
            tool = origin.get("vcs")
            if tool not in ("git", "hg", "svn", "bzr"):
                raise v.ManifestRefused(f"manifest refused: {where}.origin.vcs = {tool!r} is not git, hg, svn or bzr")
            url = v.url(f"{where}.origin.url", origin.get("url"))
            sha = v.commit(f"{where}.origin.commit", origin.get("commit"))
            vcs.append(PipPin(name, version, url=f"{tool}+{url}@{sha}"))
        elif kind in ("file", "url") and origin.get("sha256"):
            url = v.url(f"{where}.origin.url", origin.get("url"))
            sha = v.sha256(f"{where}.origin.sha256", origin.get("sha256"))
            if kind == "url":
                pins.append(PipPin(name, version, (sha,), url=url))
            else:
                local = url[len("file://"):] if url.startswith("file://") else None
                pins.append(PipPin(name, version, (sha,), local_file=local,
                                   comment=f"local file {url}: put it in a --find-links folder"))
        elif kind in ("editable", "directory"):
            git = origin.get("git") or {}
            where_from = (f" at {v.commit(f'{where}.origin.git.commit', git['commit'])}"
                          if isinstance(git, Mapping) and git.get("commit") else "")
            source = v.comment(f"{where}.origin.url", origin.get("url"))
            unlocked.append(Unlocked("python", name, version,
                                     f"{kind} install from {source}{where_from}: needs its source "
                                     f"(pip install {'-e ' if kind == 'editable' else ''}<checkout>)"))
        else:
            unlocked.append(Unlocked("python", name, version, f"origin {v.comment(f'{where}.origin.kind', kind)}: "
                                     "envcap cannot tell where it came from"))
    index_pins, used = _hash_pins(from_index, hashes, index_url, extras, unlocked)
    pins.extend(index_pins)
    return {
        "python": env,
        "pip_hashed": tuple(sorted(pins, key=lambda p: p.name)),
        "pip_vcs": tuple(sorted(vcs, key=lambda p: p.name)),
        "requested": tuple(sorted(requested)),
        "indexes": used,
    }


def _hash_pins(wanted: list[tuple[str, str]], hashes: IndexHashes | None, index_url: str,
               extras: tuple[str, ...], unlocked: list[Unlocked]) -> tuple[list[PipPin], tuple[str, ...]]:
    if hashes is None:
        return [PipPin(n, ver) for n, ver in wanted], (index_url, *extras)
    candidates = {(n, ver): indexes_for(ver, index_url, extras) for n, ver in wanted}
    found: dict[tuple[str, str], tuple[str, tuple[FileHash, ...]]] = {}
    pending = list(wanted)
    rank = 0
    # Ask each package's first index, then the next for those still missing, and so on:
    # one round for nearly every manifest, each round concurrent.
    while pending:
        keys = {(candidates[p][rank], p[0], p[1]): p for p in pending if rank < len(candidates[p])}
        if not keys:
            break
        answers = hashes.lookup(keys)
        for key, pkg in keys.items():
            if answers.get(key):
                found[pkg] = (key[0], answers[key])
        pending = [p for p in pending if p not in found]
        rank += 1
    if pending:
        shown = "; ".join(f"{n}=={ver} (looked in {', '.join(candidates[(n, ver)])})" for n, ver in pending[:5])
        more = f" and {len(pending) - 5} more" if len(pending) > 5 else ""
        failures = sorted({msg for (_, name), msg in hashes.errors.items() if any(name == n for n, _ in pending)})
        why = (" Some indexes could not be read: " + " | ".join(failures[:3])) if failures else ""
        raise LockError(f"{len(pending)} release(s) are on none of the indexes: {shown}{more}; name the index "
                        f"they came from with --extra-index-url.{why}")
    used = {index_url}
    pins = []
    for (n, ver), (idx, files) in found.items():
        used.add(idx)
        pins.append(PipPin(n, ver, tuple(sorted({f.sha256 for f in files}))))
    ordered = [index_url] + sorted(used - {index_url})
    return pins, tuple(ordered)


def _requirements(manifest: Manifest, parts: Mapping[str, Any], unlocked: list[Unlocked]) -> str:
    env: PythonEnv = parts["python"]
    lines = [
        "#",
        f"# This file is autogenerated by envcap lock from env {manifest.env_id}",
        f"# (Python {env.version}, prefix {env.prefix}). Install with:",
        "#",
        "#    pip install --no-deps --require-hashes -r requirements.txt",
        "#",
    ]
    indexes = list(parts["indexes"])
    if indexes:
        lines.append(f"--index-url {indexes[0]}")
        lines.extend(f"--extra-index-url {u}" for u in indexes[1:])
        lines.append("")
    for pin in parts["pip_hashed"]:
        head = f"{pin.name} @ {pin.url}" if pin.url else f"{pin.name}=={pin.version}"
        if not pin.hashes:
            lines.append(head)
        else:
            lines.append(head + " \\")
            lines.extend(f"    --hash=sha256:{h}" + (" \\" if i < len(pin.hashes) - 1 else "")
                         for i, h in enumerate(pin.hashes))
        if pin.comment:
            lines.append(f"    # {pin.comment}")
    python_unlocked = [u for u in unlocked if u.section == "python"]
    if python_unlocked:
        lines += ["", "# Not locked (envcap cannot pin these):"]
        lines.extend(f"#   {u.name}=={u.version}: {u.reason}" for u in sorted(python_unlocked, key=lambda u: u.name))
    return "\n".join(lines) + "\n"


def _requirements_vcs(manifest: Manifest, parts: Mapping[str, Any]) -> str:
    lines = [
        "#",
        f"# envcap lock: VCS installs of env {manifest.env_id}, pinned to their commits.",
        "# pip cannot hash a checkout, so these install without --require-hashes:",
        "#",
        "#    pip install --no-deps -r requirements-vcs.txt",
        "#",
    ]
    lines.extend(f"{p.name} @ {p.url}" for p in parts["pip_vcs"])
    return "\n".join(lines) + "\n"
