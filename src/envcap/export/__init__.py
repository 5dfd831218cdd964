"""Provenance out: envcap's records in the formats other tools read.

- :mod:`.inventory`: a manifest's packages (Python, system, conda) with purls and hashes.
- :mod:`.sbom`: CycloneDX and SPDX documents of a manifest.
- :mod:`.attest`: in-toto statements: SLSA provenance of a built image, and of a run.
- :mod:`.crate`: a Research Object Crate of a run.
- :mod:`.sign`: ed25519 keys, detached signatures and their verification.

Each is written with the field's own library (``pip install 'envcap[export]'``),
imported only when that format is asked for. Nothing here reads the live machine or its
environment: every export is made of records that were redacted when they were taken.
"""
