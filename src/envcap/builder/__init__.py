"""Rebuilding environments: lockfiles, Dockerfiles, images in an OCI registry.

``lock`` turns a manifest into lockfiles from what it already pins (no resolution);
``render`` turns a manifest and its lockfiles into a Dockerfile; ``pipeline`` builds,
checks (``fidelity``) and pushes the image and records it in the store. The registry
client is fenced into ``registry``; the engines are :mod:`envcap.engines`.
"""
