"""CSR-5/issue 15: a process that opens or seals a key dumps no core (RLIMIT_CORE 0, not dumpable)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_csr5_process_holding_a_key_dumps_no_core():
    """Checked in a fresh interpreter: before the vault is used the process may dump, after it may not."""
    code = textwrap.dedent("""
        import resource
        from certpilot.crypto.process import dumpable
        from certpilot.crypto.vault import KeyVault, LocalMasterKey
        before = (resource.getrlimit(resource.RLIMIT_CORE), dumpable())
        vault = KeyVault(LocalMasterKey(bytes(32)))
        vault.open(vault.seal(b"key", b"aad"), b"aad")
        print(before[1], resource.getrlimit(resource.RLIMIT_CORE), dumpable())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.split() == ["True", "(0,", "0)", "False"]
