"""One build step on top of pyproject.toml: the image templates ship inside the wheel.

``images/`` and ``Dockerfile.base`` live at the top of the repository, where a reader of
the project finds them; a wheel carries copies in ``envcap/builder/`` so that an installed
envcap finds them without a checkout (envcap.builder.base.images_dir looks there first,
then at the top of a source checkout).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

TOP = Path(__file__).resolve().parent
TEMPLATES = ("images", "Dockerfile.base")


class build_py_with_templates(build_py):  # noqa: N801 - setuptools' own naming
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads them from the checkout itself
        dest = Path(self.build_lib) / "envcap" / "builder"
        for name in TEMPLATES:
            source, target = TOP / name, dest / name
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns(".*", "*~", "__pycache__"))
            else:
                shutil.copyfile(source, target)


setup(cmdclass={"build_py": build_py_with_templates})
