"""Burst benchmark of the web app (issue 27's acceptance): the server's peak memory and whether every
request still answers under a bounded burst of ``/locate`` calls.

Starts ``python app.py`` on a free local port, waits until it serves, then sends at once:
``--requests`` (20) ``/locate`` calls, one of them a 16-bit grey 40 MP PNG (6300 x 6300, a few
hundred KB on disk) and the others a real photo, plus one call of the page's own Locate handler
(as the browser makes it) whose "True location" is 100 KB of adversarial text (one number, then
spaces: quadratic for a backtracking regular expression); while they run it
polls ``/gradio_api/info``. Prints one line per request kind and the server's peak memory (VmHWM).

    nice -n 10 .venv/bin/python scripts/bench_web_burst.py [--preset offline] [--requests 20]

Target: peak under 3 GB, every request answered (a location or a one-line refusal), the text
refused in one short line without waiting on anything but the queue, ``/gradio_api/info`` answering throughout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _gray16_png(path: Path, side: int = 6300) -> Path:
    import numpy as np
    from PIL import Image

    x = (np.arange(side, dtype=np.uint32) * 37 // max(side // 64, 1)).astype(np.uint16)
    Image.fromarray(np.broadcast_to(x, (side, side)).copy()).save(path, compress_level=1)
    return path


def _photo() -> Path:
    from geodemo.data import load_examples

    return next(s.image_path for s in load_examples().samples if s.image_path is not None)


def _page_call(base: str, photo: Path, truth: str, preset: str) -> tuple[float, str]:
    """The page's Locate handler called as the browser calls it; (seconds, its last status line)."""
    import httpx

    t0 = time.monotonic()
    with open(photo, "rb") as fh:
        uploaded = httpx.post(f"{base}/gradio_api/upload", files={"files": (photo.name, fh)}, timeout=120).json()[0]
    config = httpx.get(f"{base}/config", timeout=60).json()
    fn_index = next(d["id"] for d in config["dependencies"] if len(d["inputs"]) == 12)
    session = uuid.uuid4().hex
    data = [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}, truth, "", preset, None, None, None, "off",
            "preset default", "", None, 0.5]
    httpx.post(f"{base}/gradio_api/queue/join", timeout=60,
               json={"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None})
    last = ""
    with httpx.stream("GET", f"{base}/gradio_api/queue/data", params={"session_hash": session}, timeout=600) as ev:
        for line in ev.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                for item in (msg.get("output") or {}).get("data") or []:
                    value = item.get("value") if isinstance(item, dict) else item
                    if isinstance(value, str) and value.startswith(("⚠", "⏳", "✅")):
                        last = value
                if msg.get("msg") == "process_completed":
                    break
    return time.monotonic() - t0, last


def _vm(pid: int, key: str) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split(f"{key}:")[1].split()[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="offline", help="the preset the served app uses (GEODEMO_PRESET of the server)")
    ap.add_argument("--requests", type=int, default=20, help="/locate calls in the burst (one of them the 16-bit PNG)")
    ap.add_argument("--start-timeout", type=float, default=600.0, help="seconds the served app may take to start")
    args = ap.parse_args(argv)

    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from geodemo.web.policy import TEXT_LIMITS
    from geodemo.web.process import served_app

    work = Path(tempfile.mkdtemp(prefix="geodemo-burst-"))
    big = _gray16_png(work / "gray16-40mp.png")
    photo = _photo()
    env = {**os.environ, "GEODEMO_PRESET": args.preset, "PYTHONPATH": str(REPO)}
    t0 = time.monotonic()
    with served_app(REPO, env, work / "server.log", args.start_timeout) as (url, server):
        base = url.rstrip("/")
        idle_kb = _vm(server.pid, "VmRSS")
        print(f"server up in {time.monotonic() - t0:.0f} s, {idle_kb / 2**20:.2f} GB resident; preset {args.preset}; "
              f"16-bit PNG {big.stat().st_size / 2**20:.1f} MB on disk (6300 x 6300)")

        info_waits: list[float] = []
        done = threading.Event()

        def poll_info() -> None:
            while not done.is_set():
                t = time.monotonic()
                urllib.request.urlopen(base + "/gradio_api/info", timeout=120).read()
                info_waits.append(time.monotonic() - t)
                time.sleep(0.5)

        poller = threading.Thread(target=poll_info, daemon=True)
        poller.start()
        client = Client(base, verbose=False, download_files=False)
        settings = (args.preset, None, None, None, "off", "preset default", "", None)
        t_burst = time.monotonic()
        jobs = [(i, time.monotonic(), client.submit(handle_file(str(big if i == 0 else photo)), *settings,
                                                    api_name="/locate")) for i in range(args.requests)]
        truth = "1" + " " * 99_997 + "1x"  # the probe's text: a number, 100 KB of spaces (quadratic in a backtracking regex)
        page: dict[str, tuple[float, str]] = {}
        page_thread = threading.Thread(target=lambda: page.update(call=_page_call(base, photo, truth, args.preset)))
        page_thread.start()
        outcomes = []
        for i, start, job in jobs:
            try:
                answer = job.result(timeout=900)
                outcomes.append((i, "located" if isinstance(answer, dict) and "lat" in answer else "odd answer",
                                 time.monotonic() - start))
            except AppError as exc:
                outcomes.append((i, f"refused: {str(exc)[:120]}", time.monotonic() - start))
            except Exception as exc:  # noqa: BLE001 - a request that did not answer is what this measures
                outcomes.append((i, f"NO ANSWER: {type(exc).__name__}: {str(exc)[:120]}", time.monotonic() - start))
        page_thread.join(900)
        burst_s = time.monotonic() - t_burst
        done.set()
        peak_kb = _vm(server.pid, "VmHWM")

    others = [o for o in outcomes if o[0] != 0]
    answered = sum(not o[1].startswith("NO ANSWER") for o in others)
    print(f"16-bit 40 MP PNG: {outcomes[0][1]} in {outcomes[0][2]:.1f} s")
    print(f"other /locate requests: {answered}/{len(others)} answered "
          f"({sum(o[1] == 'located' for o in others)} located), slowest {max(o[2] for o in others):.1f} s")
    seconds, status = page.get("call", (float("nan"), "NO ANSWER"))
    print(f"page call with a {len(truth) // 1000} KB true location (limit {TEXT_LIMITS['true location']} characters): "
          f"answered in {seconds:.2f} s: {status[:100]!r}")
    if info_waits:
        print(f"/gradio_api/info during the burst: {len(info_waits)} polls, slowest {max(info_waits):.2f} s")
    print(f"burst: {burst_s:.0f} s; server peak memory {peak_kb / 2**20:.2f} GB (VmHWM; target < 3 GB)")
    ok = peak_kb < 3 * 2**20 and answered == len(others) and "true location" in status and len(status) < 200
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
