"""Child processes of the command-line tools: stopped, with their own children, when asked."""

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

STOP_GRACE_S = 15.0
# Dagster 1.13 calls the `dagster dev` and `dagster job execute` commands superseded by `dg`
# (dagster-dg-cli, a dev extra here). We run them on purpose, so their notice is left out of our
# output. Message filters, because a category filter (dagster.SupersessionWarning) would have to
# import dagster before the interpreter's paths are set up.
SUPERSEDED_NOTICES = (
    "ignore:Function `dev_command` is superseded",
    "ignore:Function `job_execute_command` is superseded",
)


def without_superseded_notices(env: dict[str, str]) -> dict[str, str]:
    filters = [f for f in env.get("PYTHONWARNINGS", "").split(",") if f]
    return {**env, "PYTHONWARNINGS": ",".join([*filters, *SUPERSEDED_NOTICES])}


def run_child(command: list[str], *, cwd: Path, env: dict[str, str], stdout: Any = None) -> int:
    """Run `command` in its own process group; Ctrl-C or SIGTERM stop it (and its children).

    The child (a dagster CLI, or `dagster dev` with its webserver and daemon) runs without
    Dagster's superseded-command notices. On a stop it gets SIGINT, the polite stop Dagster
    handles, then SIGKILL if it is still there after STOP_GRACE_S; the simulator is closed by the
    caller either way.
    """
    child = subprocess.Popen(
        command, cwd=cwd, env=without_superseded_notices(env), stdout=stdout,
        stderr=subprocess.STDOUT if stdout else None,
        start_new_session=True,  # our signals reach the group only through us
    )  # fmt: skip
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        return child.wait()
    except KeyboardInterrupt:
        print("\nStopping...", file=sys.stderr)
        _stop(child)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop(child: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGINT)
    try:
        child.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
