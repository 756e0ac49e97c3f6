"""Starts one measured process and reports its wall time and peak RSS (used by bench/launch.py).

    python bench/launcher.py REPORT.json PROGRAM [ARGS...]

Each measured process is started by this small launcher (~10 MiB, stdlib only), not by the
benchmark process itself: Linux counts the pages a child shares with its parent between fork()
and exec() in the child's peak RSS (ru_maxrss), and the benchmark process holds hundreds of MiB
of simulated days, which would then be reported as the peak of every child. The report is the
child's wall time (spawn to exit), its own ru_maxrss from wait4() and its exit code.
"""

import json
import os
import subprocess
import sys
import time


def main() -> None:
    report_path, argv = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    child = subprocess.Popen(argv)
    _, status, usage = os.wait4(child.pid, 0)
    report = {
        "seconds": time.perf_counter() - started,
        "rss_kib": usage.ru_maxrss,  # KiB on Linux
        "returncode": os.waitstatus_to_exitcode(status),
    }
    with open(report_path, "w") as out:
        json.dump(report, out)


if __name__ == "__main__":
    main()
