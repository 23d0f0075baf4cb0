"""Each model gets its own samples: iris its known flowers, a model without samples random
inputs made from its signature, a model the console cannot feed is greyed out in the picker
with the reason; a failed task's error reaches the log pane in full."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from console_fakes import FakeNode, FrozenClock, digit_samples
from model_helpers import loopback_config, unique_network, wait_until
from textual.pilot import Pilot

from netcore.config.settings import Config
from netcore.models.plugins import discover, load_registry
from netcore.node import Node
from netcore.tasks.scheduler import TaskOutcome
from tui.app import P2PConsole
from tui.samples import CannotFeed, FeedBook, InputSpec, feedable, fits, generated
from tui.screens import ModelPickerScreen

SIZE = (120, 40)
ALPHA = "a1fa0000000000000001"


def logged(app: P2PConsole) -> str:
    """The log pane's text, its wrapped lines joined."""
    return " ".join(" ".join(line.text.split()) for line in app.logs_pane.lines)


async def pick(pilot: Pilot[Any], app: P2PConsole, name: str) -> None:
    await pilot.press("m")
    assert isinstance(app.screen, ModelPickerScreen)
    option_list: Any = app.screen.query_one("#picker-list")
    option_list.highlighted = [o.id for o in option_list.options].index(name)
    await pilot.press("enter")
    assert app.model == name


def test_inputs_made_from_a_signature_fit_it() -> None:
    rng = np.random.default_rng(1)
    for spec in (
        InputSpec("x", "float32", (-1,)),
        InputSpec("x", "int64", (-1, 3, -1)),
        InputSpec("x", "bool", (1, 2)),
        InputSpec("x", "float64", (-1, 8)),
    ):
        feed = generated(feedable([spec]), rng)
        assert len(feed.x) > 1 and feed.y is None
        assert all(fits(spec, feed.x[i : i + 1]) for i in range(len(feed.x)))
    with pytest.raises(CannotFeed, match="takes 2 inputs"):
        feedable([InputSpec("a", "float32", (-1,)), InputSpec("b", "float32", (-1,))])
    with pytest.raises(CannotFeed, match="no batch axis"):
        feedable([InputSpec("x", "float32", (3, 4))])


async def test_a_model_the_console_cannot_feed_is_greyed_out_with_the_reason(
    frozen_clock: FrozenClock,
) -> None:
    node = FakeNode(clock=frozen_clock)
    app = P2PConsole(node, clock=frozen_clock, seed=2, samples=digit_samples())
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.node_running, what="node start")
        peer = node.add_peer(ALPHA, "alpha", "tcp://127.0.0.1:47101")
        two = [{"name": n, "dtype": "float32", "shape": [-1, 2]} for n in ("a", "b")]
        peer.models.append({"name": "pair", "inputs": two})
        await wait_until(lambda: app.live_peer_count() == 1, what="a peer")
        await pilot.press("m")
        assert isinstance(app.screen, ModelPickerScreen)
        options = {o.id: o for o in app.screen.query_one("#picker-list").options}  # type: ignore[attr-defined]
        assert options["pair"].disabled and not options["digits"].disabled
        assert "takes 2 inputs (a, b)" in str(options["pair"].prompt)
        await pilot.press("escape")


async def test_a_failed_task_shows_its_whole_error_in_the_log(frozen_clock: FrozenClock) -> None:
    why = "input 'input' must have shape ['N', 64], got [1, 4] " + "and more detail " * 8 + "END"

    class FailingNode(FakeNode):
        async def submit(self, model: str, inputs: Any, **options: Any) -> TaskOutcome:
            return TaskOutcome(
                task_id=options["task_id"], ok=False, model=model, worker=ALPHA,
                latency_s=0.002, attempts=1, error_code="bad_input", error=why,
            )  # fmt: skip

    node = FailingNode(clock=frozen_clock)
    app = P2PConsole(node, clock=frozen_clock, seed=2, samples=digit_samples())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(lambda: app.node_running, what="node start")
        node.add_peer(ALPHA, "alpha", "tcp://127.0.0.1:47101")
        await wait_until(lambda: app.live_peer_count() == 1, what="a peer")
        await pilot.press("d")
        await app.wait_idle()
        await wait_until(lambda: "END" in logged(app), what="the error in the log")
        (record,) = app.book.newest(1)
        assert f"task {record.task_id[:8]} (digits) failed on alpha: bad_input: {why}" in logged(
            app
        )


async def test_iris_gets_flowers_and_double_gets_numbers_on_real_workers(tmp_path: Path) -> None:
    if "double" not in discover(refresh=True):
        pytest.skip("the test plugin is not installed (make test installs it)")
    network = unique_network()
    worker = Node(loopback_config(tmp_path, "worker", network))
    await worker.start()
    node = Node(loopback_config(tmp_path, "console", network))
    app = P2PConsole(node, seed=4, log_timestamps=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(lambda: len(node.usable_peers(model="iris")) == 1, what="a worker")
            await pick(pilot, app, "iris")
            for _ in range(5):
                await pilot.press("d")
            await wait_until(lambda: app.book.counters.done + app.book.counters.failed == 5)
            records = app.book.newest(5)
            assert [r.error for r in records if r.state != "done"] == []
            # Known flowers with their species: the model gets them right.
            assert all(r.expected is not None and r.label == r.expected for r in records)

            await pick(pilot, app, "double")
            await pilot.press("d")
            await wait_until(lambda: app.book.counters.done + app.book.counters.failed == 6)
            (record,) = app.book.newest(1)
            assert record.state == "done" and record.model == "double", record.error
            await pilot.press("q")
    finally:
        await node.stop()
        await worker.stop()


def test_shipped_digits_and_given_samples_are_used_first() -> None:
    node = FakeNode()
    given = digit_samples()
    book = FeedBook(given, given_for="digits", seed=1)
    assert book.feed(node, "digits").x is given[0]
    with pytest.raises(CannotFeed, match="no signature known"):
        book.feed(node, "iris")  # not held, not advertised
    node.add_peer(ALPHA, "alpha", "tcp://127.0.0.1:47101", models=("digits", "iris"))
    feed = book.feed(node, "iris")  # its plugin's flowers, checked against the advertisement
    assert feed.source == "iris samples" and feed.x.shape == (15, 4) and feed.y is not None


def test_every_model_held_here_runs_on_what_the_console_sends_it(tmp_path: Path) -> None:
    """Shipped, plugin and packaged models (those whose extras are installed): what `d` sends
    runs, or the picker greys the model out. Generated inputs had 1 on every free axis, and
    the OCR detection graph failed every task on a 1x1 image (internal: Add.178)."""
    registry = load_registry(Config(data_dir=tmp_path / "data", name="feeds"))
    node = SimpleNamespace(registry=registry, peers=[])
    book = FeedBook(seed=2)
    ran = []
    for name in registry.names():
        if book.reason(node, name) is not None:
            continue
        feed = book.feed(node, name)
        spec = registry.find(name)
        assert spec is not None
        registry.load(spec).run({spec.inputs[0].name: feed.x[0:1]})
        ran.append(name)
    assert {"digits", "iris"} <= set(ran), ran
