"""The container probe against trees and environments of each kind of container."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import pytest

from envcap.probes import Finding, container_context as container
from envcap.probes.context import Context

TESTDATA = Path(__file__).resolve().parents[1] / "testdata"
TREES = TESTDATA / "containers"
KINDS = sorted(p.name for p in TREES.iterdir() if p.is_dir())


def tree(name: str, env: Mapping[str, str] | None = None) -> Context:
    """A context over a fixture tree, with an environment as if read inside it.

    Context(root=...) has an empty environment (a tree's own is unknown), so a test that
    needs both sets it afterwards.
    """
    ctx = Context(TREES / name / "fstree")
    if env is not None:
        ctx.env = dict(env)
    return ctx


def runtime_of(ctx: Context) -> str | None:
    section = container.collect(ctx).section
    return None if section is None else section["runtime"]


def ids_in(path: Path) -> set[str]:
    return set(re.findall(r"[0-9a-f]{64}", path.read_text()))


def test_every_kind_of_tree_is_recognised() -> None:
    assert len(KINDS) >= 6
    for kind in KINDS:
        expected = kind.split("-")[0]
        assert runtime_of(tree(kind)) == expected, kind


def test_section_holds_only_the_runtime() -> None:
    finding = container.collect(tree("podman"))
    assert finding.section == {"runtime": "podman"}


@pytest.mark.parametrize(
    ("kind", "id_source"),
    [
        ("docker-cgroupv1", "proc/1/cgroup"),
        ("docker-cgroupv2", "proc/self/mountinfo"),
        ("podman", "proc/self/mountinfo"),
        ("kubernetes", "proc/self/cgroup"),
    ],
)
def test_container_id_is_observed(kind: str, id_source: str) -> None:
    finding = container.collect(tree(kind))
    assert {finding.observed["container_id"]} == ids_in(TREES / kind / "fstree" / id_source)
    assert finding.observed["container_id"] not in str(finding.section)


def test_podman_containerenv_is_observed() -> None:
    containerenv = (TREES / "podman/fstree/run/.containerenv").read_text()
    observed = container.collect(tree("podman")).observed
    for key in ("engine", "name", "image"):
        assert f'{key}="{observed[key]}"' in containerenv
    assert f'id="{observed["container_id"]}"' in containerenv


def test_kubernetes_from_environment_and_namespace_file() -> None:
    ctx = tree("kubernetes", {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "HOSTNAME": "train-7f9c6-xk2lp"})
    finding = container.collect(ctx)
    namespace = (TREES / "kubernetes/fstree/run/secrets/kubernetes.io/serviceaccount/namespace").read_text()
    assert finding.section == {"runtime": "kubernetes"}
    assert finding.observed["kubernetes"] == {"namespace": namespace, "pod": "train-7f9c6-xk2lp"}
    assert "$KUBERNETES_SERVICE_HOST" in finding.observed["evidence"]


def test_kubernetes_env_alone_is_enough(tmp_path: Path) -> None:
    ctx = Context(tmp_path)
    ctx.env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}
    assert runtime_of(ctx) == "kubernetes"


def test_apptainer_with_slurm_job() -> None:
    env = {
        "APPTAINER_CONTAINER": "/scratch/alice/images/pytorch-24.05.sif",
        "APPTAINER_NAME": "pytorch-24.05.sif",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "pretrain",
        "SLURM_CLUSTER_NAME": "hpc1",
        "SLURM_JOB_NODELIST": "gpu[001-004]",
        "SLURM_PROCID": "3",
        "SLURM_JOB_PASSWORD": "hunter2",  # not a Slurm variable envcap keeps
    }
    finding = container.collect(tree("apptainer", env))
    assert finding.section == {"runtime": "apptainer"}
    assert finding.observed["apptainer"]["APPTAINER_CONTAINER"] == env["APPTAINER_CONTAINER"]
    kept = {k: v for k, v in env.items() if k.startswith("SLURM_") and k != "SLURM_JOB_PASSWORD"}
    assert finding.observed["slurm"] == kept


def test_singularity_variables_mean_apptainer(tmp_path: Path) -> None:
    ctx = Context(tmp_path)
    ctx.env = {"SINGULARITY_CONTAINER": "/images/old.simg"}
    assert runtime_of(ctx) == "apptainer"


def test_systemd_container_variable(tmp_path: Path) -> None:
    ctx = Context(tmp_path)
    ctx.env = {"container": "systemd-nspawn"}
    assert runtime_of(ctx) == "systemd-nspawn"


def test_slurm_is_observed_outside_containers(tmp_path: Path) -> None:
    ctx = Context(tmp_path)
    ctx.env = {"SLURM_JOB_ID": "77", "SLURM_NODELIST": "node17", "PATH": "/usr/bin"}
    finding = container.collect(ctx)
    assert finding.section is None
    assert finding.observed == {"slurm": {"SLURM_JOB_ID": "77", "SLURM_NODELIST": "node17"}}


def test_the_h200_vm_is_not_a_container() -> None:
    # A Firecracker VM: its /proc/1/cgroup names a cgroup of its own, no runtime's.
    finding = container.collect(Context(TESTDATA / "gpu-h200-ubuntu24/fstree"))
    assert (TESTDATA / "gpu-h200-ubuntu24/fstree/proc/1/cgroup").read_text().strip() == "0::/process_api/core"
    assert finding.section is None and finding.observed == {}


def test_nothing_is_quietly_absent(tmp_path: Path) -> None:
    assert container.collect(Context(tmp_path)) == Finding(None)


def test_a_host_docker_service_cgroup_is_not_a_container() -> None:
    assert container.parse_cgroup("0::/system.slice/docker.service\n") == (None, None)
    assert container.parse_cgroup("0::/system.slice/containerd.service\n") == (None, None)


def test_live_machine_agrees_with_its_marker_files() -> None:
    finding = container.collect(Context("/"))
    runtime = None if finding.section is None else finding.section["runtime"]
    if os.path.exists("/.dockerenv"):
        assert runtime in {"docker", "kubernetes", "apptainer"}
    if runtime is None:
        assert not any(os.path.exists(p) for p, _ in container.MARKER_FILES)


def test_probe_registration() -> None:
    assert container.PROBE.name == "container" and container.PROBE.layer == "platform"
    assert container.PROBE.tags == {"container", "platform"}
