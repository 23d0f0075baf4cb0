"""``console --local N --trust allowlist``: the console and its local peers trust each other for
the session (``--trust-key``, nothing written to a trust list), so the children show up and run
the console's tasks, while a foreign node on the same network is still refused by all of them.

Real child ``p2pai node`` processes and real in-process nodes, all on 127.0.0.1, on a network
name unique to the test; the console is the real App under Textual's pilot.
"""

from __future__ import annotations

from pathlib import Path

import psutil
from model_helpers import loopback_config, unique_network, wait_until

from netcore.config.settings import Config
from netcore.node import Node
from netcore.trust.keys import trust_path
from tui.app import P2PConsole
from tui.run import local_session

SIZE = (120, 40)
TASKS = 6


def child_args(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.NoSuchProcess:
        return []


async def test_an_allowlist_console_runs_tasks_on_its_local_peers_and_refuses_a_stranger(
    tmp_path: Path,
) -> None:
    network = unique_network("tui-allow")
    config = Config(
        network=network, data_dir=tmp_path / "console", name="console", trust="allowlist"
    )
    config, local = local_session(config, 2)
    children = set(config.trusted_keys)
    assert len(children) == 2 and config.interfaces == ("127.0.0.1",)

    # A stranger on the same network and interface, open to anyone, eager to work.
    foreign = Node(loopback_config(tmp_path, "stranger", network))
    refused_by: set[str] = set()
    refused = foreign.trust._refused_by

    def note_refusal(peer_id: str) -> None:
        refused_by.add(peer_id)
        refused(peer_id)

    foreign.trust._refused_by = note_refusal  # type: ignore[method-assign]

    node = Node(config)
    app = P2PConsole(node, local_peers=local, seed=3, log_timestamps=False)
    local.start()
    try:
        await foreign.start()
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(
                lambda: (
                    {p.name for p in node.usable_peers(model="digits")} == {"local-1", "local-2"}
                ),
                timeout=60,
                what="both local peers greeted under allowlist",
            )
            ids = {p.peer_id for p in node.usable_peers(model="digits")}
            app.refresh_panes()
            await pilot.pause()
            assert ids <= set(app.peers_pane.row_keys()), "both children are in the peers pane"

            for _ in range(TASKS):
                await pilot.press("d")
            await wait_until(
                lambda: app.book.counters.done + app.book.counters.failed == TASKS,
                timeout=60,
                what="the tasks",
            )
            records = app.book.newest(TASKS)
            assert [r.state for r in records] == ["done"] * TASKS, [r.error for r in records]
            assert {r.worker for r in records} <= ids, "every task ran on a local peer"

            # The stranger is refused by the console and by both children (they run
            # allowlist too), and never gets a task.
            wanted = {node.peer_id, *ids}
            await wait_until(
                lambda: wanted <= refused_by, timeout=60, what="the stranger refused by all three"
            )
            assert foreign.peer_id not in node.peers
            assert foreign.usable_peers(kind=None) == []
            assert foreign.counters["tasks_served"] == 0
            print(
                f"\nallowlist console --local 2: children listed {len(ids)}/2, tasks done "
                f"{app.book.counters.done}/{TASKS} (on {len({r.worker for r in records})} of the "
                f"children), stranger refused by {len(wanted & refused_by)}/3"
            )

            # Session trust only: nothing was written to the console's trust list.
            assert not trust_path(tmp_path / "console").exists()
            for pid in local.pids:
                args = child_args(pid)
                assert args[args.index("--trust") + 1] == "allowlist"
                assert node.identity is not None
                assert node.identity.public_text in args
            await pilot.press("q")
    finally:
        local.stop()
        await node.stop()
        await foreign.stop()
    assert not local.base_dir.exists(), "the children's identities go with the session"
