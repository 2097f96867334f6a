"""The package as a user gets it: what the wheel and the sdist hold, and that the wheel
runs from where it is installed. Built offline from this tree (no build isolation)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _build(kind: str, out: Path) -> Path:
    if kind == "wheel":
        cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
        cmd += ["--no-build-isolation", "--wheel-dir", str(out), str(ROOT)]
    else:
        cmd = [sys.executable, "setup.py", "--quiet", "sdist", "--dist-dir", str(out)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, timeout=300)
    (built,) = out.iterdir()
    return built


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build("wheel", tmp_path_factory.mktemp("wheel"))


def test_the_wheel_holds_the_licence_the_auth_contract_and_nothing_at_the_top(
    wheel: Path,
) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    assert "amqpprox/proxy/proto/authproto.proto" in names
    assert "amqpprox/openapi.yaml" in names
    # Everything installs below the package (or its metadata): nothing lands at the top
    # level of site-packages, compiled or not.
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"amqpprox"}


def test_the_sdist_holds_the_licence_the_auth_contract_and_the_c_source(
    tmp_path: Path,
) -> None:
    sdist = _build("sdist", tmp_path)
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    for needed in (
        "LICENSE",
        "amqpprox/proxy/proto/authproto.proto",
        "amqpprox/amqp/_framescan.c",
        "setup.py",
    ):
        assert needed in names


def test_the_installed_wheel_runs(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target"]
    subprocess.run(
        [*install, str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    probe = "import amqpprox, sys; print(amqpprox.__file__)"
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    where = subprocess.run(
        [sys.executable, "-c", probe],
        check=False,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert where.stdout.strip().startswith(str(target)), where
    helped = subprocess.run(
        [sys.executable, "-m", "amqpprox", "--help"], check=False, env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert helped.returncode == 1 and "amqpprox AMQP v0.9.1 proxy:" in helped.stdout


def test_make_run_installs_only_what_running_needs(tmp_path: Path) -> None:
    # A dry run in a copy without a virtual environment: the commands make would run.
    for name in ("Makefile", "pyproject.toml", "setup.py"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    (tmp_path / "amqpprox" / "amqp").mkdir(parents=True)
    (tmp_path / "amqpprox" / "amqp" / "_framescan.c").write_text("")
    plan = subprocess.run(
        ["make", "-n", "run"], cwd=tmp_path, check=True, capture_output=True, text=True
    ).stdout
    assert "pip install --quiet -e .\n" in plan
    assert "[test]" not in plan
    assert "-m amqpprox --listenPort 5673" in plan
