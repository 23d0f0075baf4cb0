"""A partition between real hosts: three nodes in their own network namespaces on one bridge.

They discover each other by mDNS on their veth interfaces. Mid-run one host's link is taken
down (no RST: packets just stop): the work finishes on the others with nothing lost; the cut
peer goes evasive, then expires; when the link comes back the same peer returns under the
same id, once, with no ghost rows. Runs as root where ``ip netns`` is allowed; the test
creates and removes its own namespaces (10.231.x.x addresses exist only inside them).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NodeProc, child_env, cli_argv, stop_pid
from netns import Lan, netns_unavailable

pytestmark = pytest.mark.integration

WHY_NOT = netns_unavailable()


@pytest.fixture
def lan() -> Iterator[Lan]:
    if WHY_NOT:
        pytest.skip(f"network namespace test skipped: {WHY_NOT}")
    made = Lan(3)
    try:
        yield made
    finally:
        made.close()


def node_in(lan_host_ns: str, address: str, name: str, network: str, tmp: Path) -> NodeProc:
    node = NodeProc(name, network, tmp / name, tmp)
    argv = list(node.argv)
    argv[argv.index("--interface") + 1] = address
    node.argv = ["ip", "netns", "exec", lan_host_ns, *argv]
    return node


def test_partitioned_peer_is_routed_around_then_returns(lan: Lan, tmp_path: Path) -> None:
    network = f"it-{uuid.uuid4().hex[:10]}"
    nodes = [
        node_in(h.ns, h.address, f"h{i}", network, tmp_path) for i, h in enumerate(lan.hosts, 1)
    ]
    submit: subprocess.Popen[str] | None = None
    try:
        for node in nodes:
            node.start()
        ids = {n.name: n.wait_for("ready", timeout=30)["peer_id"] for n in nodes}
        for node in nodes:
            for other in nodes:
                if other is not node:
                    node.wait_for(
                        "peer_up", lambda e, o=other: e["peer_id"] == ids[o.name], timeout=20
                    )
        h1, _h2, h3 = nodes
        cut = lan.hosts[2]

        # A client inside h1's namespace sends 3000 tasks over all three workers.
        argv = [
            "ip", "netns", "exec", lan.hosts[0].ns, *cli_argv(), "submit", "--json",
            "--interface", lan.hosts[0].address, "--network", network,
            "--data-dir", str(tmp_path / "client"), "--wait-peers", "3", "--count", "3000",
            "--concurrency", "16", "--task-timeout", "1", "--timeout", "20",
        ]  # fmt: skip
        submit = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env()
        )
        h3.wait_for("task_served", timeout=30, count=50)
        lan.cut(cut)
        out, err = submit.communicate(timeout=120)
        assert submit.returncode == 0, err[-2000:]
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["tasks"] == 3000
        assert summary["ok"] == 3000 and summary["failed"] == 0, summary
        assert "Traceback" not in err

        # The cut peer: evasive, then expired (not a bye: it never said goodbye).
        is_h3 = lambda e: e["peer_id"] == ids["h3"]  # noqa: E731
        h1.wait_for("peer_evasive", is_h3, timeout=15)
        down = h1.wait_for("peer_down", is_h3, timeout=20)
        assert down["reason"] == "expired"

        # The link heals: the same peer comes back, once.
        lan.heal(cut)
        h1.wait_for("peer_up", is_h3, timeout=40, count=2)
        h3.wait_for("peer_up", lambda e: e["peer_id"] == ids["h1"], timeout=40, count=2)
        assert h1.count("peer_up", is_h3) == 2
        assert h1.count("peer_down", is_h3) == 1
        assert all(n.alive() for n in nodes)

        # And it works again: a task lands on it when pinned there via its only route.
        again = subprocess.run(
            [*argv[: argv.index("--count")], "--count", "200", "--concurrency", "8"],
            capture_output=True,
            text=True,
            timeout=120,
            env=child_env(),
        )
        assert again.returncode == 0, again.stderr[-2000:]
        assert json.loads(again.stdout.strip().splitlines()[-1])["ok"] == 200
    finally:
        if submit is not None:
            stop_pid(submit)  # type: ignore[arg-type]
        for node in nodes:
            node.stop()
        for node in nodes:
            if node.proc is not None:
                assert "Traceback" not in node.stderr_path.read_text(errors="replace"), node.name


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
