"""``liq-simulator`` / ``python -m liq_pipeline.simulator``: serve both APIs until SIGINT/SIGTERM.

    liq-simulator --host 127.0.0.1 --port 8765 [--now 2026-03-10T00:00:00Z] \\
        [--fault 429:3] [--fault drop:1:newhedge] ...

``--fault kind:count[:api]`` queues a fault that needs no parameters (kinds: 429 500 502 503
drop malformed_json capped repeat_cursor more_no_cursor bad_rows lag hang echo_secret; api
kwery (default) or newhedge; ``hang`` here hangs for good). Faults with parameters
(``bad_value``, ``gap``, ``hang`` with ``seconds``...), the clock and stats at run time:
``POST/DELETE /_sim/faults``, ``POST /_sim/now``, ``GET /_sim/stats?key=...`` (see
`liq_pipeline.simulator.faults` and `liq_pipeline.simulator.server`).
"""

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from liq_pipeline.simulator.faults import make_fault
from liq_pipeline.simulator.server import Simulator, parse_iso


def _fault(text: str) -> tuple[str, int, str]:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"expected kind:count[:api], got {text!r}")
    kind, count_text = parts[0], parts[1]
    api = parts[2] if len(parts) == 3 else "kwery"
    try:
        count = int(count_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"count must be an integer, got {count_text!r}") from None
    try:
        make_fault(kind, count, api=api)  # the same checks as Simulator.inject
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
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
        help="queue a fault, e.g. 429:3 or drop:1:newhedge (repeatable; faults with parameters: "
        "POST /_sim/faults)",
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
