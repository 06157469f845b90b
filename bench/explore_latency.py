"""The explorer's latency per slider move, through its HTTP API (what the browser waits for).

    python bench/explore_latency.py [--moves 50]

Starts the app on the bundled demo (two methods: runs/directions/linear_map_lambda1.npz and
runs/directions/sefa.npz, or least-squares directions when those are absent), then moves one
slider ``--moves`` times through ``gradio_client`` (a fresh value each time) and prints the median
and 90th percentile round trip: request, render of one 32 px face, the judge's probabilities,
PNG encoding and the response. The browser's own drawing is not included.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--moves", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from gradio_client import Client

    from latentnav.commands.explore import Explorer, build_app

    files = [f for f in ("runs/directions/linear_map_lambda1.npz", "runs/directions/sefa.npz") if Path(f).is_file()]
    if not files:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.commands.test_explore import _directions

        files = [str(p) for p in _directions(Path(tempfile.mkdtemp()))]
    ex = Explorer(files, judge="demo_judge")
    app = build_app(ex, tempfile.mkdtemp())
    app.queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    k = len(ex.methods[0]["names"])
    times = []
    for i in range(args.moves + 3):
        amounts = [0.0] * k
        amounts[i % k] = (i % 16) / 2 - 4
        t0 = time.perf_counter()
        client.predict(5, 0, [], False, *amounts, api_name="/update")
        if i >= 3:  # after a warm-up
            times.append((time.perf_counter() - t0) * 1e3)
    app.close()
    times.sort()
    print(f"{args.moves} slider moves, {len(files)} method(s), 32 px faces, {args.threads} threads: median "
          f"{statistics.median(times):.1f} ms, p90 {times[int(0.9 * len(times)) - 1]:.1f} ms, "
          f"min {times[0]:.1f} ms, max {times[-1]:.1f} ms")


if __name__ == "__main__":
    main()
