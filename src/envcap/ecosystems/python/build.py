"""Python's part of a build: hash-pinned requirements and the venv and pip steps.

Lockfiles: a pip-tools style ``requirements.txt`` (``name==version`` with a ``--hash``
for every file the index serves for that release, as ``pip-compile --generate-hashes``
writes and ``pip install --require-hashes`` accepts); VCS installs pinned to their
commit in ``requirements-vcs.txt`` (pip cannot hash a checkout); local wheels pinned by
the sha256 pip recorded; editable and directory installs listed as needing their source.
Distributions that conda or the system package manager installed are left to their
ecosystem's lockfile.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...pins import validate as v
from ...pins.errors import LockError, ManifestRefused
from ...pins.hashes import FileHash, IndexHashes, indexes_for
from ...core.manifest import Manifest
from ..build import LOCK_DIR, NO_BUILD, BuildPart, LockPart, LockRequest, Step, Unlocked
from ..conda.record import CondaSection
from . import interpreter
from .record import NO_ORIGIN, PythonSection

if TYPE_CHECKING:
    from ..build import Lock

_WHEEL_FILE = re.compile(r"^[A-Za-z0-9_.+!-]+\.whl$")
# Installers whose packages pip reinstalls as its own (the others are pip's or left out).
_KNOWN_INSTALLERS = (None, "pip", "conda", "debian", "dpkg", "rpm", "apk")


@dataclass(frozen=True, slots=True)
class PipPin:
    name: str
    version: str
    hashes: tuple[str, ...] = ()
    url: str | None = None  # a direct URL (VCS or archive) instead of name==version
    comment: str | None = None
    local_file: str | None = None  # a local wheel, served to the build from this path
    repo_path: str | None = None  # a local git repository, restored at this path for the build
    carried: str | None = None  # the git bundle (a file on this machine) it is restored from
    revision: str | None = None  # the revision pip was asked for, when the run's pip was asked for one
    patch: str | None = None  # an editable checkout's recorded uncommitted changes (a file on this machine)


@dataclass(frozen=True, slots=True)
class PythonEnv:
    version: str
    prefix: str
    base_prefix: str | None
    executable: str | None

    @property
    def is_venv(self) -> bool:
        return self.base_prefix is not None and self.base_prefix != self.prefix


# -- lockfiles -------------------------------------------------------------------------


def lock_part(manifest: Manifest, request: LockRequest, unlocked: list[Unlocked]) -> LockPart:
    python = manifest.record(PythonSection)
    if python is None:
        return LockPart()
    env = PythonEnv(
        version=v.python_version("sections.python.version", python.version),
        prefix=v.path("sections.python.prefix", python.prefix),
        base_prefix=v.path("sections.python.base_prefix", python.base_prefix) if python.base_prefix else None,
        executable=v.path("sections.python.executable", python.executable) if python.executable else None,
    )
    from_index: list[tuple[str, str]] = []
    pins: list[PipPin] = []
    vcs: list[PipPin] = []
    editable: list[PipPin] = []
    refused: list[str] = []
    requested: list[tuple[str, bool]] = []
    for i, package in enumerate(python.packages):
        where = f"sections.python.packages[{i}]"
        name = v.python_name(f"{where}.name", package.name)
        version = v.python_version(f"{where}.version", package.version)
        origin = package.origin or NO_ORIGIN
        kind = origin.kind
        if package.from_conda:
            continue  # the conda lockfile has it
        if package.from_system:
            continue  # the system package that installed it is pinned in the OS lockfile
        if package.requested is not None:
            requested.append((name, package.requested))
        if kind in ("index", "egg-info"):
            from_index.append((name, version))
        elif kind == "vcs":
            tool = origin.vcs
            if tool not in ("git", "hg", "svn", "bzr"):
                raise ManifestRefused(f"manifest refused: {where}.origin.vcs = {tool!r} is not git, hg, svn or bzr")
            url = v.url(f"{where}.origin.url", origin.url)
            sha = v.commit(f"{where}.origin.commit", origin.commit)
            if tool == "git" and url.startswith("file:///"):
                _unless_refused(refused, vcs, _local_git, name, version, url, sha, origin.requested_revision, where,
                                request)
            elif tool == "git" and request.sources is not None and _REMOTE_GIT.match(url):
                _unless_refused(refused, vcs, _remote_git, name, version, url, sha, origin.requested_revision, where,
                                request)
            else:
                vcs.append(PipPin(name, version, url=f"{tool}+{url}@{sha}"))
        elif kind in ("file", "url") and origin.sha256:
            url = v.url(f"{where}.origin.url", origin.url)
            sha = v.sha256(f"{where}.origin.sha256", origin.sha256)
            if kind == "url":
                pins.append(PipPin(name, version, (sha,), url=url))
            else:
                local = url[len("file://"):] if url.startswith("file://") else None
                if local is not None and request.sources is not None:
                    already = len(refused)
                    found = _unless_refused(refused, None, request.sources.wheel, name, version, local, sha)
                    if found is None:
                        if len(refused) == already:  # not found (not refused for its size)
                            refused.append(_cannot_have(f"python package {name} {version} (the local wheel {local})",
                                                        "the wheel is not at that path (or is not the recorded file)"))
                        continue
                    # Installed from its recorded path (put back there for the step), so that
                    # pip records the origin the run's pip did.
                    pins.append(PipPin(name, version, (sha,), url=f"{url}#sha256={sha}", local_file=found,
                                       repo_path=v.path(f"{where}.origin.url", local),
                                       comment=f"local file {url}: served by envcap for the build"))
                    continue
                pins.append(PipPin(name, version, (sha,), local_file=local,
                                   comment=f"local file {url}: put it in a --find-links folder"))
        elif kind == "editable" and request.sources is not None and origin.url and origin.url.startswith("file:///") \
                and not request.sources.is_own(origin.url[len("file://"):]):
            # A checkout that is not a run's own repository: carried like a git dependency.
            _unless_refused(refused, editable, _sibling, name, version, origin, where, request)
        elif kind in ("editable", "directory"):
            where_from = (f" at {v.commit(f'{where}.origin.git.commit', origin.git.commit)}"
                          if origin.git and origin.git.commit else "")
            source = v.comment(f"{where}.origin.url", origin.url)
            unlocked.append(Unlocked("python", name, version,
                                     f"{kind} install from {source}{where_from}: needs its source "
                                     f"(pip install {'-e ' if kind == 'editable' else ''}<checkout>)"))
        else:
            unlocked.append(Unlocked("python", name, version, f"origin {v.comment(f'{where}.origin.kind', kind)}: "
                                     "envcap cannot tell where it came from"))
    if refused:
        raise LockError("\n".join(refused) if len(refused) == 1 else
                        f"{len(refused)} packages cannot be had:\n" + "\n".join(f"- {r}" for r in refused))
    index_pins, used = _hash_pins(from_index, request.hashes, request.index_url, request.extra_index_urls, unlocked)
    pins.extend(index_pins)
    fields = {
        "python": env,
        "python_install": managed_choice(manifest, env, request.python_offer),
        "pip_hashed": tuple(sorted(pins, key=lambda p: p.name)),
        "pip_vcs": tuple(sorted(vcs, key=lambda p: p.name)),
        "pip_editable": tuple(sorted(editable, key=lambda p: p.name)),
        "requested": tuple(sorted(requested)),
        "indexes": used,
    }
    files = {}
    # Written when anything at all is left unlocked, so that its list is found beside the pins.
    if fields["pip_hashed"] or fields["pip_editable"] or unlocked:
        files["requirements.txt"] = _requirements(manifest, fields, unlocked)
    if fields["pip_vcs"]:
        files["requirements-vcs.txt"] = _requirements_vcs(manifest, fields)
    return LockPart(fields=fields, files=files)


def is_managed(manifest: Manifest) -> bool:
    """Whether the environment's interpreter is a build of its own that no base image has."""
    python = manifest.record(PythonSection)
    conda = manifest.record(CondaSection)
    return python is not None and python.flavour(conda.prefix if conda is not None else None) == "managed"


def managed_choice(manifest: Manifest, env: PythonEnv, offer: interpreter.Offer | None) -> interpreter.Choice | None:
    if not is_managed(manifest):
        return None
    return interpreter.choose(env.version, env.base_prefix or env.prefix, offer)


_REVISION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,200}$")


def _unless_refused(refused: list[str], out: list[PipPin] | None, make: Any, *args: Any) -> Any:
    """``make(*args)``, appended to ``out``; a :class:`LockError` (what cannot be had, or
    what passes the carry limit) is kept in ``refused`` instead, so that the lock names
    every such package at once."""
    try:
        made = make(*args)
    except LockError as exc:
        refused.append(str(exc))
        return None
    if out is not None:
        out.append(made)
    return made


def _cannot_have(what: str, why: str, *, remote: bool = False, editable: bool = False) -> str:
    where = "the remote answered" if remote else "it was there"
    fix = ("commit the checkout's changes, install it from an index or a git URL, and record the run again"
           if editable else "install that package from an index and record the run again")
    return (f"{what} cannot be had: {why}, and no run bundle imported here carries it. Import the bundle of a run "
            f"exported where {where} (envcap export RUN carries it), or {fix}")


def _local_git(name: str, version: str, url: str, sha: str, revision: str | None, where: str,
               request: LockRequest) -> PipPin:
    """A package pip installed from a git repository on the run's machine: the build restores
    the repository at the same path from a git bundle (carried by the run's bundle, or made
    from the repository when it is still here) and pip installs from it as it did then."""
    path = v.path(f"{where}.origin.url", url[len("file://"):])
    revision = _revision(revision, sha, where)
    carried = None
    if request.sources is not None:
        carried = request.sources.git(name, version, path, sha)
        if carried is None:
            raise LockError(_cannot_have(f"python package {name} {version} (git+{url} at {sha})",
                                         "its repository is not on this machine (or no longer holds that commit)"))
    return PipPin(name, version, url=f"git+{url}" + (f"@{revision}" if revision else "") + f"#egg={name}",
                  repo_path=path, carried=carried, revision=revision,
                  comment=f"local repository at commit {sha}")


# A remote's URL that pip can clone again (credentials were stripped when it was recorded).
_REMOTE_GIT = re.compile(r"^(?:https?|ssh|git)://[^\s#?]+$")


def _remote_git(name: str, version: str, url: str, sha: str, revision: str | None, where: str,
                request: LockRequest) -> PipPin:
    """A package pip installed from a remote git repository: the build installs it from a
    git bundle of the recorded commit (carried into the store by a run's bundle, or made
    from the remote when it answers), the remote's URL rewritten to the bundle for that
    step only, so that pip records the URL the run's pip did."""
    assert request.sources is not None
    carried = request.sources.git(name, version, url, sha)
    if carried is None:
        why = ("--offline asks no remote" if getattr(request.sources, "offline", False)
               else "the remote cannot be reached (or no longer serves that commit)")
        raise LockError(_cannot_have(f"python package {name} {version} (git+{url} at {sha})", why, remote=True))
    # The lockfile pins the commit (it installs the same by hand, from the remote); the
    # build's step asks for it as the run's pip did (see _as_asked).
    return PipPin(name, version, url=f"git+{url}@{sha}", repo_path=url, carried=carried,
                  revision=_revision(revision, sha, where),
                  comment=f"remote repository at commit {sha}: installed from a git bundle envcap serves")


def _revision(revision: str | None, sha: str, where: str) -> str | None:
    if revision is not None and (revision == sha or sha.startswith(revision)):
        return sha
    if revision is not None and (not _REVISION.match(revision) or ".." in revision):
        raise ManifestRefused(f"manifest refused: {where}.origin.requested_revision = {revision!r} "
                              "is not a git revision name")
    return revision


def _sibling(name: str, version: str, origin: Any, where: str, request: LockRequest) -> PipPin:
    """A package installed editable from a checkout that is not a run's own repository: the
    build restores the checkout at its recorded path and commit from a git bundle (carried
    by a run's bundle, or made from the checkout when it is still here) and installs it
    editable there, as the run's pip did."""
    assert request.sources is not None
    path = v.path(f"{where}.origin.url", origin.url[len("file://"):])
    commit = v.commit(f"{where}.origin.git.commit", origin.git.commit) if origin.git and origin.git.commit else None
    what = f"python package {name} {version} (installed editable from {path}" + (f" at {commit})" if commit else ")")
    if commit is None:
        raise LockError(_cannot_have(what, "the checkout was not a git checkout when it was recorded, so no commit "
                                     "says what it held", editable=True))
    carried = request.sources.editable(name, version, path, commit)
    if carried is None:
        raise LockError(_cannot_have(what, "the checkout is not on this machine, or no longer holds that commit",
                                     editable=True))
    dirty = bool(origin.git and origin.git.dirty)
    patch = request.sources.editable_diff(name, path, commit) if dirty else None
    branch = origin.git.branch if origin.git else None
    if branch is not None and (not _REVISION.match(branch) or ".." in branch):
        raise ManifestRefused(f"manifest refused: {where}.origin.git.branch = {branch!r} is not a git branch name")
    # The checkout is put back on the branch it was on (its name only: the commit is the recorded one).
    if patch is not None:
        state = " with the uncommitted changes a run recorded"
    elif dirty:
        state = " (recorded with uncommitted changes, which no record holds: installed without them)"
    else:
        state = ""
    return PipPin(name, version, repo_path=path, carried=carried, revision=branch, patch=patch,
                  comment=f"editable checkout at commit {commit}{state}")


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


def _requirements(manifest: Manifest, fields: Mapping[str, Any], unlocked: list[Unlocked]) -> str:
    env: PythonEnv = fields["python"]
    lines = [
        "#",
        f"# This file is autogenerated by envcap lock from env {manifest.env_id}",
        f"# (Python {env.version}, prefix {env.prefix}). Install with:",
        "#",
        "#    pip install --no-deps --require-hashes -r requirements.txt",
        "#",
    ]
    indexes = list(fields["indexes"])
    if indexes:
        lines.append(f"--index-url {indexes[0]}")
        lines.extend(f"--extra-index-url {u}" for u in indexes[1:])
        lines.append("")
    for pin in fields["pip_hashed"]:
        head = f"{pin.name} @ {pin.url}" if pin.url else f"{pin.name}=={pin.version}"
        if not pin.hashes:
            lines.append(head)
        else:
            lines.append(head + " \\")
            lines.extend(f"    --hash=sha256:{h}" + (" \\" if i < len(pin.hashes) - 1 else "")
                         for i, h in enumerate(pin.hashes))
        if pin.comment:
            lines.append(f"    # {pin.comment}")
    if fields["pip_editable"]:
        lines += ["", "# Editable checkouts that are not the run's own (envcap build restores each at its path "
                      "and commit, then pip install --no-deps -e PATH):"]
        lines.extend(f"#   {p.name}=={p.version}: {p.repo_path} ({p.comment})" for p in fields["pip_editable"])
    python_unlocked = [u for u in unlocked if u.section == "python"]
    if python_unlocked:
        lines += ["", "# Not locked (envcap cannot pin these):"]
        lines.extend(f"#   {u.name}=={u.version}: {u.reason}" for u in sorted(python_unlocked, key=lambda u: u.name))
    return "\n".join(lines) + "\n"


def _requirements_vcs(manifest: Manifest, fields: Mapping[str, Any]) -> str:
    lines = [
        "#",
        f"# envcap lock: VCS installs of env {manifest.env_id}, pinned to their commits.",
        "# pip cannot hash a checkout, so these install without --require-hashes:",
        "#",
        "#    pip install --no-deps -r requirements-vcs.txt",
        "#",
    ]
    # A file:// URL has no host, which "NAME @ URL" does not allow in older pips: the
    # "#egg=" form installs the same.
    lines.extend(p.url if p.url and p.url.startswith("git+file:") else f"{p.name} @ {p.url}"
                 for p in fields["pip_vcs"])
    return "\n".join(lines) + "\n"


# -- Dockerfile steps ------------------------------------------------------------------


def _as_asked(text: str, pins: tuple[PipPin, ...]) -> str:
    """The VCS lockfile as the build's step uses it: a remote repository carried by envcap
    is served at the recorded commit as its HEAD, so each is asked for as the run's pip
    asked (its branch, tag or nothing), and pip records the same requested revision."""
    for p in pins:
        if p.carried and p.repo_path and not p.repo_path.startswith("/") and p.url:
            asked = f"{p.name} @ git+{p.repo_path}" + (f"@{p.revision}" if p.revision else "")
            text = text.replace(f"{p.name} @ {p.url}\n", asked + "\n")
    return text


def steps(manifest: Manifest, lock: Lock) -> BuildPart:
    env = lock.python
    choice: interpreter.Choice | None = lock.python_install
    if env is None or not (lock.pip_hashed or lock.pip_vcs or lock.pip_editable or lock.requested or choice):
        return NO_BUILD
    python_section = manifest.record(PythonSection)
    packages = python_section.packages if python_section else ()
    out: list[Step] = []
    notes = []
    if choice is not None:
        out.append(Step(comment=f"The environment's own CPython {choice.recorded}, from uv's managed Python builds, "
                                "where it was recorded.", script="python",
                        args=(choice.version, v.path("sections.python.base_prefix", choice.prefix),
                              choice.downloads, choice.mirror)))
        note = choice.note()
        if note:
            notes.append(note)
        if not (lock.pip_hashed or lock.pip_vcs or lock.pip_editable or lock.requested):
            return BuildPart(steps=tuple(out), notes=tuple(notes))
    major_minor = ".".join(env.version.split(".")[:2])
    if env.is_venv:
        assert env.base_prefix is not None
        base_python = f"{env.base_prefix}/bin/python{major_minor}"
        system_site = python_section is not None and python_section.uses_system_site(env.prefix, env.base_prefix)
        out.append(Step(comment="The virtual environment, made by the interpreter it was made with.", script="venv",
                        args=(base_python, env.prefix, *(["--system-site-packages"] if system_site else []))))
        python = f"{env.prefix}/bin/python"
    else:
        python = env.executable or f"{env.prefix}/bin/python{major_minor}"
    names = tuple(n for n in ("requirements.txt", "requirements-vcs.txt") if n in lock.files)
    files = {name: lock.files[name] for name in names}
    if "requirements-vcs.txt" in files:
        files["requirements-vcs.txt"] = _as_asked(files["requirements-vcs.txt"], lock.pip_vcs)
    files["python-requested.txt"] = "".join(
        f"{name} {'requested' if flag else 'dependency'}\n" for name, flag in lock.requested)
    wheels = []
    for pin in lock.pip_hashed:
        if pin.local_file:
            wheel = Path(pin.local_file).name
            if not _WHEEL_FILE.match(wheel):
                raise ManifestRefused(f"manifest refused: the local file of {pin.name} ({pin.local_file}) "
                                      "is not a wheel file name")
            wheels.append(wheel)
    restored = sorted((p for p in lock.pip_vcs if p.repo_path), key=lambda p: p.name)
    if restored:
        # Each line: the served git bundle, the path the repository is restored at, the revision.
        files["vcs-restore.txt"] = "".join(f"git/{p.name}.bundle {p.repo_path} {p.revision or '-'}\n"
                                           for p in restored)
        names = (*names, "vcs-restore.txt")
    if lock.pip_editable:
        # Each line: the served git bundle, the checkout's path, its branch and the served patch
        # of its recorded uncommitted changes ("-": none); the checkout stays in the image.
        files["editable-restore.txt"] = "".join(
            f"git/editable-{p.name}.bundle {p.repo_path} {p.revision or '-'} "
            f"{f'git/editable-{p.name}.patch' if p.patch else '-'}\n" for p in lock.pip_editable)
        names = (*names, "editable-restore.txt")
        notes.extend(f"python: {p.name} {p.version}: {p.comment}" for p in lock.pip_editable
                     if p.comment and "which no record holds" in p.comment)
    placed = sorted((p for p in lock.pip_hashed if p.local_file and p.repo_path), key=lambda p: p.name)
    if placed:
        # Each line: the served wheel and the path it is put back at for pip.
        files["wheel-restore.txt"] = "".join(f"{Path(p.local_file or '').name} {p.repo_path}\n" for p in placed)
        names = (*names, "wheel-restore.txt")
    installers = sorted({v.token("sections.python.packages[].installer", p.installer)
                         for p in packages if p.installer not in _KNOWN_INSTALLERS})
    if installers:
        notes.append(f"python: packages installed by {', '.join(installers)} are reinstalled by pip "
                     "(their installer field will say pip)")
    out.append(Step(comment="Python packages: hash-checked, no resolution; REQUESTED markers as captured.",
                    script="pip", args=(python, LOCK_DIR, *sorted(wheels)), copy=(*names, "python-requested.txt")))
    return BuildPart(steps=tuple(out), files=files, notes=tuple(notes))
