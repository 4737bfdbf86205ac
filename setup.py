"""Build hook: a wheel of certpilot carries the repository's data files.

`config/*.toml`, `automations/*.yaml` and `prefect.yaml` stay at the repository root (the one
copy anyone edits). A wheel installs packages only, so building one copies them into the built
package as `certpilot/defaults/`, where `certpilot.resources.data_path` finds them. Everything
else is declared in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DATA = (("config", "*.toml"), ("automations", "*.yaml"), ("", "prefect.yaml"))


class BuildPyWithData(build_py):
    """`build_py`, then the data files copied into `<build>/certpilot/defaults/`."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout itself
            return
        target = Path(self.build_lib) / "certpilot" / "defaults"
        for folder, pattern in DATA:
            for source in sorted((ROOT / folder).glob(pattern)):
                destination = target / folder / source.name
                destination.parent.mkdir(parents=True, exist_ok=True)
                self.copy_file(str(source), str(destination))


setup(cmdclass={"build_py": BuildPyWithData})
