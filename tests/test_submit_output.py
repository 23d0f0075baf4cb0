"""What `submit` prints for a task and its samples, the summary, and the resume command."""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from netcore.cli.submit import submit
from netcore.cli.submit_output import (
    JsonReports,
    TextReports,
    WorkerNames,
    resume_command,
    summary_lines,
)
from netcore.tasks.batch import TaskReport
from netcore.tasks.results import predictions

NAMES = ["cat", "dog", "owl"]


@dataclass
class Outcome:
    task_id: str = "t" * 16
    ok: bool = True
    worker: str | None = "a" * 20
    latency_s: float = 0.002
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    label_output: str | None = "output_label"
    error_code: str = ""
    error: str = ""


@dataclass
class Peer:
    peer_id: str
    name: str


PEERS = [Peer("a" * 20, "w1"), Peer("b" * 20, "w2"), Peer("c" * 20, "w2")]


def batch_outcome() -> Outcome:
    probs = np.array([[0.9734, 0.02, 0.0066], [0.1, 0.2, 0.7], [0.05, 0.9, 0.05]], np.float32)
    return Outcome(outputs={"output_label": np.array([0, 2, 1]), "output_probability": probs})


def test_a_batched_task_prints_each_sample_by_name_in_order() -> None:
    report = TaskReport(4, batch_outcome(), 9, 3, [9, 10, 11], [0, 2, 2])
    lines = TextReports(NAMES, WorkerNames(lambda: PEERS), batched=True).lines(report)
    assert lines[0] == f"#4     {'t' * 16}  3 samples  on w1  2.00 ms  2/3 right"
    assert [line.split() for line in lines[1:]] == [
        ["sample", "10", "cat", "(97.3%)", "ok"],
        ["sample", "11", "owl", "(70.0%)", "ok"],
        ["sample", "12", "dog", "(90.0%)", "WRONG", "(expected", "owl)"],
    ]


def test_a_single_sample_task_is_one_line_and_a_failure_says_why() -> None:
    one = Outcome(
        outputs={"output_label": np.array([1]), "output_probability": np.array([[0.2, 0.8, 0.0]])}
    )
    text = TextReports(NAMES, WorkerNames(lambda: PEERS), batched=False)
    assert text.lines(TaskReport(1, one, 0, 1, [0], [1])) == [
        f"#1     {'t' * 16}  dog (80.0%)  on w1  2.00 ms  ok"
    ]
    failed = Outcome(ok=False, error_code="timeout", error="no worker answered")
    assert text.lines(TaskReport(2, failed, 1, 1)) == [
        f"#2     {'t' * 16}  FAILED timeout: no worker answered"
    ]


def test_a_model_without_classes_shows_its_outputs() -> None:
    outcome = Outcome(outputs={"y": np.array([[1.5, 2.0], [3.0, 4.25]])}, label_output=None)
    report = TaskReport(1, outcome, 0, 2, [0, 1])
    lines = TextReports([], WorkerNames(lambda: PEERS), batched=True).lines(report)
    assert lines[1].split() == ["sample", "1", "y=[1.5,", "2]"]
    assert lines[2].split() == ["sample", "2", "y=[3,", "4.25]"]


def test_workers_are_named_and_a_shared_name_gets_the_id() -> None:
    names = WorkerNames(lambda: PEERS)
    assert names("a" * 20) == "w1"
    assert names("b" * 20) == "w2 (bbbbbbbb)"
    assert names("d" * 20) == "dddddddd"  # not (yet) greeted
    summary = {
        "tasks": 3, "ok": 3, "failed": 0, "accuracy": 0.5, "workers": {"a" * 20: 2, "c" * 20: 1},
        "latency_ms": {"p50": 1.0, "p99": 2.0}, "throughput_tps": 10.0,
    }  # fmt: skip
    lines = summary_lines(summary, names)
    assert "workers: w1: 2, w2 (cccccccc): 1" in lines
    assert lines[1].startswith("3/3 ok, 0 failed, accuracy 50.0%")
    assert summary_lines({**summary, "tasks": 10, "interrupted": True}, names)[1:3] == [
        "interrupted after 3 of 10 tasks",
        "3/3 ok, 0 failed, accuracy 50.0%, p50 1.00 ms, p99 2.00 ms, 10 tasks/s",
    ]


def test_json_streams_one_object_a_sample_then_the_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = JsonReports(NAMES, WorkerNames(lambda: PEERS))
    out(TaskReport(1, batch_outcome(), 0, 3, [0, 1, 2], [0, 2, 2]))
    out(TaskReport(2, Outcome(ok=False, error_code="timeout", error="slow"), 3, 2, [3, 4]))
    out.close({"tasks": 2, "ok": 1})
    data = json.loads(capsys.readouterr().out)
    assert (data["tasks"], data["ok"]) == (2, 1)
    first = data["results"][0]
    assert (first["sample"], first["row"], first["label"], first["class"]) == (1, 0, "cat", 0)
    assert first["confidence"] == pytest.approx(0.9734, abs=1e-6)
    assert first["probabilities"] == pytest.approx([0.9734, 0.02, 0.0066], abs=1e-6)
    assert (first["worker_name"], first["right"]) == ("w1", True)
    assert [(r["task"], r["sample"], r["ok"]) for r in data["results"]] == [
        (1, 1, True), (1, 2, True), (1, 3, True), (2, 4, False), (2, 5, False)
    ]  # fmt: skip
    assert data["results"][3]["error_code"] == "timeout"


def test_json_with_no_result_is_still_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    JsonReports([], WorkerNames(lambda: [])).close({"tasks": 0})
    assert json.loads(capsys.readouterr().out) == {"results": [], "tasks": 0}


def test_labels_past_the_names_show_the_class_index() -> None:
    preds = predictions({"label": np.array([5])}, None, 1)
    report = TaskReport(1, Outcome(outputs={"label": np.array([5])}, label_output="label"), 0, 1)
    assert preds.cls(0) == 5
    assert report.samples(NAMES)[0].label == "5"


def test_the_resume_command_keeps_the_options_a_resume_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("P2PAI_")]:
        monkeypatch.delenv(name)
    args = ["--interface", "127.0.0.1", "--network", "lab net", "--data-dir", "rel/dir",
            "--count", "9", "--batch", "3", "--concurrency", "4", "--json"]  # fmt: skip
    monkeypatch.chdir(tmp_path)
    with submit.make_context("submit", args) as ctx:
        command = shlex.split(resume_command(ctx))
    assert command[:3] == ["p2pai", "submit", "--resume"]
    assert command[3:] == [
        "--interface", "127.0.0.1", "--network", "lab net",
        "--data-dir", str(tmp_path / "rel" / "dir"), "--concurrency", "4",
    ]  # fmt: skip
