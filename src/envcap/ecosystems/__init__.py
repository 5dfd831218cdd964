"""Ecosystems: one plug-in per package world (system packages, conda, Python).

Each ecosystem is a folder that knows everything about its world, so that adding one
(uv, pixi, rpm builds) means adding a folder rather than editing every wing of envcap:

- ``probe.py``: what is installed, as the manifest section it fills (the probe is listed
  with the others in the registry, :mod:`envcap.capture.registry`, by the same name and
  tags);
- ``record.py``: that section as a frozen typed record (``from_dict``/``to_dict``, the
  latter giving the section back byte for byte), which every reader uses, and which
  describes itself for fleets (``brief``) and summaries (``describe``; a manifest's summary,
  which every snapshot prints, asks the ecosystem's ``describe(section)`` instead, since
  importing the records would cost the snapshot milliseconds);
- ``build.py``: its lockfile lines and its Dockerfile steps (see :mod:`.build` for the
  interface), which the builder walks in layer order, as repo2docker composes buildpacks.

Importing this package costs no more than the registration below: the records and build
parts are imported when a manifest first asks for one, never on the snapshot's path.
Dependencies: an ecosystem's probe and record stand on ``core`` and ``probes`` only; its
build part also on ``pins`` (the builder's grammar, index hashes and errors), which lies
below the ecosystems as the builder lies above them.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from ..core import records

# In layer order: the slow-changing, most stable layers of an image first.
ECOSYSTEMS = ("system", "conda", "python")
_RECORDS = {"system": "SystemSection", "conda": "CondaSection", "python": "PythonSection"}


def record_type(name: str) -> Any:
    """The record class of ecosystem ``name``."""
    return getattr(import_module(f"{__name__}.{name}.record"), _RECORDS[name])


def describe(name: str, section: Any) -> str:
    """The summary line of ecosystem ``name``'s section, from the section itself."""
    return str(import_module(f"{__name__}.{name}").describe(section))


def build_part(name: str) -> Any:
    """The build module (lockfile lines, Dockerfile steps) of ecosystem ``name``."""
    return import_module(f"{__name__}.{name}.build")


def _loader(name: str) -> Any:
    def load(data: Any) -> Any:
        return record_type(name).from_dict(data)

    return load


for _name in ECOSYSTEMS:
    records.register(_name, _loader(_name))
del _name
