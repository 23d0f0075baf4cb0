"""All the checks of ``p2pai doctor`` in order, into one report."""

from __future__ import annotations

from netcore.config.settings import Config, ConfigError, lan_addresses
from netcore.doctor.connect import check_connect
from netcore.doctor.interfaces import check_interfaces, check_multicast, list_interfaces
from netcore.doctor.mdns import Seen, browse, check_mdns
from netcore.doctor.relays import check_relays
from netcore.doctor.report import INFO, PROBLEM, RANK, Finding, Report
from netcore.doctor.system import check_firewall, check_local_clock


async def run_doctor(cfg: Config, timeout: float = 3.0) -> Report:
    try:
        cfg.validate()
    except ConfigError as exc:
        report = Report(cfg.network, list(cfg.interfaces))
        report.add(Finding("config", PROBLEM, str(exc), "fix the option or the config file"))
        return report
    interfaces = list_interfaces()
    report = Report(cfg.network, list(cfg.interfaces) or lan_addresses())
    addresses = check_interfaces(cfg, interfaces, report)
    local = {a for i in interfaces for a in i.addresses}
    ours: list[Seen] = []
    if addresses:
        check_multicast(addresses, interfaces, report)
        if cfg.mdns:
            seen, other_types, error = await browse(addresses, timeout)
            ours = check_mdns(cfg, seen, other_types, error, addresses, local, timeout, report)
        else:
            report.add(Finding("mdns", INFO, "mDNS is off (--no-mdns): only static peers"))
        await check_connect(cfg, ours, addresses, timeout, report)
    await check_relays(cfg, local, timeout, report)
    check_local_clock(report)
    check_firewall(cfg, report)
    report.findings.sort(key=lambda f: -RANK[f.status])
    return report
