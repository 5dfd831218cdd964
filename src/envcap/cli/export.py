"""The ``envcap export``, ``attest``, ``sign`` and ``keygen`` commands, and ``envcap verify
--signature``: click code only.

The work is in :mod:`envcap.export` (and, for run bundles, :mod:`envcap.runs.bundle`).
"""

from __future__ import annotations

import sys

import click

from .common import err, open_store

FORMATS = ("bundle", "cyclonedx", "spdx", "ro-crate")


@click.command()
@click.argument("ref", metavar="RUN|ENV")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="bundle", show_default=True,
              help="bundle: a run's envcap bundle (.zip). cyclonedx, spdx: an SBOM of an environment. "
                   "ro-crate: a Research Object Crate of a run (a directory, or a .zip).")
@click.option("-o", "--output", metavar="FILE", help="Where to write it (an SBOM goes to standard output without it).")
@click.option("--carry-limit", metavar="SIZE",
              help="bundle: carry the dependencies no index serves (local wheels, local git repositories) up to "
                   "SIZE in all (default 100M, or ENVCAP_CARRY_LIMIT).")
def export(ref: str, fmt: str, output: str | None, carry_limit: str | None) -> None:
    """Export a run (bundle, RO-Crate) or an environment (CycloneDX or SPDX SBOM).

    \b
    envcap export RUN -o bundle.zip
    envcap export ENV --format cyclonedx -o sbom.cdx.json
    envcap export ENV --format spdx -o sbom.spdx.json
    envcap export RUN --format ro-crate -o run-crate.zip
    ENV is a manifest file, a stored manifest id or prefix, or a run (its environment).
    """
    from ..core.errors import UsageError

    if fmt in ("cyclonedx", "spdx"):
        _sbom(ref, fmt, output)
        return
    if not output:
        raise UsageError(f"--format {fmt} writes files: give -o FILE")
    from ..store import runs as runs_store

    with open_store() as store:
        run_id = runs_store.resolve(store, ref)
        if fmt == "bundle":
            from ..runs.bundle import export_run
            from ..store.carried import parse_size

            count = export_run(store, run_id, output, carry_limit=parse_size(carry_limit) if carry_limit else None)
        else:
            from ..export.crate import export_crate

            count = export_crate(store, run_id, output)
    click.echo(f"exported run {run_id} to {output} ({count} files)")


def _sbom(ref: str, fmt: str, output: str | None) -> None:
    from ..core.files import write_text_atomic
    from ..export.inventory import counts
    from ..export.sbom import sbom
    from ..store.resolve import resolve_manifest

    # An SBOM describes the manifest: the observations it carries (time, host) are those of
    # its first snapshot, so that another snapshot of it changes no byte.
    manifest = resolve_manifest(ref, earliest=True)
    text = sbom(manifest, fmt)
    if not output:
        click.echo(text, nl=False)
        return
    write_text_atomic(output, text)
    listed = ", ".join(f"{n} {name}" for name, n in counts(manifest).items()) or "no packages"
    click.echo(f"wrote {output}: {fmt} SBOM of env {manifest.env_id} ({listed})")


@click.command()
@click.argument("ref", metavar="RUN|IMAGE")
@click.option("-o", "--output", metavar="FILE", help="Write the statement to FILE (default: standard output).")
def attest(ref: str, output: str | None) -> None:
    """An in-toto statement of a run, or SLSA provenance of an image envcap built.

    IMAGE is REPOSITORY@DIGEST, REPOSITORY:TAG, an image digest, or an env id (its
    newest image), as `envcap images` lists them.
    """
    from ..core.files import write_text_atomic
    from ..export.attest import attest as make

    with open_store() as store:
        what, text = make(store, ref)
    if not output:
        click.echo(text, nl=False)
        return
    write_text_atomic(output, text)
    click.echo(f"wrote {output}: in-toto statement of {what}")


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--key", metavar="KEY", help="The private key (default: envcap's local key, made on first use).")
@click.option("-o", "--output", metavar="SIG", help="Where to write the signature (default: FILE.sig).")
def sign(file: str, key: str | None, output: str | None) -> None:
    """Sign FILE (a bundle, an attestation, a crate) with a local ed25519 key."""
    from ..export.sign import sign as do_sign

    signed = do_sign(file, key=key, output=output)
    if signed.generated:
        err(f"made a new signing key {signed.generated.private} (public key: {signed.generated.public})")
    click.echo(f"signed {file} ({signed.digest}) with key {signed.key_id}: {signed.signature}")


@click.command()
@click.option("--key", metavar="KEY", help="Where to write the private key (default: envcap's local key).")
@click.option("--force", is_flag=True, help="Replace an existing key.")
def keygen(key: str | None, force: bool) -> None:
    """Make an ed25519 signing key (private key mode 0600) and its public key."""
    from ..export.sign import keygen as make

    made = make(key, force=force)
    click.echo(f"private key {made.private}\npublic key  {made.public}  (give this to whoever verifies)\n"
               f"key id      {made.key_id}")


def verify_signature(file: str | None, signature: str | None, key: str | None) -> None:
    """``envcap verify [--signature SIG] FILE``: exit 0 when FILE verifies, 1 when not."""
    from ..core.errors import UsageError
    from ..export.sign import SignatureError, verify

    if file is None:
        raise UsageError("--signature checks a FILE: envcap verify --signature SIG FILE")
    try:
        done = verify(file, signature or f"{file}.sig", key=key)
    except SignatureError as exc:
        err(f"not verified: {exc}")
        sys.exit(exc.exit_code)
    click.echo(f"verified {file} ({done.digest}): signed by key {done.key_id}")
