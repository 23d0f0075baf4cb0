"""``p2pai map`` measured beside its baselines, in one run: real processes on 127.0.0.1.

One ``p2pai node`` (the local worker) on a network of its own; ``p2pai map`` as a child
process each time, a fresh requester data dir per figure.

* ``throughput``: ``map digits ROWS.npy`` (20,000 distinct rows of the held-out digits) with
  one local worker, against a plain Python loop of onnxruntime over the same rows, one row a
  call (and, for scale, the same loop 128 rows a call), in this process.
* ``kill``: the same 20,000-row job killed with SIGKILL once half its results are journaled,
  then the same command again: the rerun's ``recomputed`` (inputs the killed run had sent and
  never got back) against what was done; the output checked (each input once, in order).
* ``memory``: the peak RSS of the ``map`` process over a 100,000-row job (its ``VmHWM``),
  beside the same process over 1,000 rows (its fixed cost).
* ``--png``: 1,000 PNG digits (rendered from the held-out samples) through ``map digits
  FOLDER`` against a loop of Pillow decode + onnxruntime, once the ``image-classification``
  kind exists (skipped with a line saying so until then).

Usage: python benchmarks/map_bench.py [--rows 20000] [--big 100000] [--png] [--only a,b]
Prints one JSON object (and a line a figure on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "assets" / "samples" / "digits-test.npz"
DIGITS = REPO / "assets" / "models" / "digits.onnx"
PY = [sys.executable, "-m", "netcore.cli"]


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("P2PAI_")}
    out["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    out["PYTHONUNBUFFERED"] = "1"
    return out


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Worker:
    """One ``p2pai node --json`` on 127.0.0.1, stopped by PID."""

    def __init__(self, work: Path, network: str) -> None:
        # Its events go to a file: a pipe nobody reads would fill and stall the worker.
        self.events = work / "worker-events.jsonl"
        with open(self.events, "wb") as out:
            self.proc = subprocess.Popen(
                [*PY, "node", "--json", "--interface", "127.0.0.1", "--network", network,
                 "--data-dir", str(work / "worker"), "--name", "w1"],
                stdout=out, stderr=subprocess.DEVNULL, env=env(),
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while '"event":"ready"' not in self.events.read_text().replace(" ", ""):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the worker node did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def distinct_rows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    with np.load(SAMPLES) as data:
        x, y = np.asarray(data["x"]), np.asarray(data["y"])
    reps = -(-n // len(x))
    rows = np.concatenate([x] * reps)[:n]
    labels = np.concatenate([y] * reps)[:n]
    noise = np.random.default_rng(seed).uniform(0, 0.01, rows.shape)
    return (rows + noise).astype(np.float32), labels


def map_argv(
    model: str, source: Path, out: Path, data: Path, network: str, *extra: str
) -> list[str]:
    return [*PY, "map", model, str(source), "-o", str(out), "--json", "--interface",
            "127.0.0.1", "--network", network, "--data-dir", str(data), *extra]  # fmt: skip


def run_map(argv: list[str]) -> tuple[dict[str, Any], float, int]:
    """The summary, the wall time and the peak RSS (KiB) of one ``map`` process.

    The peak is the process's own ``VmHWM`` (its high-water mark since the exec), read as it
    runs: ``wait4``'s ``ru_maxrss`` would count the pages of this process that the fork copied.
    """
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), text=True
    )
    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        status = Path(f"/proc/{proc.pid}/status")
        while not done.is_set():
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            except (OSError, ValueError):
                return
            done.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    done.set()
    watcher.join(1)
    wall = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        raise SystemExit(f"map failed ({proc.returncode}): {err[-2000:]}")
    return json.loads(out), wall, peak


def ort_loop(rows: np.ndarray, batch: int = 1) -> float:
    """Rows a second of onnxruntime called from a plain Python loop."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(DIGITS), providers=["CPUExecutionProvider"])
    sess.run(None, {"input": rows[:1]})
    started = time.perf_counter()
    for i in range(0, len(rows), batch):
        sess.run(None, {"input": rows[i : i + batch]})
    return len(rows) / (time.perf_counter() - started)


def throughput(work: Path, network: str, n: int) -> dict[str, Any]:
    rows, labels = distinct_rows(n, seed=1)
    source = work / "tp.npy"
    np.save(source, rows)
    loop = ort_loop(rows)
    loop128 = ort_loop(rows, 128)
    out = work / "tp.jsonl"
    summary, wall, _ = run_map(map_argv("digits", source, out, work / "tp-data", network))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    accuracy = float(np.mean([r["class"] == int(t) for r, t in zip(records, labels, strict=True)]))
    job_rate = n / summary["elapsed_s"]
    fig = {
        "rows": n,
        "map_rows_per_s": round(job_rate),
        "map_wall_s": round(wall, 2),
        "map_job_s": summary["elapsed_s"],
        "loop_rows_per_s": round(loop),
        "loop_batch128_rows_per_s": round(loop128),
        "ratio_vs_loop": round(job_rate / loop, 3),
        "ratio_wall_vs_loop": round(n / wall / loop, 3),
        "tasks": summary["tasks"],
        "accuracy": round(accuracy, 4),
        "bytes_sent_per_input": round(summary["bytes_sent"] / n, 1),
    }
    say(f"throughput: map {job_rate:,.0f} rows/s (job; {n / wall:,.0f} with start-up) vs a loop "
        f"of onnxruntime {loop:,.0f} rows/s one row a call ({loop128:,.0f} 128 a call): "
        f"{fig['ratio_vs_loop']}x")  # fmt: skip
    return fig


def stored(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def kill(work: Path, network: str, n: int) -> dict[str, Any]:
    rows, _ = distinct_rows(n, seed=2)
    source = work / "kill.npy"
    np.save(source, rows)
    out = work / "kill.jsonl"
    data = work / "kill-data"
    argv = map_argv("digits", source, out, data, network)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env())
    db = data / "client" / "jobs.db"
    deadline = time.monotonic() + 120
    while stored(db) < n // 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the job to kill ended or stalled before half way")
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    done = stored(db)
    assert not out.exists(), "a killed job left a half-written output"
    summary, wall, _ = run_map(argv)
    keys = [json.loads(line)["input"] for line in out.read_text().splitlines()]
    exact = keys == [str(i + 1) for i in range(n)]
    fig = {
        "rows": n,
        "done_at_kill": done,
        "from_journal": summary["from_journal"],
        "computed": summary["computed"],
        "recomputed": summary["recomputed"],
        "recomputed_pct_of_done": round(100 * summary["recomputed"] / max(1, done), 2),
        "each_input_once_in_order": exact,
        "rerun_wall_s": round(wall, 2),
    }
    say(f"kill -9 at {done}/{n} journaled: the rerun took {fig['from_journal']} from the "
        f"journal, computed {fig['computed']}, of which {fig['recomputed']} again "
        f"({fig['recomputed_pct_of_done']}% of what was done); output exact: {exact}")  # fmt: skip
    return fig


def memory(work: Path, network: str, n: int) -> dict[str, Any]:
    small, _ = distinct_rows(1000, seed=3)
    big, _ = distinct_rows(n, seed=4)
    np.save(work / "small.npy", small)
    np.save(work / "big.npy", big)
    _, _, base = run_map(
        map_argv("digits", work / "small.npy", work / "s.parquet", work / "m1", network)
    )
    summary, wall, peak = run_map(
        map_argv("digits", work / "big.npy", work / "b.parquet", work / "m2", network)
    )
    fig = {
        "rows": n,
        "peak_rss_mb": round(peak / 1024, 1),
        "peak_rss_1000_rows_mb": round(base / 1024, 1),
        "input_mb": round(big.nbytes / 1e6, 1),
        "wall_s": round(wall, 2),
        "ok": summary["ok"],
    }
    say(f"memory: peak RSS {fig['peak_rss_mb']} MB over {n} rows ({fig['input_mb']} MB of "
        f"input), {fig['peak_rss_1000_rows_mb']} MB over 1,000")  # fmt: skip
    return fig


def png(work: Path, network: str, n: int = 1000) -> dict[str, Any]:
    from netcore.config.settings import Config
    from netcore.models.kinds import KIND_MODULES
    from netcore.models.plugins import load_registry

    spec = load_registry(Config(data_dir=work / "probe")).find("digits")
    try:
        import importlib

        importlib.import_module(KIND_MODULES["image-classification"])
    except ImportError:
        say(
            "png: skipped: the image-classification kind is not here yet (netcore.models.kinds.image)"
        )
        return {"skipped": "no image-classification kind"}
    if spec is None or spec.kind != "image-classification":
        say("png: skipped: model digits is not of kind image-classification here")
        return {"skipped": "digits is not image-classification"}
    import onnxruntime as ort
    from PIL import Image

    rows, labels = distinct_rows(n, seed=5)
    folder = work / "pngs"
    folder.mkdir()
    for i, row in enumerate(rows):
        pixels = np.clip(row.reshape(8, 8) * 255 / 16, 0, 255).astype(np.uint8)
        Image.fromarray(pixels, "L").resize((32, 32), Image.NEAREST).save(folder / f"{i:05d}.png")
    files = sorted(folder.iterdir())
    sess = ort.InferenceSession(str(spec.path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    dtype = np.uint8 if "int8" in sess.get_inputs()[0].type else np.float32
    started = time.perf_counter()
    for path in files:
        with Image.open(path) as img:
            small = np.asarray(img.convert("L").resize((8, 8), Image.BILINEAR))
        x = small.reshape(1, -1)
        x = x.astype(dtype) if dtype == np.uint8 else (x.astype(np.float32) * 16 / 255)
        sess.run(
            None,
            {name: x.reshape([d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape])},
        )
    loop = n / (time.perf_counter() - started)
    out = work / "png.jsonl"
    summary, _, peak = run_map(map_argv("digits", folder, out, work / "png-data", network))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    accuracy = float(
        np.mean([r.get("class") == int(t) for r, t in zip(records, labels, strict=True)])
    )
    rate = n / summary["elapsed_s"]
    fig = {
        "files": n,
        "map_files_per_s": round(rate),
        "loop_files_per_s": round(loop),
        "ratio_vs_loop": round(rate / loop, 3),
        "accuracy": round(accuracy, 4),
        "records": len(records),
        "peak_rss_mb": round(peak / 1024, 1),
    }
    say(
        f"png: map {rate:,.0f} files/s vs Pillow + onnxruntime loop {loop:,.0f}: "
        f"{fig['ratio_vs_loop']}x, accuracy {accuracy:.3f}"
    )
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--png", action="store_true", help="also 1,000 PNG digits (image kind)")
    parser.add_argument("--only", default="", help="throughput,kill,memory,png")
    args = parser.parse_args()
    chosen = set(filter(None, args.only.split(","))) or {"throughput", "kill", "memory"}
    if args.png:
        chosen.add("png")
    network = f"mapbench-{uuid.uuid4().hex[:8]}"
    result: dict[str, Any] = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="map-bench-") as tmp:
        work = Path(tmp)
        worker = Worker(work, network)
        try:
            if "throughput" in chosen:
                result["throughput"] = throughput(work, network, args.rows)
            if "kill" in chosen:
                result["kill"] = kill(work, network, args.rows)
            if "memory" in chosen:
                result["memory"] = memory(work, network, args.big)
            if "png" in chosen:
                result["png"] = png(work, network)
        finally:
            worker.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
