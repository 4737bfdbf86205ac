"""A `certpilot up`-like process for the lock-down tests: start `PrefectServer`, report, wait.

Run as a script with CERTPILOT_HOME, PREFECT_HOME and CERTPILOT_PREFECT_PORT set. Prints one line
`READY {json}` (the server's pid and URL) once the server answers, then waits: SIGTERM stops the
server as `certpilot up` does on Ctrl-C; SIGKILL is the hard kill the tests inflict.
"""

from __future__ import annotations

import json
import signal
import sys
import time


def main() -> None:
    from certpilot.prefect_server import PrefectServer
    from certpilot.settings import ensure_home, get_settings

    home = get_settings().home
    ensure_home(home)
    server = PrefectServer(home)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.start(timeout=240)
        print("READY " + json.dumps({"server_pid": server.pid, "api_url": server.api_url, "port": server.port}),
              flush=True)
        while True:
            time.sleep(3600)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
