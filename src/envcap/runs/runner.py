"""``envcap run``: start the command, record the run around it, pass its signals on.

The command starts as soon as the first record is stored; the environment snapshot,
the storing of the code's bytes and the data fingerprints happen while it runs, so
the command never waits on envcap's bookkeeping beyond reading the git state.

Its standard streams are the terminal's (its output streams through untouched); envcap
writes only to standard error. SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2
are passed to it. A Ctrl-C typed at a terminal already reaches every process of the
foreground group, the command included, so SIGINT and SIGQUIT are passed on only when
they did not come from the terminal (the command would otherwise get two).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..core import proc
from ..core.errors import UsageError
from ..core.run import RunRecord
from .resources import Monitor, interval_from_env
from .session import Plan, Session

if TYPE_CHECKING:
    from ..store.base import StoreBackend
    from ..core.proc import Child

FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
_PYTHON_NAME = re.compile(r"^(python|pypy|graalpy)(\d+(\.\d+)?)?[tdm]?$")
# Programs that run the command that follows them (options and VAR=value first).
_WRAPPERS = frozenset({"env", "nohup", "nice", "time", "stdbuf", "taskset", "numactl", "ionice", "setsid"})


@dataclass(frozen=True, slots=True)
class PythonChoice:
    executable: str | None
    how: str  # "option", "command", "shebang", "virtual_env", "path", or "none"

    def to_dict(self) -> dict[str, Any]:
        return {"executable": self.executable, "from": self.how}


def which(name: str, env: Mapping[str, str], cwd: str) -> str | None:
    if os.sep in name:
        path = os.path.join(cwd, name)
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return shutil.which(name, path=env.get("PATH", os.defpath))


def resolve_python(argv: Sequence[str], *, option: str | None, env: Mapping[str, str], cwd: str) -> PythonChoice:
    """The Python interpreter a command will run: what its environment describes.

    ``--python`` when given; else the interpreter the command names (``python``,
    ``/opt/venv/bin/python``), or the one in the shebang of the program it names (a
    script, or a console script such as ``torchrun``); else the active virtual
    environment's; else the first ``python3`` on PATH.
    """
    if option:
        path = which(option, env, cwd)
        if path is None:
            raise UsageError(f"--python {option}: no such interpreter")
        return PythonChoice(os.path.abspath(path), "option")
    found = _from_command(list(argv), env, cwd)
    if found is not None:
        return found
    venv = env.get("VIRTUAL_ENV")
    if venv and os.path.isfile(os.path.join(venv, "bin", "python")):
        return PythonChoice(os.path.join(venv, "bin", "python"), "virtual_env")
    path = shutil.which("python3", path=env.get("PATH", os.defpath))
    return PythonChoice(path, "path" if path else "none")


def _from_command(argv: list[str], env: Mapping[str, str], cwd: str) -> PythonChoice | None:
    args = _skip_wrappers(argv)
    if not args:
        return None
    program = which(args[0], env, cwd)
    if program is None:
        return None
    if _PYTHON_NAME.match(os.path.basename(args[0])):
        return PythonChoice(os.path.abspath(program), "command")
    interpreter = _shebang(program)
    if interpreter is None:
        return None
    if os.path.basename(interpreter[0]) == "env":
        rest = [a for a in interpreter[1:] if not a.startswith("-")]
        if not rest:
            return None
        interpreter = rest
    name = os.path.basename(interpreter[0])
    if not _PYTHON_NAME.match(name):
        return None
    path = which(interpreter[0], env, cwd) if os.sep not in interpreter[0] else interpreter[0]
    if path is None or not os.path.exists(path):
        return None
    return PythonChoice(os.path.abspath(path), "shebang")


def _skip_wrappers(argv: list[str]) -> list[str]:
    args = list(argv)
    while args and os.path.basename(args[0]) in _WRAPPERS:
        args.pop(0)
        while args and (args[0].startswith("-") or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", args[0])):
            args.pop(0)
    return args


def _shebang(path: str) -> list[str] | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    parts = line.split()
    if parts and parts[0].endswith("/env") and len(parts) > 1 and parts[1] == "-S":
        parts = [parts[0], *parts[2:]]
    return parts or None


def check_command(argv: Sequence[str], env: Mapping[str, str], cwd: str) -> None:
    """Refuse, before anything is written, a command that cannot be started."""
    if not argv:
        raise UsageError("give the command to run after --, e.g. envcap run -- python train.py")
    if which(argv[0], env, cwd) is None:
        raise UsageError(f"{argv[0]}: command not found (or not executable)")


class _Forwarder:
    """Passes signals to the child; remembers those that arrive before it exists."""

    def __init__(self) -> None:
        self.child: Child | None = None
        self.pending: list[int] = []
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for name in FORWARDED:
            signum = getattr(signal, name, None)
            if signum is not None:
                self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def started(self, child: Child) -> None:
        self.child = child
        for signum in self.pending:
            self._send(signum)
        self.pending.clear()

    def stopped(self) -> None:
        self.child = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.received.append(signum)
        if self.child is None:
            self.pending.append(signum)
            return
        if signum in (signal.SIGINT, signal.SIGQUIT) and _from_terminal():
            return
        self._send(signum)

    def _send(self, signum: int) -> None:
        if self.child is not None and self.child.returncode is None:
            try:
                self.child.send_signal(signum)
            except ProcessLookupError:
                pass


def _from_terminal() -> bool:
    """Whether we are in the terminal's foreground process group (so a key press reached all)."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
        except OSError:
            continue
    return False


def exit_status(returncode: int) -> tuple[int, str | None]:
    """A Popen return code as (shell-style exit status, signal name)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return 128 - returncode, name
    return returncode, None


def plan_run(argv: Sequence[str], *, params: Sequence[str] = (), params_files: Sequence[str] = (),
             seeds: Sequence[str] = (), data: Sequence[str] = (), notes: Sequence[str] = (),
             labels: Sequence[str] = (), outputs: Sequence[str] = (), python: str | None = None,
             cwd: str | None = None) -> Plan:
    """Check everything a run is asked to do, before anything is started or written.

    ``params`` are ``name=value``; ``seeds`` are ``N`` (the global seed) or ``name=N``.
    """
    from ..capture.collect import parse_labels
    from ..core.redact import default_redactor
    from .params import ParamSet, parse_assignment, read_params_file
    from .seeds import check_seed

    cwd = cwd or os.getcwd()
    env = dict(os.environ)
    check_command(argv, env, cwd)
    param_set = ParamSet(default_redactor())
    files = [read_params_file(f) for f in params_files]
    for pf in files:
        param_set.update(pf.values, "user")
    for item in params:
        name, value = parse_assignment(item)
        param_set.set(name, value, "user")
    global_seed: int | None = None
    named: dict[str, int] = {}
    for item in seeds:
        name, sep, raw = item.rpartition("=")
        if sep:
            named[name.strip()] = check_seed(raw, f"--seed {item}")
        else:
            global_seed = check_seed(raw, f"--seed {item}")
    for path in [*data]:
        if not os.path.exists(os.path.join(cwd, path)):
            raise UsageError(f"--data {path}: no such file or directory")
    choice = resolve_python(argv, option=python, env=env, cwd=cwd)
    return Plan(argv=list(argv), cwd=cwd, mode="cli", params=param_set, params_files=files, seed=global_seed,
                named_seeds=named, data=[{"path": p} for p in data], outputs=list(outputs),
                labels=parse_labels(labels), notes=list(notes), python=choice.to_dict(),
                resource_interval=interval_from_env(env))


def execute(store: StoreBackend, plan: Plan, *, announce: Callable[[str], None] | None = None) -> RunRecord:
    """Run ``plan.argv`` as a recorded run; return the finished record."""
    from ..core.redact import default_redactor

    import shutil
    import tempfile

    env = dict(os.environ)
    session = Session(store, plan, default_redactor())
    forwarder = _Forwarder()
    forwarder.install()
    # The store's password, if any, reaches the command only through a libpq password
    # file in this private directory, removed when the run ends.
    private = tempfile.mkdtemp(prefix="envcap-run-")
    try:
        session.begin()
        child_env = _child_env(env, session, plan, private)
        if announce:
            announce(session.id)
        try:
            # The command's own streams are the terminal's, and its locale its own.
            child = proc.start(plan.argv, cwd=plan.cwd, env=child_env, stdin=None, c_locale=False)
        except OSError as exc:
            session.finish(127 if isinstance(exc, FileNotFoundError) else 126)
            raise UsageError(f"{plan.argv[0]}: cannot start it: {exc.strerror}") from exc
        forwarder.started(child)
        monitor = Monitor(child.pid, interval=plan.resource_interval).start()
        try:
            try:
                session.capture(plan.python.get("executable"))
            except Exception as exc:  # noqa: BLE001 - bookkeeping never stops the command
                print(f"envcap: warning: run {session.id}: {exc}", file=sys.stderr)
            returncode = monitor.wait(child)
        finally:
            if child.returncode is None:
                # envcap itself is failing: the child must not outlive the record of it.
                child.terminate()
                returncode = child.wait()
                monitor.stop()
        forwarder.stopped()
        code, sig = exit_status(returncode)
        return session.finish(code, sig, monitor=monitor)
    finally:
        forwarder.restore()
        shutil.rmtree(private, ignore_errors=True)


def _child_env(env: dict[str, str], session: Session, plan: Plan, private: str) -> dict[str, str]:
    import json

    from ..store.childenv import child_store_env, strip_password

    child = dict(env)
    inherited = child.get("ENVCAP_STORE")
    if inherited and strip_password(inherited)[1]:
        # The caller's own variable names a store with its password: never pass it on.
        child.update(child_store_env(inherited, private))
    child["ENVCAP_RUN_ID"] = session.id
    child["ENVCAP_RUN_DIR"] = session.dir
    child["ENVCAP_HOME"] = str(session.store.path)
    if session.store.url:
        # What the command records through envcap's API goes to the same shared store.
        child.update(child_store_env(session.store.url, private))
    child["ENVCAP_PARAMS"] = json.dumps(plan.params.raw_values(), sort_keys=True)
    if plan.seed is not None:
        child["ENVCAP_SEED"] = str(plan.seed)
    if plan.named_seeds:
        child["ENVCAP_SEEDS"] = json.dumps(plan.named_seeds, sort_keys=True)
    return child
