"""The console runs jobs (key j): the form names a model, a folder and an output file; the job
runs on the console's own node over a real worker; the Jobs pane shows one row per job. Real
nodes bind 127.0.0.1 only, on a network name unique to the test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from model_helpers import loopback_config, unique_network, wait_until
from PIL import Image

from netcore.models.registry import load_samples
from netcore.node import Node
from tui.app import P2PConsole
from tui.jobs import DONE, STOPPED, JobRequest
from tui.screens import JobFormScreen

SIZE = (120, 40)


def digit_pngs(folder: Path, count: int) -> list[int]:
    """``count`` held-out digits as 24x24 PNGs in ``folder`` (sorted names); their labels."""
    x, y = load_samples()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = (x[i].reshape(8, 8) * 255 / 16).round().astype(np.uint8)
        Image.fromarray(pixels).resize((24, 24), Image.NEAREST).save(folder / f"{i:04d}.png")
    return [int(v) for v in y[:count]]


async def test_a_job_from_the_form_writes_every_file_in_order(tmp_path: Path) -> None:
    labels = digit_pngs(tmp_path / "scans", 60)
    (tmp_path / "scans" / "broken.png").write_bytes(b"not a png at all")
    network = unique_network()
    worker = Node(loopback_config(tmp_path, "worker", network))
    await worker.start()
    node = Node(loopback_config(tmp_path, "console", network))
    app = P2PConsole(node, seed=5, log_timestamps=False)
    output = tmp_path / "out" / "digits.jsonl"
    output.parent.mkdir()
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(lambda: len(node.usable_peers(model="digits")) == 1, what="worker")
            assert not app.jobs_pane.has_class("-has-jobs")  # hidden until the first job
            await pilot.press("j")
            await wait_until(lambda: isinstance(app.screen, JobFormScreen), what="the form")
            form = app.screen
            form.query_one("#job-folder").value = str(tmp_path / "scans")  # type: ignore[attr-defined]
            form.query_one("#job-output").value = str(output)  # type: ignore[attr-defined]
            await pilot.press("enter")
            await wait_until(lambda: bool(app.jobs.entries), what="the job")
            entry = app.jobs.entries[0]
            await wait_until(lambda: entry.state != "running", timeout=60, what="the job's end")
            assert entry.state == "done*", entry.error  # one broken file
            assert entry.total == 61 and entry.done == 61 and entry.failed == 1
            records = [json.loads(line) for line in output.read_text().splitlines()]
            # In input order: the folder's files sorted by name.
            assert [r["input"] for r in records] == [f"{i:04d}.png" for i in range(60)] + [
                "broken.png"
            ]
            good = [r for r in records if r["ok"]]
            assert len(good) == 60 and len(records) == 61
            right = sum(int(r["label"]) == labels[int(r["input"][:4])] for r in good)
            assert right / 60 >= 0.9
            bad = next(r for r in records if not r["ok"])
            assert bad["input"] == "broken.png" and bad["error"]
            app.refresh_panes()
            assert app.jobs_pane.has_class("-has-jobs")
            row = app.jobs_pane.table.get_row("1")
            assert "digits" in str(row[1]) and "done" in str(row[2]) and str(output) in str(row[6])
            await pilot.press("q")
    finally:
        await node.stop()
        await worker.stop()


async def test_a_job_that_cannot_start_is_one_line_and_no_row(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    digit_pngs(tmp_path / "scans", 2)
    node = Node(loopback_config(tmp_path, "console", unique_network()))
    app = P2PConsole(node, seed=5, log_timestamps=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(lambda: app.node_running, what="the node")
            for request, words in (
                (JobRequest("digits", tmp_path / "empty", tmp_path / "a.jsonl"), "empty"),
                (
                    JobRequest("digits", tmp_path / "nowhere", tmp_path / "a.jsonl"),
                    "does not exist",
                ),
                (JobRequest("nosuch", tmp_path / "empty", tmp_path / "a.jsonl"), "unknown model"),
                (JobRequest("digits", tmp_path / "scans", tmp_path / "a.xlsx"), "xlsx"),
            ):
                try:
                    app.jobs.start(request)
                except Exception as exc:
                    message = str(exc)
                else:
                    raise AssertionError(f"{request} started")
                assert words in message and "\n" not in message, message
            assert app.jobs.entries == []
            await pilot.press("q")
    finally:
        await node.stop()


async def test_quitting_stops_the_job_and_keeps_what_it_computed(tmp_path: Path) -> None:
    digit_pngs(tmp_path / "scans", 300)
    network = unique_network()
    worker = Node(loopback_config(tmp_path, "worker", network))
    await worker.start()
    node = Node(loopback_config(tmp_path, "console", network))
    app = P2PConsole(node, seed=5, log_timestamps=False)
    output = tmp_path / "digits.jsonl"
    try:
        async with app.run_test(size=SIZE):
            await wait_until(lambda: len(node.usable_peers(model="digits")) == 1, what="worker")
            entry = app.jobs.start(JobRequest("digits", tmp_path / "scans", output))
            await app.jobs.aclose()  # what quitting does
            assert entry.state in (STOPPED, DONE)
            if entry.state == STOPPED:
                assert not output.exists()  # never half-written
    finally:
        await node.stop()
        await worker.stop()
