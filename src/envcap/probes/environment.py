"""Environment variables, by allow-list.

Only variables that change what software does keep their values (redacted where they
look secret); every other variable is recorded by name only. Variables that belong to
one job or one shell rather than to the environment (which GPUs this job sees, its
rank, the Slurm job) are kept as observations, outside every hash.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Callable

from . import SOFTWARE, Finding, Probe
from .context import Context

ALLOW = (
    "PATH", "LD_LIBRARY_PATH", "LD_PRELOAD", "LIBRARY_PATH", "CPATH",
    "PYTHONPATH", "PYTHONHOME", "PYTHONHASHSEED", "PYTHONNOUSERSITE", "PYTHONOPTIMIZE",
    "PYTHONSAFEPATH", "PYTHONUTF8", "PYTHONWARNINGS", "VIRTUAL_ENV",
    "CUDA_*", "CUDNN_*", "CUBLAS_*", "CUBLASLT_*", "NCCL_*", "NVIDIA_*", "NV_*",
    "OMP_*", "KMP_*", "MKL_*", "OPENBLAS_*", "BLIS_*", "VECLIB_*", "GOTO_NUM_THREADS",
    "TORCH_*", "PYTORCH_*", "TF_*", "XLA_*", "JAX_*", "HF_*", "TRANSFORMERS_*",
    "TOKENIZERS_PARALLELISM", "CONDA_*", "HIP_*", "ROCM_*", "HSA_*", "MIOPEN_*",
    "LANG", "LC_*", "TZ",
)
# Allowed, but per job or per shell: observed, never hashed.
VOLATILE = (
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES", "CONDA_SHLVL", "CONDA_PROMPT_MODIFIER", "CONDA_PREFIX_*",
    "SLURM_*", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
    "MASTER_PORT", "TORCHELASTIC_*",
)


def _matcher(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    """A test for names matching any of the shell-style ``patterns``.

    The built-in lists are plain names and ``PREFIX*`` patterns: a set and a tuple of
    prefixes answer those without compiling anything, which a snapshot would otherwise
    pay for on every start. Other patterns (from a user's config) go through fnmatch.
    """
    exact = {p for p in patterns if not _GLOB_CHARS.search(p)}
    prefixes = tuple(p[:-1] for p in patterns if p.endswith("*") and not _GLOB_CHARS.search(p[:-1]))
    rest = [p for p in patterns if p not in exact and p[:-1] not in prefixes]
    regex = re.compile("|".join(fnmatch.translate(p) for p in rest)).match if rest else None
    return lambda name: name in exact or name.startswith(prefixes) or (regex is not None and bool(regex(name)))


_GLOB_CHARS = re.compile(r"[*?\[]")


def collect(ctx: Context) -> Finding:
    if not ctx.live:
        return Finding(None)
    allowed = _matcher(ALLOW + ctx.env_allow)
    volatile_name = _matcher(VOLATILE)
    kept: dict[str, str] = {}
    volatile: dict[str, str] = {}
    names_only: list[str] = []
    for name in sorted(ctx.env):
        if volatile_name(name):
            volatile[name] = ctx.redactor.value(name, ctx.env[name])
        elif allowed(name):
            kept[name] = ctx.redactor.value(name, ctx.env[name])
        else:
            names_only.append(name)
    return Finding({"variables": kept}, {"variables": volatile, "other_names": names_only})


PROBE = Probe(
    name="environment",
    section="environment",
    layer=SOFTWARE,
    tags=frozenset({"environment", "env"}),
    collect=collect,
    reads_files=False,
)
