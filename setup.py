"""Ship the repository's top-level assets/ inside the wheel as storytui/assets/.

storytui.paths.assets_dir() looks there first, so an installed wheel finds the tokenizer and the
bundled default model just like a clone does.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithAssets(build_py):
    def run(self) -> None:
        super().run()
        source = Path(__file__).parent / "assets"
        if source.is_dir() and not self.editable_mode:
            shutil.copytree(
                source, Path(self.build_lib) / "storytui" / "assets", dirs_exist_ok=True
            )


setup(cmdclass={"build_py": BuildWithAssets})
