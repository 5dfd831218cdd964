"""Whether envcap runs in a container, which kind, and the batch job around it.

Only the kind of container is hashed: two identical environments run under the same
runtime are the same platform. Everything that names this one container, pod, image
path or Slurm job differs from run to run, so it is observed and never hashed.

There is no one reliable sign of a container, so every cheap one is read: the marker
files runtimes leave (/.dockerenv, /run/.containerenv, /.singularity.d), the variables
they set, systemd's ``container`` convention, and the cgroup paths of PID 1 and of
envcap itself. The most specific runtime seen wins: a Kubernetes pod may also show
docker's or containerd's signs, an Apptainer image docker's /.dockerenv.
"""

from __future__ import annotations

import re
from typing import Any

from . import PLATFORM, Finding, Probe
from .context import Context

PRECEDENCE = ("kubernetes", "apptainer", "podman", "docker", "lxc", "systemd-nspawn", "containerd")

MARKER_FILES = (
    ("/.dockerenv", "docker"),
    ("/run/.containerenv", "podman"),
    ("/var/run/secrets/kubernetes.io", "kubernetes"),
    ("/run/secrets/kubernetes.io", "kubernetes"),
    ("/.singularity.d", "apptainer"),
)
MARKER_VARS = (
    ("KUBERNETES_SERVICE_HOST", "kubernetes"),
    ("APPTAINER_CONTAINER", "apptainer"),
    ("SINGULARITY_CONTAINER", "apptainer"),
)
# systemd's convention: the manager of a container sets $container for its PID 1, and
# systemd inside copies it to /run/systemd/container.
SYSTEMD_CONTAINER_FILE = "/run/systemd/container"
_SYSTEMD_CONTAINER_VALUES = {"lxc-libvirt": "lxc", "oci": "oci"}
CGROUP_FILES = ("/proc/1/cgroup", "/proc/self/cgroup")
MOUNTINFO = "/proc/self/mountinfo"
K8S_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

# Cgroup path forms, most specific first: a pod's containers also sit in docker-,
# cri-containerd- or crio- scopes, under kubepods.
_CGROUP_RUNTIMES = (
    ("kubernetes", re.compile(r"kubepods")),
    ("podman", re.compile(r"libpod[-_/]")),
    ("docker", re.compile(r"docker[-/][0-9a-f]{12,}")),
    ("lxc", re.compile(r"/lxc(?:\.payload)?[./]")),
    ("containerd", re.compile(r"containerd[-/][0-9a-f]{12,}")),
)
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
# docker's /var/lib/docker/containers/<id>/hostname and podman's
# .../overlay-containers/<id>/userdata/hostname, bind-mounted into the container.
_MOUNTED_ID = re.compile(r"containers/([0-9a-f]{64})/")

SLURM_VARS = (
    "SLURM_CLUSTER_NAME",
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_JOB_PARTITION",
    "SLURM_JOB_ACCOUNT",
    "SLURM_JOB_QOS",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_STEP_ID",
    "SLURM_JOB_NODELIST",
    "SLURM_NODELIST",
    "SLURM_JOB_NUM_NODES",
    "SLURM_NTASKS",
    "SLURM_TASKS_PER_NODE",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_NODEID",
    "SLURM_CPUS_ON_NODE",
    "SLURM_GPUS_ON_NODE",
    "SLURM_JOB_GPUS",
    "SLURM_SUBMIT_HOST",
)
APPTAINER_VARS = ("APPTAINER_CONTAINER", "APPTAINER_NAME", "SINGULARITY_CONTAINER", "SINGULARITY_NAME")


def collect(ctx: Context) -> Finding:
    signals = detect(ctx)
    runtime = choose_runtime(signals)
    observed: dict[str, Any] = {}
    if runtime is not None:
        observed["evidence"] = sorted({why for whys in signals.values() for why in whys})
        observed.update(_identity(ctx, runtime))
    slurm = _env_subset(ctx, SLURM_VARS)
    if slurm:
        observed["slurm"] = slurm
    return Finding({"runtime": runtime} if runtime else None, observed)


def detect(ctx: Context) -> dict[str, list[str]]:
    """Each runtime whose signs are present, with the signs seen."""
    signals: dict[str, list[str]] = {}
    for path, runtime in MARKER_FILES:
        if ctx.exists(path):
            signals.setdefault(runtime, []).append(path)
    for var, runtime in MARKER_VARS:
        if ctx.env.get(var):
            signals.setdefault(runtime, []).append(f"${var}")
    kind = ctx.env.get("container") or (ctx.read_text(SYSTEMD_CONTAINER_FILE) or "").strip()
    if kind:
        signals.setdefault(_SYSTEMD_CONTAINER_VALUES.get(kind, kind), []).append(f"container={kind}")
    for path in CGROUP_FILES:
        named, _ = parse_cgroup(ctx.read_text(path) or "")
        if named:
            signals.setdefault(named, []).append(path)
    return signals


def choose_runtime(signals: dict[str, list[str]]) -> str | None:
    for runtime in PRECEDENCE:
        if runtime in signals:
            return runtime
    return min(signals) if signals else None


def parse_cgroup(text: str) -> tuple[str | None, str | None]:
    """(runtime, container id) named by a /proc/PID/cgroup file's paths, if any."""
    paths = [line.split(":", 2)[2] for line in text.splitlines() if line.count(":") >= 2]
    for runtime, pattern in _CGROUP_RUNTIMES:
        for path in paths:
            if pattern.search(path):
                ids = _CONTAINER_ID.findall(path)
                return runtime, ids[-1] if ids else None
    return None, None


def parse_containerenv(text: str) -> dict[str, str]:
    """podman's /run/.containerenv: ``key="value"`` lines (engine, name, id, image...)."""
    out = {}
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq and key.strip():
            out[key.strip()] = value.strip().strip('"')
    return out


def _identity(ctx: Context, runtime: str) -> dict[str, Any]:
    """What names this container: its id, name, image, pod. Observed, never hashed."""
    out: dict[str, Any] = {}
    containerenv = parse_containerenv(ctx.read_text("/run/.containerenv") or "")
    for key in ("engine", "name", "image", "imageid", "rootless"):
        if containerenv.get(key):
            out[key] = ctx.redactor.text(containerenv[key])
    container_id = _container_id(ctx) or containerenv.get("id")
    if container_id:
        out["container_id"] = container_id
    if runtime == "kubernetes":
        out["kubernetes"] = _kubernetes(ctx)
    apptainer = _env_subset(ctx, APPTAINER_VARS)
    if apptainer:
        out["apptainer"] = apptainer
    return out


def _container_id(ctx: Context) -> str | None:
    for path in CGROUP_FILES:
        _, found = parse_cgroup(ctx.read_text(path) or "")
        if found:
            return found
    # With cgroup namespaces (cgroup v2) the paths are "/", but the runtime's own files
    # mounted into the container still carry the id in their source path.
    match = _MOUNTED_ID.search(ctx.read_text(MOUNTINFO) or "")
    return match.group(1) if match else None


def _kubernetes(ctx: Context) -> dict[str, str]:
    out = {}
    namespace = (ctx.read_text(K8S_NAMESPACE_FILE) or "").strip()
    if namespace:
        out["namespace"] = namespace
    # A pod's hostname is its name unless the pod spec sets another.
    if ctx.env.get("HOSTNAME"):
        out["pod"] = ctx.env["HOSTNAME"]
    return out


def _env_subset(ctx: Context, names: tuple[str, ...]) -> dict[str, str]:
    return {name: ctx.redactor.value(name, ctx.env[name]) for name in names if ctx.env.get(name)}


PROBE = Probe(
    name="container",
    section="container",
    layer=PLATFORM,
    tags=frozenset({"container", "platform"}),
    collect=collect,
    reads_files=True,
)
