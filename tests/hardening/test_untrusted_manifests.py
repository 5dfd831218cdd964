"""Class 1: a manifest is untrusted input. Hostile values in every field of a validly
hashed manifest, rendered through the public functions, parsed back by the consumers'
own parsers (pip's requirements parser, a Dockerfile parser, python-debian for apt's
version syntax and deb822): either the manifest is refused, naming the field, or the
rendered files say exactly what the lock says, and nothing was added."""

from __future__ import annotations

import copy
import io
import json
import re
import signal
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest
from hardening_support import SETTINGS, Case, get_at, hostile_text, set_at, string_leaves  # isort: skip
from buildtest_support import BOOKWORM_SECTIONS, CONDA_SECTIONS, manifest_from  # after hardening_support
from debian.deb822 import Deb822
from debian.debian_support import Version as DebVersion
from dockerfile_parse import DockerfileParser
from hypothesis import given
from hypothesis import strategies as st
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pip._internal.network.session import PipSession
from pip._internal.req.req_file import RequirementsFileParser, get_line_parser

from envcap.pins import validate as v
from envcap.builder.dockerfile import DEFAULT_ENV_ALLOW, LABEL_ENV_ID, STEPS_DIR, render
from envcap.pins.errors import ManifestRefused
from envcap.builder.lock import Lock, lock

BASE = "registry.example/base/debian@sha256:" + "1" * 64
RPM_SECTIONS: dict[str, Any] = {
    "os": {**BOOKWORM_SECTIONS["os"], "id": "fedora", "version_codename": None},
    "system": {"manager": "rpm", "packages": [{"name": "bash", "version": "5.2.26-1.fc39", "arch": "x86_64"}]},
}
CASES = {"bookworm": BOOKWORM_SECTIONS, "conda": CONDA_SECTIONS, "rpm": RPM_SECTIONS}
PLATFORM = {"cpu": {"architecture": "x86_64"}}
OBSERVED = {"time": "2026-11-20T10:00:00+00:00", "hostname": "node1"}


def _targets() -> list[tuple[str, tuple[Any, ...]]]:
    out = []
    for case, sections in CASES.items():
        doc = {"sections": sections, "platform": PLATFORM, "observed": OBSERVED}
        out += [(case, p) for p in string_leaves(doc) if len(p) > 1]
    return out


TARGETS = _targets()
PIP_OPTIONS = {"index_url", "extra_index_urls", "no_index", "constraints", "requirements", "editables",
               "find_links", "format_control", "prefer_binary", "require_hashes", "pre", "trusted_hosts",
               "features_enabled", "global_options", "config_settings"}


def _session() -> PipSession:
    # pip's session looks at the installed distributions for its User-Agent, through a
    # vendored pkg_resources that warns on import; a local file never needs the network.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return PipSession()


SESSION = _session()


def _pip_lines(text: str) -> list[Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "requirements.txt"
        path.write_text(text, encoding="utf-8")
        parser = RequirementsFileParser(SESSION, get_line_parser(None))
        return list(parser.parse(str(path), constraint=False))


def _changed_options(opts: Any) -> dict[str, Any]:
    """The options a line sets, beyond pip's defaults."""
    defaults = {"index_url": None, "no_index": False, "prefer_binary": False, "require_hashes": False, "pre": False,
                "global_options": None, "config_settings": None, "hashes": None}
    out = {}
    for name, value in vars(opts).items():
        if name in defaults:
            if value != defaults[name]:
                out[name] = value
        elif name == "format_control":
            if value.no_binary or value.only_binary:
                out[name] = value
        elif value:
            out[name] = value
    return out


def check_requirements(text: str, pins: tuple[Any, ...], indexes: tuple[str, ...]) -> None:
    """pip reads from ``text`` exactly ``pins`` and ``indexes``: no requirement, hash or option more."""
    wanted = {(p.name, p.url or f"=={p.version}", tuple(p.hashes)) for p in pins}
    seen, options = set(), []
    for line in _pip_lines(text):
        changed = _changed_options(line.opts)
        if line.is_requirement:
            assert not line.is_editable
            req = Requirement(line.requirement)
            hashes = tuple(sorted(changed.pop("hashes", {}).get("sha256", [])))
            assert not changed, f"a requirement line set options: {changed}"
            seen.add((canonicalize_name(req.name), req.url or str(req.specifier), hashes))
        else:
            options.append(changed)
    assert seen == wanted
    expected_options = ([{"index_url": indexes[0]}] + [{"extra_index_urls": [u]} for u in indexes[1:]]) if indexes else []
    assert options == expected_options


def check_system_file(manager: str, text: str, pins: tuple[tuple[str, str, str], ...]) -> None:
    lines = [line for line in text.split("\n") if line and not line.startswith("#")]
    assert len(lines) == len(pins)
    for line in lines:
        # The install hint passes $(grep -v '^#' FILE) to the package manager: one word a line.
        assert line.split() == [line]
        if manager == "dpkg":
            name, _, version = line.partition("=")
            v.deb_name("apt.txt", name.split(":")[0])
            assert str(DebVersion(version)) == version  # apt's own version syntax
    assert text.split("\n") == text.splitlines() + [""]


def check_dockerfile(text: str, rendered: Any, manifest: Any, allow: tuple[str, ...]) -> None:
    parser = DockerfileParser(fileobj=io.BytesIO())
    parser.content = text
    kinds = [i["instruction"] for i in parser.structure if i["instruction"] != "COMMENT"]
    assert kinds[0] == "FROM" and kinds.count("FROM") == 1
    assert set(kinds) <= {"FROM", "ARG", "LABEL", "COPY", "RUN", "ENV", "COMMENT"}
    assert kinds.count("LABEL") == 1
    for item in parser.structure:
        if item["instruction"] == "RUN":
            args = json.loads(item["value"])
            assert args[0] == "/bin/bash" and re.fullmatch(re.escape(STEPS_DIR) + r"/[a-z]+\.sh", args[1])
        if item["instruction"] == "COPY":
            *sources, dest = json.loads(item["value"])
            assert all(s in rendered.files or s == "envcap-steps/" for s in sources)
        if item["instruction"] == "ARG":
            assert item["value"] in ("ENVCAP_SERVER_PORT=", "ENVCAP_CA_SHA256=")
    assert set(parser.envs) <= set(allow)
    assert parser.labels[LABEL_ENV_ID] == manifest.env_id
    assert set(parser.labels) <= {LABEL_ENV_ID, *(f"org.opencontainers.image.{k}" for k in
                                                  ("title", "description", "version", "base.name", "base.digest",
                                                   "ref.name"))}


def check_everything(manifest: Any) -> None:
    """Lock and render ``manifest``; refused, or every output parses back to what the lock says."""
    try:
        locked: Lock = lock(manifest, hashes=None)
        rendered = render(manifest, locked, BASE)
    except ManifestRefused as exc:
        assert str(exc).startswith("manifest refused: ") and str(exc).isprintable()
        return
    for name, text in locked.files.items():
        for line in text.split("\n"):
            assert line.isprintable(), f"{name}: {line!r}"
    if "requirements.txt" in locked.files:
        check_requirements(locked.files["requirements.txt"], locked.pip_hashed, locked.indexes)
    if "requirements-vcs.txt" in locked.files:
        check_requirements(locked.files["requirements-vcs.txt"], locked.pip_vcs, ())
    for manager, name in (("dpkg", "apt.txt"), ("rpm", "rpm.txt"), ("apk", "apk.txt")):
        if name in locked.files:
            check_system_file(manager, locked.files[name], locked.system_pins)
    if "apt-snapshot.sources" in locked.files:
        paragraphs = list(Deb822.iter_paragraphs(locked.files["apt-snapshot.sources"].splitlines()))
        assert len(paragraphs) == 1
        assert set(paragraphs[0]) == {"Types", "URIs", "Suites", "Components", "Check-Valid-Until"}
        assert paragraphs[0]["Suites"] == locked.os_codename
    for name, text in locked.files.items():
        if name.startswith("conda-"):
            urls = [line for line in text.split("\n")[text.split("\n").index("@EXPLICIT") + 1:] if line]
            assert urls == list(locked.conda_urls) and all(u.split() == [u] for u in urls)
    requested = rendered.files.get("python-requested.txt", "")
    assert [tuple(line.split(" ")) for line in requested.splitlines()] == \
        [(n, "requested" if f else "dependency") for n, f in locked.requested]
    check_dockerfile(rendered.dockerfile, rendered, manifest, DEFAULT_ENV_ALLOW)
    for note in rendered.notes:
        assert note.isprintable(), note


class _Watchdog:
    """Fails a case that hangs (a pattern that backtracks) instead of hanging the suite."""

    def __enter__(self) -> None:
        def fire(*_: Any) -> None:
            raise AssertionError("rendering hung for 20 s: a pattern backtracks")

        self.previous = signal.signal(signal.SIGALRM, fire)
        signal.alarm(20)

    def __exit__(self, *exc: Any) -> None:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)


def _manifest(case: str, path: tuple[Any, ...], value: Any) -> Any:
    doc = copy.deepcopy({"sections": CASES[case], "platform": PLATFORM, "observed": OBSERVED})
    set_at(doc, path, value)
    sections = doc["sections"]
    return manifest_from(sections, platform=doc["platform"], observed=doc["observed"])


@SETTINGS
@given(st.sampled_from(TARGETS).flatmap(lambda t: st.tuples(st.just(t), hostile_text(get_at(
    {"sections": CASES[t[0]], "platform": PLATFORM, "observed": OBSERVED}, t[1])))))
def test_hostile_values_in_any_field_add_nothing_to_any_rendered_file(target: Any) -> None:
    (case, path), value = target
    with Case("1. untrusted manifest values"), _Watchdog():
        check_everything(_manifest(case, path, value))


@SETTINGS
@given(st.sampled_from(TARGETS), st.sampled_from(TARGETS), st.data())
def test_two_hostile_values_at_once_add_nothing(first: Any, second: Any, data: Any) -> None:
    if first[0] != second[0]:
        second = first
    doc = copy.deepcopy({"sections": CASES[first[0]], "platform": PLATFORM, "observed": OBSERVED})
    for _, path in (first, second):
        try:
            original = get_at(doc, path)
            set_at(doc, path, data.draw(hostile_text(original)))
        except (KeyError, IndexError, TypeError):
            continue  # the first change renamed the key the second one names
    with Case("1. untrusted manifest values"), _Watchdog():
        check_everything(manifest_from(doc["sections"], platform=doc["platform"], observed=doc["observed"]))


def test_every_field_of_the_sample_manifests_is_attacked() -> None:
    # The generators reach every string and every key of the manifests they start from.
    assert len(TARGETS) > 150
    assert any("origin" in p and "kind" in p for _, p in TARGETS)
    assert any(isinstance(p[-1], tuple) and p[-2] == "variables" for _, p in TARGETS)


@pytest.mark.parametrize("value", ["six\x85--extra-index-url https://evil.example/simple",
                                   "six\u2028evil==1", "six\n", "si\u212ax"])
def test_line_ends_pip_knows_are_refused_in_names(value: str) -> None:
    m = _manifest("bookworm", ("sections", "python", "packages", 0, "name"), value)
    with pytest.raises(ManifestRefused, match=r"sections\.python\.packages\[0\]\.name"):
        lock(m, hashes=None)


@pytest.mark.parametrize(("path", "value"), [
    (("sections", "python", "packages", 5, "origin", "kind"), "editable"),
    (("sections", "python", "packages", 6, "origin", "kind"), "unknown\x85--extra-index-url https://evil.example/"),
    (("sections", "python", "packages", 5, "origin", "url"), "file:///src\u2028evil==1 --hash=sha256:" + "e" * 64),
    (("sections", "python", "packages", 5, "origin", "git", "commit"), "fedcba98\n--pre"),
])
def test_fields_copied_into_comments_cannot_end_the_comment(path: tuple[Any, ...], value: str) -> None:
    m = _manifest("bookworm", path, value)
    if path[-1] == "kind" and value == "editable":
        check_everything(m)
        return
    with pytest.raises(ManifestRefused):
        lock(m, hashes=None)


def test_the_path_pattern_is_linear() -> None:
    # '/' + 'a' * 24 + '!' took about a second with the nested quantifier, five times more
    # per two characters; 60 would take longer than the universe has existed.
    with _Watchdog():
        for n in (24, 60, 5000):
            with pytest.raises(ManifestRefused):
                v.path("f", "/" + "a" * n + "!")
    assert v.path("f", "/opt/venv/") == "/opt/venv"


def test_the_grammar_takes_no_trailing_newline_and_no_lookalike_letters() -> None:
    for check, good in ((v.python_name, "six"), (v.deb_name, "libc6"), (v.deb_version, "1.0-1"), (v.commit, "abcdef0"),
                        (v.sha256, "a" * 64), (v.url, "https://x.org/a"), (v.env_name, "PATH"), (v.token, "x86_64")):
        check("f", good)
        for bad in (good + "\n", good + "\x85", good + "\u2028", "\u202e" + good):
            with pytest.raises(ManifestRefused):
                check("f", bad)
    with pytest.raises(ManifestRefused):
        v.python_name("f", "\u212aiwi")  # KELVIN SIGN: a K under IGNORECASE without ASCII
    with pytest.raises(ManifestRefused):
        v.python_version("f", "1.0.po\u017ft1")  # LATIN SMALL LETTER LONG S
    with pytest.raises(ManifestRefused):
        v.env_value("f", "a\u2028b")
    assert v.terminal_safe("a\x1b[2Jb\u202ec") == "a\\x1b[2Jb\\u202ec"
