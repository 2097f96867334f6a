"""The package as a user gets it: what the wheel and the sdist hold, that the wheel runs
from where it is installed, and that the sdist installs into a fresh virtual environment,
with a C compiler or without one. Built offline from this tree (no build isolation).

Offline, a fresh environment cannot download the runtime dependencies, and pip cannot
make wheels of installed packages. So each fresh environment gets one ``.pth`` line
naming the test environment's site-packages: its dependencies become importable (after
the environment's own site-packages, so the amqpprox installed there is the one that
runs), while the test environment's own ``.pth`` files, among them the editable
install's finder, are not run (a ``.pth`` line adds a path, not a site directory).
The install itself is ``--no-index`` and ``--ignore-installed --no-deps``, so that pip
neither reaches for the network nor looks at (or tries to remove) the editable amqpprox;
a test then checks that every runtime requirement resolves inside the fresh environment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.conftest import BROKER_PORT, free_closed_port, pika_round_trip, wait_listening

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


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build("sdist", tmp_path_factory.mktemp("sdist"))


def test_the_sdist_holds_the_licence_the_auth_contract_and_the_c_source(sdist: Path) -> None:
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


def _fresh_env(where: Path, sdist: Path, env: dict[str, str]) -> tuple[Path, str]:
    """A new virtual environment (the base interpreter's) with the sdist installed by the
    test environment's pip; returns its bin directory and pip's verbose output."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    (Path(purelib) / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-v"]
    install += ["--no-index", "--no-build-isolation", "--ignore-installed", "--no-deps"]
    done = subprocess.run(
        [*install, str(sdist)],
        env=env,
        cwd=where,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return where / "bin", done.stdout + done.stderr


# Only the fresh environment's bin on PATH; no AMQPPROX_NO_EXTENSIONS, no venv variables.
def _bare_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    return {"PATH": str(bin_dir), "HOME": str(bin_dir.parent), **extra}


@pytest.fixture(scope="module")
def installed(sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist installed into a fresh environment, with the compiler."""
    where = tmp_path_factory.mktemp("fresh") / "env"
    path = f"{where / 'bin'}:/usr/bin:/bin"
    bin_dir, _log = _fresh_env(where, sdist, {"PATH": path, "HOME": str(where.parent)})
    return bin_dir


@pytest.fixture(scope="module")
def installed_without_compiler(sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist installed with no C compiler: CC is /bin/false, PATH has no gcc or cc."""
    where = tmp_path_factory.mktemp("nocc") / "env"
    bin_dir, log = _fresh_env(where, sdist, _bare_env(where / "bin", CC="/bin/false"))
    # The build was tried and failed (not skipped), and the install went on without it.
    assert 'building extension "amqpprox.amqp._framescan" failed' in log, log
    return bin_dir


PROBE = """
import importlib.metadata as md, json, re, amqpprox
from amqpprox.amqp import scanner
missing = []
for req in md.requires("amqpprox") or []:
    if "extra ==" in req or "win32" in req:
        continue
    name = re.match(r"[A-Za-z0-9_.-]+", req)[0]
    try:
        md.version(name)
    except md.PackageNotFoundError:
        missing.append(name)
print(json.dumps({"file": amqpprox.__file__, "scanner": scanner.IMPLEMENTATION,
                  "missing": missing}))
"""


def _probe(bin_dir: Path) -> dict[str, object]:
    out = subprocess.run(
        [bin_dir / "python", "-c", PROBE], env=_bare_env(bin_dir), cwd=bin_dir.parent,
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    found: dict[str, object] = json.loads(out)
    return found


def _console_scripts_answer(bin_dir: Path) -> None:
    env = _bare_env(bin_dir)
    helped = subprocess.run(
        ["amqpprox", "--help"], env=env, cwd=bin_dir.parent,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert helped.returncode == 1, helped
    assert helped.stdout.startswith("usage: amqpprox [--help]")
    assert "amqpprox AMQP v0.9.1 proxy:" in helped.stdout
    ctl = subprocess.run(
        ["amqpprox_ctl"], env=env, cwd=bin_dir.parent,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert ctl.returncode == 1, ctl
    assert ctl.stderr.strip() == "Usage: amqpprox_ctl <control_socket> ARGS"


def test_the_sdist_installs_into_a_fresh_environment_with_its_console_scripts(
    installed: Path,
) -> None:
    found = _probe(installed)
    assert str(found["file"]).startswith(str(installed.parent)), found
    assert found["missing"] == [], found
    assert found["scanner"] == "c"
    _console_scripts_answer(installed)


def test_the_sdist_installs_without_a_c_compiler_and_scans_in_python(
    installed_without_compiler: Path,
) -> None:
    found = _probe(installed_without_compiler)
    assert str(found["file"]).startswith(str(installed_without_compiler.parent)), found
    assert found["scanner"] == "python"
    _console_scripts_answer(installed_without_compiler)


@pytest.mark.broker
def test_the_proxy_installed_without_a_compiler_relays(
    installed_without_compiler: Path, tmp_socket_dir: str
) -> None:
    port, admin = free_closed_port(), free_closed_port()
    proc = subprocess.Popen(
        ["amqpprox", "--listenPort", str(port), "--listenHost", "127.0.0.1",
         "--destinationDNS", "127.0.0.1", "--destinationPort", str(BROKER_PORT),
         "--controlSocket", os.path.join(tmp_socket_dir, "ctl"),
         "--logDirectory", os.path.join(tmp_socket_dir, "logs"), "--adminPort", str(admin)],
        env=_bare_env(installed_without_compiler), cwd=tmp_socket_dir,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_listening(proc, port)
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as page:
            metrics = page.read().decode()
        assert 'amqpprox_build_info{version="0.1.0",scanner="python"} 1' in metrics
        body = b"y" * 200_000  # several frames, scanned
        assert pika_round_trip(port, body) == body
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
