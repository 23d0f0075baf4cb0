"""Issue 16's adversary targets, measured: real processes, a fresh requester data dir each.

Honest ``p2pai node``s on 127.0.0.2, .3 and .4 (distinct hosts); adversaries from
``tests/liar.py`` on 127.0.0.1; ``p2pai submit --json`` from 127.0.0.1 (tests/adversaries.py).

* ``sybil``: a 3-identity farm in one process claiming capacity 64 each, all ``wrong_label``;
  ``--redundancy 3 --vote label``, 60 tasks. Target: accuracy >= 0.9, 0 failed.
* ``colluders``: 2 identities in one process, ``wrong_label``; ``--redundancy 3``, 60 tasks;
  then the colluders leave and the same requester runs ``--redundancy 3`` and ``1`` (20 each).
  Target: accuracy >= 0.9, 0 failed after.
* ``evader``: honest on the bundled held-out samples' bytes only; ``--redundancy 1
  --spot-check 0.2``, 200 tasks of other inputs (tests/adversaries.py ``unseen_inputs``).
  Target: <= 5% of the results served by it, 0 failed.
* ``liar``: 1 ``wrong_label`` worker; ``--redundancy 3``, 300 tasks. Target: 0 failed,
  accuracy >= 0.95.

``--code DIR`` runs the honest nodes and the requester from another checkout (e.g. the base
commit, to see the attacks succeed without the defence). Prints one JSON object.

Usage: python benchmarks/adversary_bench.py [--only sybil,evader] [--code /path/to/checkout]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from adversaries import Scene, scene, unseen_inputs

SCENARIOS = ("sybil", "colluders", "evader", "liar")


def sybil(s: Scene) -> dict[str, Any]:
    s.three_honest()
    s.adversary("farm", "wrong_label", identities=3, capacity=64)
    summary = s.submit("requester", "--count", "60", "--redundancy", "3", "--vote", "label",
                       "--wait-peers", "6")  # fmt: skip
    return s.figures(summary)


def colluders(s: Scene) -> dict[str, Any]:
    s.three_honest()
    gang = s.adversary("gang", "wrong_label", identities=2)
    during = s.figures(s.submit("requester", "--count", "60", "--redundancy", "3",
                                "--wait-peers", "5"))  # fmt: skip
    gang.stop()
    after3 = s.figures(s.submit("requester", "--count", "20", "--redundancy", "3"))
    after1 = s.figures(s.submit("requester", "--count", "20", "--redundancy", "1"))
    return {"during": during, "after_r3": after3, "after_r1": after1}


def evader(s: Scene) -> dict[str, Any]:
    s.three_honest()
    s.adversary("evader", "evader", capacity=64)
    inputs = unseen_inputs(s.base / "unseen.npz")
    summary = s.submit("requester", "--count", "200", "--redundancy", "1", "--spot-check",
                       "0.2", "--input", str(inputs), "--wait-peers", "4")  # fmt: skip
    return s.figures(summary)


def liar(s: Scene) -> dict[str, Any]:
    s.three_honest()
    s.adversary("liar", "wrong_label")
    summary = s.submit("requester", "--count", "300", "--redundancy", "3", "--wait-peers", "4")
    return s.figures(summary)


RUNS = {"sybil": sybil, "colluders": colluders, "evader": evader, "liar": liar}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--code", type=Path, default=None)
    args = parser.parse_args()
    out: dict[str, Any] = {"code": str(args.code or "this checkout")}
    for name in args.only.split(","):
        with (
            tempfile.TemporaryDirectory(prefix=f"adv-{name}-") as tmp,
            scene(Path(tmp), args.code) as s,
        ):
            out[name] = RUNS[name](s)
        print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
