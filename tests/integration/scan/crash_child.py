"""A scanner process for the crash test (`test_crash_recovery.py`): the fleet's services, one scan
launching its renewals in-process, until the test kills it with SIGKILL.

Usage: python crash_child.py DATABASE_URL   (the vault's master key, hex, on stdin; the Prefect API
in PREFECT_API_URL; CERTPILOT_LAUNCH_MODE=in-process)
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from functools import partial


def main() -> None:
    from certpilot import runtime as rt
    from certpilot.adapters.issuers.private_ca import PrivateCa
    from certpilot.crypto.vault import KeyVault, LocalMasterKey
    from certpilot.store.db import session_scope
    from certpilot.store.ports import SqlPrivateCaStore

    url = sys.argv[1]
    vault = KeyVault(LocalMasterKey(bytes.fromhex(sys.stdin.readline().strip())))
    issuer = PrivateCa(SqlPrivateCaStore(partial(session_scope, url)), vault, clock=lambda: datetime.now(UTC))
    rt.install(rt.local_services(database_url=url, vault=vault, issuers={"private-ca": issuer},
                                 default_issuer="private-ca"))
    from flows.scan import scan

    print("scanning", flush=True)
    scan()
    print("scan done", flush=True)


if __name__ == "__main__":
    main()
