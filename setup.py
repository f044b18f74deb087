"""What pyproject.toml cannot say: two things at the top of the source tree go into the package.

- `plugins/`, the built-in notifier plugins (operators add theirs beside them), becomes the package
  folder `notifier/builtin_plugins/`, where `notifier.fanout.discovery` finds it in an installed
  copy. Installed as `plugins/` it would sit in site-packages as a top-level name anyone's
  `plugins` package could claim.
- `config.yaml`, the commented configuration, is copied to `notifier/cli/config.yaml`: what
  `notifier init` writes.

Both stay one file or folder in the tree (tests/packaging checks the wheel holds them as they are).
An editable install (`pip install -e .`, what scripts/venv.sh makes) reads both from the tree.
Everything else (name, dependencies, the `notifier` command) is in pyproject.toml.
"""

from __future__ import annotations

import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


class BuildPyWithStarterConfig(build_py):
    """`build_py`, plus the project's config.yaml copied into the built package."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            target = os.path.join(self.build_lib, "notifier", "cli", "config.yaml")
            self.copy_file("config.yaml", target, preserve_mode=False)


setup(
    packages=[*find_packages(include=["notifier", "notifier.*"]), "notifier.builtin_plugins"],
    package_dir={"notifier.builtin_plugins": "plugins"},
    cmdclass={"build_py": BuildPyWithStarterConfig},
)
