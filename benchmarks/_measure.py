"""Run one command and print its wall time and peak memory (of that command alone) as JSON.

Benchmarks call :func:`measured`, which runs this file as its own process so the peak memory
is the command's, not the benchmark's.
"""

import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def measured(command: list[str]) -> dict:
    """``command`` run through this file: wall_s, peak_mib, returncode, stdout, stderr. A
    failing command stops the benchmark with its error output."""
    out = subprocess.run(
        [sys.executable, str(Path(__file__)), *command],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    if result["returncode"]:
        raise SystemExit(f"{' '.join(command[:4])} ... failed:\n{result['stderr'][-3000:]}")
    return result


if __name__ == "__main__":
    t0 = time.perf_counter()
    proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        json.dumps(
            {
                "wall_s": wall,
                "peak_mib": peak_kib / 1024,
                "returncode": proc.returncode,
                "stdout": proc.stdout,
                "stderr": proc.stderr,
            }
        )
    )
