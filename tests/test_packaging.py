"""Packaging: the wheel installs one namespace, `interlock`, into a fresh venv and imports."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from this checkout with the installed setuptools (no network)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("interlock-*.whl")
    return path


def test_wheel_holds_only_the_interlock_namespace(wheel: Path) -> None:
    """No generic top-level module (kernel, actors, ...) is ever installed, and py.typed ships."""
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"interlock"}
    assert "interlock/py.typed" in names
    assert any(n.startswith("interlock/actors/") for n in names)
    assert any(n.startswith("interlock/adapters/") for n in names)
    assert any(n.startswith("interlock/policies/") for n in names)


def test_wheel_installs_into_a_fresh_venv_and_imports(wheel: Path, tmp_path: Path) -> None:
    """The built wheel installs into a new venv, and interlock and its subpackages import from it."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    # Dependencies come from the test environment's site-packages; its editable-install hook
    # lives in a .pth file, which PYTHONPATH entries do not run, so interlock is the wheel's.
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    code = (
        "import interlock, interlock.actors, interlock.adapters, interlock.policies, sys;"
        "print(interlock.__file__); print(interlock.ChatRequest.__module__)"
    )
    run = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True, env=env, cwd=tmp_path)
    out = run.stdout
    assert str(env_dir) in out.splitlines()[0]
    assert out.splitlines()[1] == "interlock._types"
    for generic in ("kernel", "actors", "adapters", "policies"):
        probe = f"import importlib.util,sys; sys.exit(importlib.util.find_spec({generic!r}) is not None)"
        assert subprocess.run([python, "-c", probe], env={**env, "PYTHONPATH": ""}, cwd=tmp_path).returncode == 0


def test_wheel_ships_every_source_module(wheel: Path) -> None:
    """Every module of the four rooms, nested folders included, is in the wheel at its installed path."""
    names = set(zipfile.ZipFile(wheel).namelist())
    rooms = {"kernel": "interlock", "actors": "interlock/actors", "adapters": "interlock/adapters",
             "policies": "interlock/policies"}
    for folder, installed in rooms.items():
        for source in (ROOT / folder).rglob("*.py"):
            if folder == "kernel" and source.parent != ROOT / "kernel":
                continue
            assert f"{installed}/{source.relative_to(ROOT / folder).as_posix()}" in names, source
