"""``liq-simulator`` / ``python -m liq_pipeline.simulator``: serve both APIs until SIGINT/SIGTERM.

    liq-simulator --host 127.0.0.1 --port 8765 [--now 2026-03-10T00:00:00Z] \\
        [--fault 429:3] [--fault drop:1:newhedge] ...

``--fault kind:count[:api]`` queues a fault (kinds: 429 500 502 503 drop malformed_json capped
repeat_cursor more_no_cursor bad_rows lag; api kwery (default) or newhedge). More faults,
the clock and stats at run time: ``POST/DELETE /_sim/faults``, ``POST /_sim/now``,
``GET /_sim/stats?key=...``.
"""

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from liq_pipeline.simulator.server import FAULT_KINDS, Simulator, parse_iso


def _fault(text: str) -> tuple[str, int, str]:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"expected kind:count[:api], got {text!r}")
    kind, count_text = parts[0], parts[1]
    api = parts[2] if len(parts) == 3 else "kwery"
    if kind not in FAULT_KINDS:
        raise argparse.ArgumentTypeError(f"unknown fault kind {kind!r}")
    if api not in FAULT_KINDS[kind]:
        raise argparse.ArgumentTypeError(f"fault {kind!r} does not apply to api {api!r}")
    try:
        count = int(count_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"count must be an integer, got {count_text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError("count must be >= 1")
    return kind, count, api


def _now(text: str):
    try:
        return parse_iso(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="liq-simulator", description="Local simulator of the Kwery and Newhedge APIs."
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port; 0 = ephemeral (default 8765)")
    parser.add_argument(
        "--now", type=_now, default=None, help="freeze the clock (ISO 8601); default real clock"
    )
    parser.add_argument(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="KIND:COUNT[:API]",
        help="queue a fault, e.g. 429:3 or drop:1:newhedge (repeatable)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    with Simulator(host=args.host, port=args.port, now=args.now) as sim:
        for kind, count, api in args.fault:
            sim.inject(kind, count, api=api)
        print(f"liq-simulator listening on {sim.url}", flush=True)
        while not stop.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
