"""Facts about a Python interpreter, from inside it.

This file uses the standard library only and is run two ways: imported, for the
interpreter envcap itself runs in, and as ``PYTHON -c <this file's source>`` for
another interpreter (``--python``), so that nothing is imported into that interpreter
but what this file imports, and nothing of envcap's into envcap's own process.
"""

import json
import sys
import sysconfig

# Build settings that change compiled extensions or numerical behaviour.
BUILD_VARS = (
    "CC", "CXX", "CFLAGS", "LDFLAGS", "CONFIG_ARGS", "SOABI", "MULTIARCH",
    "HOST_GNU_TYPE", "Py_DEBUG", "Py_ENABLE_SHARED", "Py_GIL_DISABLED", "WITH_DOC_STRINGS",
)
_LEVELS = {"alpha": "a", "beta": "b", "candidate": "rc"}
_NAMES = {"cpython": "CPython", "pypy": "PyPy", "graalpy": "GraalPy", "ironpython": "IronPython"}


def info():
    v = sys.version_info
    version = "%d.%d.%d" % (v[0], v[1], v[2])
    if v[3] != "final":
        version += "%s%d" % (_LEVELS.get(v[3], v[3]), v[4])
    config = sysconfig.get_config_vars()
    build = {}
    for name in BUILD_VARS:
        value = config.get(name)
        if value is not None:
            build[name] = value if isinstance(value, str) else str(value)
    # The first entry of sys.path is the running script's directory (or "" for -c):
    # it says where envcap was started from, not what the interpreter can import.
    path = list(sys.path[1:]) if not getattr(sys.flags, "safe_path", False) else list(sys.path)
    return {
        "version": version,
        "implementation": _NAMES.get(sys.implementation.name, sys.implementation.name),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "base_prefix": sys.base_prefix,
        "path": [p for p in path if p],
        "build": build,
    }


if __name__ == "__main__":
    sys.stdout.write(json.dumps(info()))
