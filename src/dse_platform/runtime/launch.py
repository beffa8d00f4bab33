"""Process-manager entry point: ``python -m dse_platform.runtime.launch <service>``.

supervisord runs this instead of the service's own command line so that the
command and its environment are computed by the same code (and the same
``DSE_*`` settings) as ``dse up``, with nothing re-quoted into supervisor's
config syntax. It replaces itself with the real program (``exec``), so the
pid supervisor watches is the service's own.
"""

from __future__ import annotations

import os
import sys

from dse_platform.config import get_settings
from dse_platform.runtime.services import services


def main(argv: list[str]) -> None:
    settings = get_settings()
    wanted = argv[1] if len(argv) > 1 else ""
    for svc in services(settings):
        if svc.name == wanted:
            cmd = svc.command()
            secret = svc.secret_env() if svc.secret_env is not None else {}
            os.execvpe(cmd[0], cmd, {**os.environ, **svc.env, **secret})
    sys.exit(f"launch: unknown service '{wanted}'")


if __name__ == "__main__":
    main(sys.argv)
