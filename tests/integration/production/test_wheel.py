"""The README's production path from a wheel installed into a fresh venv, from an empty directory:

    pip install certpilot-*.whl
    certpilot setup --private-ca      # writes prefect.yaml here (there is no checkout)
    prefect deploy --all
    prefect worker start --pool certpilot

and a scan run on that worker renews a due certificate (the default launch mode: the renewal
runs in the scan's own process), its flows, configuration files and automations read from the
installed wheel.

Without the network: the wheel is built from the checkout with the suite's own build tools, and
the fresh venv borrows certpilot's dependencies from the suite's venv (a `.pth` file naming a
directory of links to every package there except certpilot itself), so `pip install --no-index`
finds them installed; Prefect's console script is written into the venv as pip writes it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.production.conftest import REPO, Operator, import_due, operator_env, renewal_state

pytestmark = [pytest.mark.servers]

SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "prefect.yaml", "certpilot", "flows", "tasks",
           "blocks", "config", "automations")
OURS = ("certpilot", "__editable__", "flows", "tasks", "blocks", "distutils-precedence.pth", "pip")


def build_wheel(out: Path) -> Path:
    """`pip wheel` of a copy of the checkout's sources (no build isolation: no network)."""
    src = out / "src"
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(out / "dist"), str(src)], check=True, capture_output=True, text=True)
    (wheel,) = (out / "dist").glob("certpilot-*.whl")
    return wheel


def fresh_venv(where: Path, wheel: Path) -> Path:
    """A new venv with the wheel installed (dependencies borrowed, see the module docstring); its bin."""
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    deps = where / "borrowed"
    deps.mkdir()
    for entry in Path(sysconfig.get_path("purelib")).iterdir():
        if not entry.name.startswith(OURS):
            (deps / entry.name).symlink_to(entry)
    (purelib / "borrowed-dependencies.pth").write_text(f"{deps}\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-index", str(wheel)],
                   check=True, capture_output=True, text=True)
    script = where / "bin" / "prefect"
    script.write_text(f"#!{python}\nimport sys\nfrom prefect.cli import app\n"
                      "if __name__ == '__main__':\n    sys.exit(app())\n")
    script.chmod(0o755)
    return where / "bin"


def test_from_a_wheel_setup_writes_prefect_yaml_deploys_and_a_worker_scan_renews(production_api, store_of, tmp_path):
    """From an empty directory, with certpilot installed from its wheel only: `certpilot setup`
    writes the packaged prefect.yaml, `prefect deploy --all` deploys every flow from it, and a
    scan run on `prefect worker start --pool certpilot` renews a due certificate: its renewal is
    issued, every certpilot run it started Completed."""
    started = time.monotonic()
    bin_ = fresh_venv(tmp_path / "venv", build_wheel(tmp_path / "build"))
    installed = time.monotonic()
    python = str(bin_ / "python")
    where = subprocess.run([python, "-c", "import certpilot, flows; from certpilot.automations import "
                            "AUTOMATIONS_DIR as a; from certpilot.settings import REPO_CONFIG as c; "
                            "print(certpilot.__file__, flows.__file__, a, c, sep='\\n')"],
                           check=True, capture_output=True, text=True, cwd=tmp_path).stdout.split()
    site = str(tmp_path / "venv" / "lib")
    assert all(p.startswith(site) for p in where), where  # the wheel's, not the checkout's
    assert sorted(p.name for p in Path(where[2]).glob("*.yaml")) == sorted(
        p.name for p in (REPO / "automations").glob("*.yaml"))
    assert sorted(p.name for p in Path(where[3]).glob("*.toml")) == sorted(p.name for p in (REPO / "config").glob("*.toml"))

    op = Operator(production_api, bin_, tmp_path / "home", operator_env(production_api, tmp_path / "home"))
    here = tmp_path / "ops"
    here.mkdir()
    setup = op.certpilot("setup", "--private-ca", "--json", cwd=here)
    assert setup.code == 0, setup.out + setup.err
    step = next(s for s in setup.json["steps"] if s["kind"] == "file")
    assert step["change"] == "created" and (here / "prefect.yaml").read_text() == (REPO / "prefect.yaml").read_text()
    deploy = op.prefect("deploy", "--all", cwd=here)
    assert deploy.code == 0, deploy.out + deploy.err
    worker_dir = tmp_path / "worker"
    worker_dir.mkdir()
    op.start_worker(worker_dir, tmp_path / "worker.log")
    try:
        svc = store_of(op)
        cert_id = import_due(svc, here, "wheel.example.com")
        since = datetime.now(UTC).isoformat()
        scan = op.certpilot("scan", "--json", cwd=here)
        assert scan.code == 0, scan.out + scan.err
        run = op.wait_for_run(scan.json["flow_run_id"])
        assert run["state_type"] == "COMPLETED", (run["state"], op.run_logs(run["id"]))
        runs = op.wait_until_idle(since)
        assert not [(r["name"], r["state"]["message"]) for r in runs if r["state_type"] != "COMPLETED"]
        assert "wheel.example.com" in {r["name"] for r in runs}
        assert renewal_state(svc, cert_id) == "issued"
    finally:
        op.stop_workers()
    print(f"wheel: build + venv {installed - started:.1f} s, all {time.monotonic() - started:.1f} s")
