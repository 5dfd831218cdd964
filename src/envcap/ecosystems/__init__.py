"""Ecosystems: one plug-in per package world (Python, system packages, conda).

Each ecosystem is a folder holding its probe (what is installed), its typed section
record, its lockfile lines and its Dockerfile steps, so that adding a package world
means adding a folder rather than editing every wing of envcap.
"""
