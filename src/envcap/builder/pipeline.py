"""``envcap lock`` and ``envcap build`` as library calls.

A build: check the manifest, the engine and the registry; return at once when the
registry already holds the env's tag; else lock, render, build (private files served
on loopback for the build only), capture the image and compare it with the manifest
(the fidelity check), push, and record the registry's digest in the store. Any failure
before the record leaves nothing recorded.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.canonical import digest as digest_of
from ..core.manifest import Manifest
from ..engines import make_engine
from ..store.base import StoreBackend
from ..store import images as image_store
from ..ecosystems.build import Sources
from .base import choose_base, has_digest
from . import aptindex
from .carry import StoreSources
from ..pins.errors import BuildError
from .fidelity import Fidelity, check
from ..pins import validate as v
from ..ecosystems.python import interpreter
from ..ecosystems.python.build import is_managed
from ..pins.hashes import PYPI, IndexHashes
from .settings import BuildSettings
from .lock import Lock, lock
from .registry import Registry, Repository
from .dockerfile import DEFAULT_ENV_ALLOW, Rendered, render
from .serve import serve

Progress = Callable[[str], None]
SERVED_DOWNLOADS = "python-downloads.json"


def tag_for(env_id: str) -> str:
    """The image tag of an environment: its env id, which a tag can hold whole."""
    return "env-" + env_id.removeprefix("sha256:")


@dataclass(frozen=True, slots=True)
class BuildOptions:
    registry: str
    base: str | None = None
    reproducible: bool = False
    ca_bundle: Path | None = None
    env_allow: tuple[str, ...] = ()
    index_url: str = PYPI
    extra_index_urls: tuple[str, ...] = ()
    force: bool = False
    context_dir: Path | None = None  # keep the rendered build context here
    buildah_storage: Path | None = None  # buildah's storage root (default: its own)
    nocache: bool = False
    pin_os: tuple[str, ...] = ("auto",)  # which OS packages to pin: auto, all, and names


@dataclass(frozen=True, slots=True)
class BuildResult:
    record: image_store.ImageRecord
    already: bool
    seconds: float
    notes: tuple[str, ...] = ()
    fidelity: Fidelity | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        return self.record.reference


def make_lock(manifest: Manifest, *, index_url: str = PYPI, extra_index_urls: Iterable[str] = (),
              offline: bool = False, refresh: bool = False, pin_os: Iterable[str] = ("auto",),
              settings: BuildSettings | None = None, ask_python: bool = False,
              sources: Sources | None = None) -> tuple[Lock, IndexHashes]:
    """The lock of ``manifest`` with index hashes; ``ask_python`` asks uv which interpreter
    builds are on offer (a build does, before any step), for an interpreter no base has;
    with ``sources``, what no index serves must be found there (a :class:`LockError` names
    what is not)."""
    settings = settings or BuildSettings.load()
    offer = python_offer(manifest, settings) if ask_python else None
    hashes = IndexHashes(offline=offline, refresh=refresh)
    try:
        return lock(manifest, hashes=hashes, index_url=index_url, extra_index_urls=extra_index_urls,
                    pin_os=pin_os, settings=settings, python_offer=offer, sources=sources), hashes
    finally:
        hashes.close()


def python_offer(manifest: Manifest, settings: BuildSettings) -> interpreter.Offer | None:
    """What uv can install, asked of the uv and the download list the build will use."""
    if not is_managed(manifest):
        return None
    from .lock import _arch

    versions = interpreter.offered(settings.uv_binary(), settings.uv_env(), _arch(manifest))
    downloads = settings.python_downloads or ""
    if downloads.startswith("file://") or (downloads and "://" not in downloads):
        downloads = f"served:{SERVED_DOWNLOADS}"
    elif downloads:
        downloads = v.url("ENVCAP_PYTHON_DOWNLOADS", downloads)
    mirror = v.url("ENVCAP_PYTHON_MIRROR", settings.python_mirror) if settings.python_mirror else ""
    return interpreter.Offer(versions, downloads, mirror)


def _downloads_file(settings: BuildSettings) -> Path | None:
    value = settings.python_downloads or ""
    if value.startswith("file://"):
        return Path(value[len("file://"):])
    return Path(value) if value and "://" not in value else None


def check_arch(lock_: Lock, engine_arch: str) -> None:
    if lock_.arch and lock_.arch != engine_arch:
        raise BuildError(f"the manifest is of a {lock_.arch} machine and this engine builds {engine_arch} images: "
                         f"build it on a {lock_.arch} machine (or a builder of that architecture)")


def build(manifest: Manifest, options: BuildOptions, *, store: StoreBackend, progress: Progress = lambda _: None,
          engine: Any = None) -> BuildResult:
    started = time.monotonic()
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.monotonic()
        timings[name] = round(now - since, 3)
        return now

    repository = Repository.parse(options.registry)
    tag = tag_for(manifest.env_id)
    registry = Registry(repository)
    registry.ping()
    if not options.force:
        found = _already_pushed(store, registry, manifest.env_id, tag)
        if found is not None:
            return BuildResult(found, True, time.monotonic() - started, timings=timings)
    t = time.monotonic()
    settings = BuildSettings.load()
    with tempfile.TemporaryDirectory(prefix="envcap-carried-") as scratch:
        # What no index serves, from this machine or what a run's bundle carried: found
        # here, or the lock names what is missing before any build step.
        lock_, _ = make_lock(manifest, index_url=options.index_url, extra_index_urls=options.extra_index_urls,
                             pin_os=options.pin_os, settings=settings, ask_python=True,
                             sources=StoreSources(store, Path(scratch), env_id=manifest.env_id))
        # A pinned OS version that neither the mirror nor the dated archive serves: refused here.
        aptindex.check(lock_, mirror=settings.apt_mirror, progress=progress)
        t = lap("lock", t)
        if engine is not None:
            return _build_with(manifest, options, store, progress, engine, lock_, started, timings, lap, t,
                               repository, tag)
        engine = make_engine(options.reproducible, options.buildah_storage)
        try:
            return _build_with(manifest, options, store, progress, engine, lock_, started, timings, lap, t,
                               repository, tag)
        finally:
            engine.close()


def _build_with(manifest: Manifest, options: BuildOptions, store: StoreBackend, progress: Progress, engine: Any,
                lock_: Lock, started: float, timings: dict[str, float], lap: Callable[[str, float], float],
                t: float, repository: Repository, tag: str) -> BuildResult:
    check_arch(lock_, engine.arch())
    choice = choose_base(manifest, override=options.base)
    progress(f"base image: {choice.ref} (mapping key {choice.key})")
    base_ref = engine.resolve_base(choice.ref)
    if not has_digest(base_ref):
        raise BuildError(f"the base image {choice.ref} could not be pinned to a digest")
    t = lap("base", t)
    rendered = render(manifest, lock_, base_ref, env_allow=DEFAULT_ENV_ALLOW + options.env_allow, tag=tag)
    t = lap("render", t)
    for note in rendered.notes:
        progress(f"note: {note}")
    image = f"localhost/envcap-build:{tag}"
    with tempfile.TemporaryDirectory(prefix="envcap-build-") as tmp:
        context = options.context_dir or Path(tmp) / "context"
        rendered.write(context)
        t = time.monotonic()
        _build(engine, rendered, context, image, options, progress, lock_)
        t = lap("build", t)
    try:
        progress("fidelity check: capturing the image from outside it")
        fidelity, _ = check(engine, image, manifest, left=lock_.system_left, pinned=lock_.pin_os)
        if fidelity.unpinned:
            progress(f"fidelity: {fidelity.status}: {len(fidelity.differences)} difference(s), "
                     f"{len(fidelity.unpinned)} of them in OS packages the build did not pin ({fidelity.pinned})")
        t = lap("fidelity", t)
        progress(f"pushing {repository}:{tag}")
        digest = engine.push(image, repository, tag, progress)
        t = lap("push", t)
    finally:
        engine.remove(image)
    record = image_store.record(store, image_store.ImageRecord(
        env_id=manifest.env_id, repository=str(repository), tag=tag, digest=digest, status=fidelity.status,
        engine=engine.name, base=base_ref, differences=fidelity.differences,
        inputs=build_inputs(manifest, rendered)))
    return BuildResult(record, False, time.monotonic() - started, rendered.notes, fidelity, timings)


def build_inputs(manifest: Manifest, rendered: Rendered) -> dict[str, Any]:
    """What an image was built from, as ``envcap attest IMAGE`` states it: the manifest,
    and the digests of the Dockerfile and of every lockfile in the build context
    (envcap's own step scripts are fixed text of its version, not inputs)."""
    return {
        "manifest": manifest.id,
        "dockerfile": digest_of(rendered.dockerfile.encode("utf-8")),
        "lockfiles": {name: digest_of(text.encode("utf-8")) for name, text in rendered.files.items()
                      if not name.startswith("envcap-steps/")},
    }


def _already_pushed(store: StoreBackend, registry: Registry, env_id: str, tag: str) -> image_store.ImageRecord | None:
    """The env's image when the registry holds it: the recorded digest, else the tag."""
    known = image_store.find(store, env_id, str(registry.repository))
    if known is not None and registry.manifest_digest(known.digest) is not None:
        return known
    digest = registry.manifest_digest(tag)
    if digest is None:
        return None
    # Pushed from elsewhere (or recorded in another store): the registry vouches for the
    # tag, which names the env id; this store did not check its fidelity.
    return image_store.record(store, image_store.ImageRecord(
        env_id=env_id, repository=str(registry.repository), tag=tag, digest=digest, status="unchecked",
        engine="registry", base=""))


def _build(engine: Any, rendered: Rendered, context: Path, image: str, options: BuildOptions,
           progress: Progress, lock_: Lock) -> None:
    served: dict[str, Path] = {}
    buildargs: dict[str, str] = {}
    if options.ca_bundle is not None:
        path = Path(options.ca_bundle)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BuildError(f"--ca-bundle {path}: {exc.strerror}") from exc
        if b"-----BEGIN CERTIFICATE-----" not in data:
            raise BuildError(f"--ca-bundle {path} holds no PEM certificate")
        served["ca.pem"] = path
        buildargs["ENVCAP_CA_SHA256"] = hashlib.sha256(data).hexdigest()
    for name, local in rendered.wheels.items():
        if not Path(local).is_file():
            raise BuildError(f"the local wheel {local} is gone: put it back, or install that package from an index")
        served[f"wheels/{name}"] = Path(local)
    for name, local in rendered.carried.items():
        served[name] = Path(local)
    if lock_.python_install is not None:
        settings = BuildSettings.load()
        uv = settings.uv_binary()
        if uv is None:
            raise BuildError("installing the environment's own Python needs uv: pip install uv, or set ENVCAP_UV")
        served["uv"] = uv
        listing = _downloads_file(settings)
        if listing is not None:
            if not listing.is_file():
                raise BuildError(f"ENVCAP_PYTHON_DOWNLOADS {listing}: no such file")
            served[SERVED_DOWNLOADS] = listing
    if not served:
        engine.build(context, image, buildargs, progress, nocache=options.nocache)
        return
    with serve(served) as port:
        buildargs["ENVCAP_SERVER_PORT"] = str(port)
        engine.build(context, image, buildargs, progress, nocache=options.nocache)
