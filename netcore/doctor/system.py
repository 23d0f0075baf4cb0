"""Checks of this machine: its clock (NTP) and its firewall (check 5, local side, and 6)."""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import socket
import subprocess
import time

from netcore.config.settings import Config
from netcore.doctor.report import INFO, OK, PROBLEM, WARN, Finding, Report


def ntp_state() -> str | None:
    """``synced``, ``unsynced`` or ``None`` when the kernel cannot tell (adjtimex)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        buf = ctypes.create_string_buffer(1024)  # struct timex, modes = 0: read only
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return "unsynced" if state == 5 else "synced"  # TIME_ERROR


def check_local_clock(report: Report) -> None:
    now = time.time()
    if now < 1_700_000_000:
        report.add(Finding(
            "clock", PROBLEM, f"this machine's clock says {time.strftime('%Y-%m-%d', time.gmtime(now))}",
            "set the date and enable time sync: timedatectl set-ntp true",
        ))  # fmt: skip
        return
    state = ntp_state()
    if state == "unsynced":
        report.add(Finding(
            "clock", INFO, "this machine's clock is not synchronised (NTP)",
            "timedatectl set-ntp true (or run chrony/ntpd); nodes work without it, but logs "
            "of different machines will not line up",
        ))  # fmt: skip
    elif state == "synced":
        report.add(Finding("clock", OK, "this machine's clock is synchronised"))


def _run(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=3, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def check_firewall(cfg: Config, report: Report) -> None:
    port = str(cfg.port) if cfg.port else "<port>"
    hints: list[str] = []
    ufw = _run(["ufw", "status"])
    if ufw and "Status: active" in ufw:
        hints.append(f"ufw is active: ufw allow 5353/udp && ufw allow {port}/tcp")
    if _run(["firewall-cmd", "--state"]):
        hints.append(
            f"firewalld runs: firewall-cmd --add-service=mdns --add-port={port}/tcp (add "
            "--permanent to keep it)"
        )
    nft = _run(["nft", "list", "ruleset"])
    if nft and ("policy drop" in nft or " drop" in nft or " reject" in nft):
        hints.append(
            f"nftables drops some input: nft add rule inet filter input udp dport 5353 accept; "
            f"nft add rule inet filter input tcp dport {port} accept"
        )
    ipt = _run(["iptables", "-S", "INPUT"])
    if ipt and ("-P INPUT DROP" in ipt or "-j DROP" in ipt or "-j REJECT" in ipt):
        hints.append(
            f"iptables drops some input: iptables -I INPUT -p udp --dport 5353 -j ACCEPT; "
            f"iptables -I INPUT -p tcp --dport {port} -j ACCEPT"
        )
    port_hint = "" if cfg.port else " A fixed --port makes the rule simple."
    if hints:
        report.add(Finding("firewall", WARN, "a firewall filters incoming traffic here",
                           " | ".join(hints) + port_hint))  # fmt: skip
    elif any(_run([tool, "--version"]) is not None for tool in ("nft", "iptables", "ufw")):
        report.add(Finding("firewall", OK, "no firewall rule here drops UDP 5353 or TCP"))
    else:
        report.add(Finding(
            "firewall", INFO, "no firewall tool found to inspect on this machine",
            f"if one runs here or on the peers, allow UDP 5353 (mDNS) and TCP {port}.{port_hint}",
        ))  # fmt: skip
    if cfg.port:
        busy = []
        for address in cfg.interfaces or ("0.0.0.0",):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((address, cfg.port))
                except OSError:
                    busy.append(address)
        if busy:
            report.add(Finding(
                "port", INFO, f"TCP port {cfg.port} is in use on {', '.join(busy)} (a node "
                "already running?)", "a second node here needs another --port",
            ))  # fmt: skip
