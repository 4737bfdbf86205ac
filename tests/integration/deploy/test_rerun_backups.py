"""DEP-7 across a crash: a run that died after swapping the new files in left its backup; the
rerun must roll back to the files from before the first run, not to the dead run's new ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certpilot.adapters.deploy.base import DeployMaterial
from certpilot.adapters.deploy.files import FilesTarget
from certpilot.adapters.deploy.nginx import PemFilesTarget
from tests.servers.certs import make_ca, make_leaf

NOW = datetime.now(UTC)


def material(ca, name: str):
    leaf = make_leaf(ca, [name], not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=30))
    return leaf, DeployMaterial.from_pems("crt-x", leaf.cert_pem, chain=b"".join(leaf.chain_pems),
                                         key=lambda: leaf.key_pem)


@pytest.mark.parametrize("kind", ["nginx", "files"])
def test_dep7_rerun_after_crash_rolls_back_to_the_files_before_the_first_run(tmp_path, kind):
    """DEP-7: old → (run 1 swaps in new, dies) → (run 2 stages new again, fails) → rollback → old."""
    ca = make_ca("rerun CA")
    old, _ = material(ca, "www.example.test")
    _, new = material(ca, "www.example.test")
    if kind == "nginx":
        cert, key = tmp_path / "www.pem", tmp_path / "www.key"
        cert.write_bytes(old.fullchain_pem)
        key.write_bytes(old.key_pem)

        def target():
            return PemFilesTarget("t1", [{"cert": cert, "key": key}], check_argv=["true"], reload_argv=["true"])
        live = cert
    else:
        directory = tmp_path / "bundle"
        first = FilesTarget("t1", directory)
        _, old_material = material(ca, "www.example.test")
        first.stage(old_material)
        first.validate()
        first.commit()
        first.finalize()
        first.close()
        old_bytes = (directory / "fullchain.pem").read_bytes()

        def target():
            return FilesTarget("t1", directory)
        live = directory / "fullchain.pem"
    before = live.read_bytes()
    dead = target()  # run 1: swaps the new certificate in, then the process dies
    dead.stage(new)
    dead.validate()
    dead.commit()
    assert live.read_bytes() != before
    dead.close()  # the process dies: the kernel drops its host lock; its checkpoint is in the store
    rerun = target()  # run 2 (after the lease): stages again, then its verification fails
    rerun.checkpoint = dict(dead.checkpoint)
    rerun.stage(new)
    rerun.validate()
    rerun.commit()
    rerun.reload()
    rerun.rollback()
    rerun.close()
    assert live.read_bytes() == before
    if kind == "files":
        assert before == old_bytes
