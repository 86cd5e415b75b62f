"""The architecture is checked by the test command: the layers and plugin contracts of
`.importlinter` (`lint-imports`) hold, so a back-edge between layers fails CI; and the types of
`harness/` and `comparators/` check (`mypy`, configured in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run an installed console tool from this interpreter's environment, in the repo root."""
    exe = Path(sys.executable).with_name(tool)
    command = [str(exe) if exe.exists() else shutil.which(tool) or tool, *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_layers_point_one_way_and_comparators_are_plugins():
    result = run("lint-imports", "--no-cache")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "3 kept, 0 broken" in result.stdout


def test_types_check():
    result = run("mypy")
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "Success: no issues found" in result.stdout
