"""The operating system release, read through ``distro`` (os-release, lsb-release)."""

from __future__ import annotations

from . import SOFTWARE, Finding, Probe
from .context import Context


def collect(ctx: Context) -> Finding:
    import distro

    # distro reads /etc/os-release under root_dir; skipping lsb_release and uname keeps it
    # to file reads only, which is both faster and correct for a foreign tree.
    info = distro.LinuxDistribution(
        include_lsb=False,
        include_uname=False,
        root_dir=None if ctx.live else str(ctx.root),
    )
    if not info.os_release_info() and not ctx.exists("/etc/debian_version"):
        return Finding(None)
    debian_version = ctx.read_text("/etc/debian_version")
    section = {
        "id": info.id() or None,
        "version_id": info.os_release_attr("version_id") or None,
        "pretty_name": info.os_release_attr("pretty_name") or None,
        "name": info.os_release_attr("name") or None,
        "version_codename": info.codename() or None,
        "id_like": info.like() or None,
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
