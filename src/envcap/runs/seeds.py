"""Seeds at every level, each named, and the determinism switches in force.

:func:`seed_everything` seeds Python's ``random``, numpy, torch (CPU and every CUDA
device) and TensorFlow, and sets ``PYTHONHASHSEED`` for child processes. A library
that is installed but not yet imported is not imported here (that would cost the script
seconds for torch): it is seeded the moment the script first imports it. JAX keeps no
global random state; :meth:`Seeds.jax_key` gives a key derived from the seed.

Named child seeds (``seeds.child("shuffle")``) are derived from the global seed by
hashing, so they are the same for the same global seed on every machine and unrelated
to one another. Every seed set or derived is reported to a recorder (the run), as is
the state of the determinism switches.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import random
import sys
from typing import Any, Callable

from ..core.errors import UsageError

Recorder = Callable[[str, dict[str, Any]], None]

_LIBRARIES = ("numpy", "torch", "tensorflow")
_ENV_SWITCHES = (
    "PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG", "CUDA_LAUNCH_BLOCKING", "TF_DETERMINISTIC_OPS",
    "TF_CUDNN_DETERMINISTIC", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS", "XLA_FLAGS",
)
SEED_MAX = 2**32  # what every library accepts (numpy's legacy seeding takes no more)


def derive(seed: int, name: str) -> int:
    """A named child seed: the same for the same (seed, name) everywhere, in [0, 2**32)."""
    data = f"envcap.seed/1:{seed}:{name}".encode()
    return int.from_bytes(hashlib.sha256(data).digest()[:4], "big")


def check_seed(seed: Any, what: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        try:
            seed = int(str(seed), 0)
        except ValueError as exc:
            raise UsageError(f"{what} must be an integer, not {seed!r}") from exc
    if not 0 <= seed < 2**63:
        raise UsageError(f"{what} must be between 0 and 2**63-1, not {seed}")
    return int(seed)


class Seeds:
    """The seeds of one run: a global seed and the named children derived from it."""

    def __init__(self, seed: int, recorder: Recorder | None = None, named: dict[str, int] | None = None) -> None:
        self.seed = seed
        self._recorder = recorder
        # Named seeds given outright (``envcap run --seed shuffle=5``) win over derivation.
        self._given: dict[str, int] = dict(named or {})
        self.named: dict[str, int] = dict(self._given)

    def __int__(self) -> int:
        return self.seed

    def __repr__(self) -> str:
        return f"Seeds({self.seed}, named={self.named})"

    def child(self, name: str) -> int:
        """The seed for one purpose: ``child("shuffle")``, ``child("augment")``, ``child("worker-3")``."""
        if not isinstance(name, str) or not name:
            raise UsageError("a seed's name must be non-empty text")
        value = self._given[name] if name in self._given else derive(self.seed, name)
        if self.named.get(name) != value:
            self.named[name] = value
            self._record("seed_named", {"name": name, "value": value, "from": self.seed})
        return value

    def jax_key(self, name: str | None = None) -> Any:
        """A ``jax.random.PRNGKey`` for the global seed, or for a named child."""
        import jax  # type: ignore[import-not-found]  # The caller asked for a JAX key: JAX is theirs.

        value = self.seed % SEED_MAX if name is None else self.child(name)
        self._record("seed_set", {"library": "jax", "seed": value, "how": "jax.random.PRNGKey"})
        return jax.random.PRNGKey(value)

    def to_dict(self) -> dict[str, Any]:
        return {"global": self.seed, "named": dict(sorted(self.named.items()))}

    def _record(self, kind: str, event: dict[str, Any]) -> None:
        if self._recorder is not None:
            self._recorder(kind, event)


def seed_everything(seed: int, *, deterministic: bool = False, recorder: Recorder | None = None,
                    named: dict[str, int] | None = None) -> Seeds:
    """Seed every random number generator in reach; return the run's :class:`Seeds`.

    ``named`` are named seeds given outright: ``child(name)`` returns them as they are.
    """
    seed = check_seed(seed)
    seeds = Seeds(seed, recorder, {k: check_seed(v, f"seed {k}") for k, v in (named or {}).items()})
    record = seeds._record
    record("seed_global", {"value": seed})
    small = seed % SEED_MAX
    random.seed(seed)
    record("seed_set", {"library": "random", "seed": seed, "how": "random.seed"})
    os.environ["PYTHONHASHSEED"] = str(small)
    record("seed_set", {"library": "PYTHONHASHSEED", "seed": small, "how": "environment of child processes"})
    if deterministic:
        # Read by cuBLAS and TensorFlow when they start: set before anything is seeded.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    for name in _LIBRARIES:
        if name in sys.modules:
            _seed_library(name, seed, deterministic, record, "already imported")
        elif _installed(name):
            _HOOK.arm(name, functools.partial(_seed_library, name, seed, deterministic, record, "when imported"))
    record("determinism", determinism_state())
    return seeds


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _seed_library(name: str, seed: int, deterministic: bool, record: Recorder, when: str) -> None:
    small = seed % SEED_MAX
    try:
        if name == "numpy":
            np = sys.modules["numpy"]
            np.random.seed(small)
            record("seed_set", {"library": "numpy", "seed": small, "how": f"numpy.random.seed ({when})"})
        elif name == "torch":
            torch = sys.modules["torch"]
            torch.manual_seed(seed)  # Seeds the CPU generator and every CUDA device's.
            record("seed_set", {"library": "torch", "seed": seed, "how": f"torch.manual_seed ({when})"})
            cuda = getattr(torch, "cuda", None)
            if cuda is not None and cuda.is_available():
                cuda.manual_seed_all(seed)
                record("seed_set", {"library": "torch.cuda", "seed": seed, "how": "torch.cuda.manual_seed_all"})
            if deterministic:
                torch.use_deterministic_algorithms(True)
                torch.backends.cudnn.deterministic = True
                torch.backends.cudnn.benchmark = False
        elif name == "tensorflow":
            tf = sys.modules["tensorflow"]
            tf.random.set_seed(small)
            record("seed_set", {"library": "tensorflow", "seed": small, "how": f"tf.random.set_seed ({when})"})
            if deterministic and hasattr(tf.config.experimental, "enable_op_determinism"):
                tf.config.experimental.enable_op_determinism()
    except Exception as exc:  # noqa: BLE001 - a library that cannot be seeded is reported, not fatal
        record("seed_set", {"library": name, "seed": None, "how": f"failed: {type(exc).__name__}: {exc}"})
    if when == "when imported":
        record("determinism", determinism_state())


def determinism_state() -> dict[str, Any]:
    """The switches that decide whether a run can repeat itself bit for bit."""
    state: dict[str, Any] = {"env": {k: os.environ[k] for k in _ENV_SWITCHES if k in os.environ}}
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            state["torch"] = {
                "cudnn.deterministic": bool(torch.backends.cudnn.deterministic),
                "cudnn.benchmark": bool(torch.backends.cudnn.benchmark),
                "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
                "num_threads": int(torch.get_num_threads()),
                "num_interop_threads": int(torch.get_num_interop_threads()),
            }
        except Exception as exc:  # noqa: BLE001 - reported, never fatal
            state["torch"] = {"error": f"{type(exc).__name__}: {exc}"}
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        try:
            state["tensorflow"] = {
                "intra_op_threads": int(tf.config.threading.get_intra_op_parallelism_threads()),
                "inter_op_threads": int(tf.config.threading.get_inter_op_parallelism_threads()),
            }
        except Exception as exc:  # noqa: BLE001 - reported, never fatal
            state["tensorflow"] = {"error": f"{type(exc).__name__}: {exc}"}
    state["cpu_count"] = os.cpu_count()
    return state


class _SeedOnImport(importlib.abc.MetaPathFinder):
    """Seeds a library right after its first import, without importing it ourselves."""

    def __init__(self) -> None:
        self.pending: dict[str, Callable[[], None]] = {}

    def arm(self, name: str, seeder: Callable[[], None]) -> None:
        self.pending[name] = seeder
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.pending:
            return None
        spec = None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        seeder = self.pending.pop(fullname)
        spec.loader = _SeedingLoader(spec.loader, seeder)
        return spec


class _SeedingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, seeder: Callable[[], None]) -> None:
        self._loader = loader
        self._seeder = seeder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        # The module gets its own loader back, so that nothing it does later sees ours.
        module.__loader__ = self._loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        self._seeder()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


_HOOK = _SeedOnImport()
