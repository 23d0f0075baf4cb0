"""Run the README's "Add your own model in 5 minutes" walk-through N times, each on a fresh network.

The Python block and the shell block are read out of README.md itself, so what is run is what
a user reads. Each try: a new temporary folder, a new network name, a new data dir for the
user, and `p2pai node` workers (fresh data dirs, so they lack the model and must fetch it)
bound to 127.0.0.1; then every command of the shell block, in order, as a new user would
type them. A try fails when a command exits non-zero or a task fails. Needs scikit-learn and
skl2onnx (`pip install -e '.[train]'`), as the README says.

Usage: python benchmarks/readme_walkthrough.py [--tries 20] [--workers 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Add your own model in 5 minutes"


def readme_blocks() -> tuple[str, list[str]]:
    """The section's Python code (export.py) and its shell commands, from README.md."""
    text = (ROOT / "README.md").read_text("utf-8")
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    python = re.search(r"```python\n(.*?)```", section, re.S)
    shell = re.search(r"```sh\n(.*?)```", section, re.S)
    if python is None or shell is None:
        raise SystemExit(f"README.md: no python and sh blocks under {SECTION!r}")
    commands = []
    for line in shell.group(1).splitlines():
        command = re.sub(r"\s+#.*$", "", line).strip()
        if command and not command.startswith("#"):
            commands.append(command)
    return python.group(1), commands


def p2pai_argv() -> list[str]:
    script = Path(sys.executable).with_name("p2pai")
    return [str(script)] if script.exists() else [sys.executable, "-m", "netcore.cli"]


def one_try(workers: int, code: str, commands: list[str]) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="walk-"))
    network = f"walk-{secrets.token_hex(5)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2PAI_")}
    env.update(P2PAI_INTERFACE="127.0.0.1", P2PAI_NETWORK=network, P2PAI_DATA_DIR=str(work / "me"))
    procs: list[subprocess.Popen[bytes]] = []
    steps: list[dict[str, Any]] = []
    started = time.perf_counter()
    try:
        for i in range(workers):
            worker_env = {**env, "P2PAI_DATA_DIR": str(work / f"w{i}")}
            procs.append(
                subprocess.Popen(
                    [*p2pai_argv(), "node", "--name", f"w{i}"],
                    env=worker_env,
                    cwd=work,
                    stdout=subprocess.DEVNULL,
                    stderr=(work / f"w{i}.log").open("wb"),
                )
            )
        (work / "export.py").write_text(code)
        for command in commands:
            argv = shlex.split(command)
            if argv[0] == "python":
                argv[0] = sys.executable
            elif argv[0] == "p2pai":
                argv = [*p2pai_argv(), *argv[1:]]
            elif argv[0] == "printf":  # the labels file
                out = subprocess.run(argv, cwd=work, capture_output=True, timeout=30)
                target = command.rsplit(">", 1)[1].strip()
                (work / target).write_bytes(out.stdout)
                continue
            t0 = time.perf_counter()
            done = subprocess.run(
                argv, cwd=work, env=env, capture_output=True, text=True, timeout=120
            )
            steps.append(
                {
                    "command": command,
                    "rc": done.returncode,
                    "seconds": round(time.perf_counter() - t0, 2),
                    "stdout": done.stdout[-2000:],
                    "stderr": done.stderr[-2000:],
                }
            )
            if done.returncode != 0 or "FAILED" in done.stdout:
                return {"ok": False, "network": network, "steps": steps, "dir": str(work)}
        return {
            "ok": True,
            "network": network,
            "seconds": round(time.perf_counter() - started, 2),
            "steps": [{k: s[k] for k in ("command", "rc", "seconds")} for s in steps],
        }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if all(s["rc"] == 0 and "FAILED" not in s.get("stdout", "") for s in steps):
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    code, commands = readme_blocks()
    results = []
    for i in range(args.tries):
        result = one_try(args.workers, code, commands)
        results.append(result)
        if not args.json:
            state = f"ok in {result['seconds']} s" if result["ok"] else "FAILED"
            print(f"try {i + 1:>2}/{args.tries} on {result['network']}: {state}", flush=True)
            if not result["ok"]:
                last = result["steps"][-1]
                print(f"  $ {last['command']}  (exit {last['rc']}; kept {result['dir']})")
                print("  " + (last["stdout"] + last["stderr"]).strip().replace("\n", "\n  "))
    passed = sum(r["ok"] for r in results)
    if args.json:
        print(json.dumps({"tries": args.tries, "passed": passed, "results": results}))
    else:
        print(f"{passed}/{args.tries} walk-throughs passed")
    return 0 if passed == args.tries else 1


if __name__ == "__main__":
    sys.exit(main())
