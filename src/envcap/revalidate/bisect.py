"""``envcap bisect RUN --good ENV_A --bad ENV_B``: which package change flips the run's verdict.

As ``git bisect`` does for commits: the run is rebuilt in ENV_A's image (it must
reproduce), then in ENV_B's (it must not), then in intermediate images, each ENV_A's
image plus a subset of the Python package changes in one layer (:mod:`.layers`). With
``base`` the changes known not to break it and ``suspects`` those that still may, the
invariant is "A + base reproduces, A + base + suspects does not": each step applies
``base`` and half of the suspects (with what that half needs), and keeps the half the
verdict points to. One culprit among N changes is named after 2 + ⌈log2 N⌉ runs, the two
checks included. Changes that only go together (one needs the other) stay together,
and a subset pip cannot install is skipped, said so, and counted.

Every run is a rebuild of the run, recorded in the store as a reproduction of it with
its bisect step; the intermediate images are never bound to an env and are removed at
the end. The answer ends with how to pin back: ENV_A's image by digest, and a lockfile
of ENV_B with the culprit held at its good version.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.manifest import Manifest
from .changes import BisectError, Change, between, closure, other_differences, python_prefix
from ..store.base import StoreBackend

Progress = Callable[[str], None]
GOOD, BAD = "reproduced", "not reproduced"


@dataclass(frozen=True, slots=True)
class Options:
    dry_run: bool = False
    rtol: float = 0.0
    atol: float = 0.0
    output: Path = Path(".")  # where the rollback lockfile is written
    keep_images: bool = False


@dataclass(frozen=True, slots=True)
class StepResult:
    number: int
    what: str  # "check good", "check bad", "step"
    changes: tuple[str, ...]  # the change names applied to ENV_A's image
    image: str | None
    verdict: str | None  # None: skipped
    rebuild: str | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "what": self.what, "changes": list(self.changes), "image": self.image,
                "verdict": self.verdict, "rebuild": self.rebuild, "note": self.note}


@dataclass(frozen=True, slots=True)
class Outcome:
    run: str
    good: str
    bad: str
    changes: tuple[Change, ...]
    steps: tuple[StepResult, ...] = ()
    culprits: tuple[Change, ...] = ()
    planned: int = 0
    others: tuple[str, ...] = ()
    good_image: str | None = None
    lockfile: str | None = None
    pin_command: str | None = None
    dry_run: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def runs(self) -> int:
        return len(self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "good": self.good, "bad": self.bad, "dry_run": self.dry_run,
                "changes": [c.to_dict() for c in self.changes], "planned_runs": self.planned,
                "runs": self.runs, "skipped": sum(1 for s in self.steps if s.verdict is None),
                "steps": [s.to_dict() for s in self.steps],
                "culprits": [c.to_dict() for c in self.culprits], "other_differences": list(self.others),
                "good_image": self.good_image, "lockfile": self.lockfile, "pin_command": self.pin_command,
                "notes": list(self.notes)}


def planned_runs(n: int) -> int:
    """Runs for one culprit among ``n`` changes: the two checks, then halving."""
    return 2 + (math.ceil(math.log2(n)) if n > 1 else 0)


def _image_of(store: StoreBackend, env_id: str) -> str | None:
    from ..store import images as image_store

    rows = image_store.images(store, env_id)
    rank = {"complete": 0, "unchecked": 1, "partial": 2}
    rows.sort(key=lambda r: r.built_at, reverse=True)
    rows.sort(key=lambda r: rank.get(r.status, 3))
    return rows[0].reference if rows else None


def bisect(store: StoreBackend, run_ref: str, good_ref: str, bad_ref: str, options: Options,
           progress: Progress = lambda _: None) -> Outcome:
    from ..store import runs as runs_store
    from ..store.resolve import resolve_manifest

    run_id = runs_store.resolve(store, run_ref)
    good: Manifest = resolve_manifest(good_ref, store=store)
    bad: Manifest = resolve_manifest(bad_ref, store=store)
    if good.env_id == bad.env_id:
        raise BisectError("--good and --bad are the same environment: nothing to bisect")
    changes = between(good, bad)
    if not changes:
        raise BisectError("the two environments have the same Python packages: nothing to bisect "
                          "(envcap diff shows what differs)")
    others = tuple(other_differences(good, bad))
    good_image = _image_of(store, good.env_id)
    if good_image is None:
        raise BisectError(f"env {good.env_id} (--good) has no image in this store: build it first "
                          f"(envcap build {good.env_id[:19]} --registry HOST/REPO)")
    bad_image = _image_of(store, bad.env_id)
    base = Outcome(run_id, good.env_id, bad.env_id, tuple(changes), planned=planned_runs(len(changes)),
                   others=others, good_image=good_image, dry_run=options.dry_run)
    if options.dry_run:
        return base
    return _Search(store, run_id, good, bad, changes, good_image, bad_image, options, progress).run(base)


class _Search:
    def __init__(self, store: StoreBackend, run_id: str, good: Manifest, bad: Manifest, changes: list[Change],
                 good_image: str, bad_image: str | None, options: Options, progress: Progress) -> None:
        self.store, self.run_id, self.good, self.bad = store, run_id, good, bad
        self.changes = {c.name: c for c in changes}
        self.good_image, self.bad_image = good_image, bad_image
        self.options, self.progress = options, progress
        self.steps: list[StepResult] = []
        self.built: list[str] = []
        self.python = python_prefix(good) + "/bin/python"

    def run(self, base: Outcome) -> Outcome:
        from ..engines import make_engine

        self.engine = make_engine(False)
        try:
            return self._search(base)
        finally:
            self._clean()
            self.engine.close()

    def _clean(self) -> None:
        if self.options.keep_images:
            return
        for image in self.built:
            try:
                self.engine.remove(image)
            except Exception:  # noqa: BLE001 - an image left behind is not worth failing the answer
                pass

    def _search(self, base: Outcome) -> Outcome:
        names = list(self.changes)
        if self._check("check good", (), self.good_image) != GOOD:
            raise BisectError(f"run {self.run_id} does not reproduce in --good's image ({self.good_image}): "
                              "nothing to bisect from")
        bad_verdict = self._check("check bad", tuple(names), self.bad_image)
        if bad_verdict is None:
            raise BisectError("pip cannot install all of --bad's changes on --good's image: "
                              f"{self.steps[-1].note}")
        if bad_verdict == GOOD:
            raise BisectError(f"run {self.run_id} reproduces in --bad's environment too: nothing flips")
        applied: list[str] = []  # known good with these applied
        suspects = names
        notes: list[str] = []
        while len(suspects) > 1:
            half = self._split(applied, suspects)
            if half is None:
                notes.append("the remaining changes go together (one needs another): named together")
                break
            subset = tuple(closure([*applied, *half], self.changes))
            verdict = self._check("step", subset, None)
            if verdict is None:
                other = [n for n in suspects if n not in half]
                subset = tuple(closure([*applied, *other], self.changes))
                verdict = self._check("step", subset, None)
                if verdict is None:
                    notes.append("pip could install neither half of the remaining changes: named together")
                    break
                half = [n for n in subset if n in suspects]
            if verdict == BAD:
                suspects = [n for n in suspects if n in subset]
            else:
                applied = [n for n in self.changes if n in applied or n in subset]
                suspects = [n for n in suspects if n not in subset]
        culprits = tuple(self.changes[n] for n in suspects)
        lockfile, command = self._rollback(culprits)
        self._note(culprits)
        return Outcome(base.run, base.good, base.bad, base.changes, tuple(self.steps), culprits, base.planned,
                       base.others, self.good_image, lockfile, command, False, tuple(notes))

    def _split(self, applied: list[str], suspects: list[str]) -> list[str] | None:
        """Half of the suspects (more or less, with what they need), never all of them."""
        for size in range(max(1, len(suspects) // 2), 0, -1):
            half = [n for n in closure([*applied, *suspects[:size]], self.changes) if n in suspects]
            if len(half) < len(suspects):
                return half
        return None

    def _check(self, what: str, subset: tuple[str, ...], image: str | None) -> str | None:
        """Rebuild the run in ``image`` (or ENV_A's image + ``subset``); its verdict, None when skipped."""
        from . import layers

        number = len(self.steps) + 1
        label = ", ".join(self.changes[n].text for n in subset) or "none"
        if image is None:
            self.progress(f"step {number}: ENV_A's image + {len(subset)} change(s): {label}")
            built = layers.build(self.engine, self.good_image, self.python, [self.changes[n] for n in subset],
                                 progress=lambda _: None)
            if built.image is None:
                self.progress(f"step {number}: skipped: pip cannot install this subset ({built.error})")
                self.steps.append(StepResult(number, what, subset, None, None,
                                             note=f"skipped: pip cannot install it: {built.error}"))
                return None
            image = built.image
            self.built.append(image)
        verdict, rebuild = self._rebuild(image, what, number, subset)
        self.progress(f"step {number} ({what}): {verdict}")
        self.steps.append(StepResult(number, what, subset, image, verdict, rebuild))
        return verdict

    def _rebuild(self, image: str, what: str, number: int, subset: tuple[str, ...]) -> tuple[str, str | None]:
        from ..reproduce.plan import RebuildOptions
        from ..reproduce.rebuild import rebuild

        purpose = {"bisect": {"good": self.good.env_id, "bad": self.bad.env_id, "step": number, "what": what,
                              "changes": [self.changes[n].text for n in subset]}}
        options = RebuildOptions(image=image, rtol=self.options.rtol, atol=self.options.atol, purpose=purpose)
        import os

        with open(os.devnull, "wb") as sink:  # the command's own output: its verdict is what counts
            report = rebuild(self.store, self.run_id, options, progress=lambda _: None, output=sink)
        verdict = report.verdict
        return (GOOD if verdict is not None and verdict.reproduced else BAD), report.rebuild

    def _rollback(self, culprits: tuple[Change, ...]) -> tuple[str, str]:
        """ENV_B's packages with the culprits held at their good versions, as a lockfile; the pin command."""
        held = {c.name: c for c in culprits}
        packages = (self.bad.sections.get("python") or {}).get("packages") or []
        lines = [f"# envcap bisect: env {self.bad.env_id} with {', '.join(c.text for c in culprits)} held back",
                 f"# (run {self.run_id} reproduces without it). Install with:",
                 "#    pip install --no-deps -r THIS_FILE", ""]
        seen = set()
        from .changes import canonical

        for p in sorted(packages, key=lambda p: canonical(str(p.get("name")))):
            name = canonical(str(p.get("name")))
            seen.add(name)
            if name in held:
                c = held[name]
                if c.good is None:
                    lines.append(f"# {name} removed: not in the good environment")
                    continue
                lines.append(_pin(name, c.good, c.good_sha256) + "  # held back from " + str(c.bad))
            else:
                sha = ((p.get("origin") or {}).get("sha256")) if isinstance(p.get("origin"), dict) else None
                lines.append(_pin(name, str(p.get("version")), sha))
        for c in culprits:
            if c.name not in seen and c.good is not None:  # removed in ENV_B: put back
                lines.append(_pin(c.name, c.good, c.good_sha256) + "  # removed in the bad environment")
        self.options.output.mkdir(parents=True, exist_ok=True)
        path = (self.options.output / f"envcap-rollback-{self.run_id}.txt").resolve()
        path.write_text("\n".join(lines) + "\n")
        # The last good image by digest, and the packages with the culprit held back.
        command = f"docker pull {self.good_image} && pip install --no-deps -r {path}"
        return str(path), command

    def _note(self, culprits: tuple[Change, ...]) -> None:
        from ..core.run import utc_now
        from ..store import runs as runs_store

        text = (f"envcap bisect {self.good.env_id[:19]} → {self.bad.env_id[:19]}: "
                + ", ".join(c.text for c in culprits) + f" flips the verdict ({len(self.steps)} runs)")
        runs_store.add_note(self.store, self.run_id, runs_store.Note(utc_now(), text))


def _pin(name: str, version: str, sha256: str | None) -> str:
    return f"{name}=={version}" + (f" --hash=sha256:{sha256}" if sha256 else "")

