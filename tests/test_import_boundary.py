"""The core never loads the console's UI libraries (ARCHITECTURE.md: a hard line)."""

from __future__ import annotations

import json
import subprocess
import sys

UI_PACKAGES = ("textual", "rich")

PROBE = """
import json, sys
{imports}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {ui!r})
print(json.dumps(loaded))
"""


def ui_modules_loaded_by(imports: str) -> list[str]:
    code = PROBE.format(imports=imports, ui=UI_PACKAGES)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_netcore_imports_no_textual_or_rich() -> None:
    assert ui_modules_loaded_by("import netcore, netcore.node, netcore.cli") == []


def test_every_netcore_module_imports_no_textual_or_rich() -> None:
    # Every module of every layer, found by walking the package (a new module is covered too);
    # not the scripts that rebuild shipped files (make_*.py need the `train` extra).
    imports = (
        "import pkgutil, importlib, netcore\n"
        "for info in pkgutil.walk_packages(netcore.__path__, 'netcore.'):\n"
        "    if not info.name.rpartition('.')[2].startswith(('__main__', 'make_')):\n"
        "        importlib.import_module(info.name)"
    )
    assert ui_modules_loaded_by(imports) == []


def test_the_probe_would_notice_a_ui_import() -> None:
    # Guards the test itself: if rich were imported, the probe reports it.
    assert "rich" in ui_modules_loaded_by("import netcore\nimport rich.text")
