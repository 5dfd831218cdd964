"""The operating system release, from os-release, with ``distro`` as the fallback.

``/etc/os-release`` (or ``/usr/lib/os-release``) is a shell-style KEY=value file that
every current distribution ships; reading it directly is all a snapshot needs and costs
a fraction of importing ``distro``. ``distro`` (which knows lsb-release and the old
per-distribution release files) is asked only for trees without os-release.
"""

from __future__ import annotations

import shlex

from . import SOFTWARE, Finding, Probe
from .context import Context

OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value lines, values unquoted as a POSIX shell would (os-release(5))."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        if raw[:1] in ("'", '"') or "\\" in raw:
            try:
                parts = shlex.split(raw)
            except ValueError:
                parts = [raw.strip("'\"")]
            raw = " ".join(parts)
        values[key.strip()] = raw
    return values


def _from_distro(ctx: Context) -> dict[str, str] | None:
    import distro

    info = distro.LinuxDistribution(
        include_lsb=False, include_uname=False, root_dir=None if ctx.live else str(ctx.root)
    )
    if not info.id():
        return None
    return {
        "ID": info.id(),
        "VERSION_ID": info.version(best=False),
        "PRETTY_NAME": info.name(pretty=True),
        "NAME": info.name(),
        "VERSION_CODENAME": info.codename(),
        "ID_LIKE": info.like(),
    }


def collect(ctx: Context) -> Finding:
    text = next((t for t in (ctx.read_text(p) for p in OS_RELEASE) if t is not None), None)
    values = parse_os_release(text) if text is not None else _from_distro(ctx)
    if not values:
        return Finding(None)
    debian_version = ctx.read_text("/etc/debian_version")
    section = {
        "id": values.get("ID", "linux").lower() or None,
        "version_id": values.get("VERSION_ID") or None,
        "pretty_name": values.get("PRETTY_NAME") or None,
        "name": values.get("NAME") or None,
        "version_codename": values.get("VERSION_CODENAME") or values.get("UBUNTU_CODENAME") or None,
        "id_like": values.get("ID_LIKE") or None,
        "debian_version": debian_version.strip() if debian_version else None,
    }
    return Finding(section)


PROBE = Probe(
    name="os",
    section="os",
    layer=SOFTWARE,
    tags=frozenset({"os", "system"}),
    collect=collect,
)
