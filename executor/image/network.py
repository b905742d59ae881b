"""Network by DHCP on whatever the first NIC is called: the checklist item and its edits.

A VirtualBox guest names its NIC ``enp0s3`` (or ``eth0``) and often gives it a static address;
on a Nitro instance the NIC is a new device at a new PCI slot (``ens5``) that gets its address
from the VPC's DHCP server. Any configuration bound to a literal interface name therefore leaves
the instance unreachable, even when it says ``dhcp``. Every network manager the guest may use is
read, and whatever binds a name is rewritten to a name-independent DHCP configuration:

- ifupdown (``/etc/network/interfaces`` and ``interfaces.d/*``): the literal stanzas are replaced
  by ``auto /e*/1=primary`` + ``iface primary inet dhcp`` — interfaces(5), "PATTERN
  MATCHING INTERFACES": ``/VALUE/n=LOGICAL`` maps the n-th interface whose name matches the
  glob to a logical interface (https://manpages.debian.org/bookworm/ifupdown/interfaces.5.en.html).
  ``auto``, not ``allow-hotplug``: networking.service's ``ifup -a`` expands the pattern once udev
  has settled, while the hotplug path (``ifupdown-hotplug``) looks the kernel's name up literally
  in ``ifquery --allow=hotplug -l`` and so never brings a pattern up (seen booting Debian 12).
  ifupdown runs an external DHCP client; when none is installed the item fails naming the package.
- netplan: ``ethernets`` entries without ``match`` (the key is then the interface name), or
  matched by MAC address or a literal name, become one entry ``match: {name: "e*"}``,
  ``dhcp4: true`` (https://netplan.readthedocs.io/en/stable/netplan-yaml/, "match").
- NetworkManager keyfiles (``system-connections/*``): ``interface-name=`` and ``mac-address=``
  are dropped, a ``manual`` IPv4 method becomes ``auto`` (NetworkManager's own DHCP client).
- systemd-networkd (``/etc/systemd/network/*.network``): ``[Match] Name=`` becomes ``e*``,
  ``MACAddress=`` is dropped and ``[Network]`` takes ``DHCP=ipv4`` instead of static addresses.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

import yaml

from executor.image.items import CheckItem, Edit
from executor.image.disk import ExtFilesystem

ITEM = "network (DHCP)"
LOGICAL = "primary"
IFUPDOWN_BLOCK = f"auto /e*/1={LOGICAL}\niface {LOGICAL} inet dhcp\n"
NETPLAN_ENTRY = {"match": {"name": "e*"}, "dhcp4": True}
_KEYWORDS = ("auto", "allow-", "iface", "mapping", "source", "source-directory", "rename", "no-auto-down", "no-scripts")
_DHCP_CLIENTS = ("/sbin/dhclient", "/usr/sbin/dhclient", "/sbin/dhcpcd", "/usr/sbin/dhcpcd", "/sbin/udhcpc", "/usr/sbin/udhcpc", "/sbin/pump")
_WHY = "EC2 gives the instance a new NIC with a new name (ens5 on Nitro) and its address by DHCP"


@dataclass(frozen=True)
class _Found:
    """What one network manager's files say: the edits that unbind them and whether DHCP results."""

    manager: str
    edits: tuple[Edit, ...]
    dhcp: bool
    notes: tuple[str, ...]
    error: str = ""


def network_item(fs: ExtFilesystem, *, cloud_init: bool = False) -> CheckItem:
    """The checklist item for the guest's network configuration, with every edit that fixes it."""
    found = [f for f in (_netplan(fs), _ifupdown(fs), _networkmanager(fs), _networkd(fs)) if f is not None]
    errors = [f.error for f in found if f.error]
    if errors:
        return CheckItem(ITEM, "fail", errors[0])
    edits = tuple(e for f in found for e in f.edits)
    dhcp = [f for f in found if f.dhcp]
    ifupdown_only = [f.manager for f in dhcp] == ["ifupdown"]
    if ifupdown_only and not any(fs.exists(p) for p in _DHCP_CLIENTS):
        return CheckItem(ITEM, "fail", "ifupdown configures the network but no DHCP client is installed (dhclient, dhcpcd, udhcpc); install isc-dhcp-client in the VM")
    if not dhcp:
        if cloud_init:
            return CheckItem(ITEM, "pass", "cloud-init configures the network", edits)
        return CheckItem(ITEM, "fail", "no network configuration that would take a DHCP address (netplan, /etc/network/interfaces, NetworkManager, systemd-networkd)")
    notes = "; ".join(n for f in found for n in f.notes)
    if edits:
        return CheckItem(ITEM, "fix", f"{notes}; will use DHCP on the first interface, whatever its name", edits)
    return CheckItem(ITEM, "pass", notes)


def _is_pattern(name: str) -> bool:
    return any(ch in name for ch in "*?[")


# -- netplan ---------------------------------------------------------------------------------


def _netplan(fs: ExtFilesystem) -> _Found | None:
    edits, notes, dhcp, seen = [], [], False, False
    for name in fs.listdir("/etc/netplan"):
        if not name.endswith((".yaml", ".yml")):
            continue
        path = f"/etc/netplan/{name}"
        text = fs.read_text(path) or ""
        try:
            config = yaml.safe_load(text) or {}
        except yaml.YAMLError:
            return _Found("netplan", (), False, (), error=f"{path} is not valid YAML; fix it in the VM")
        network = config.get("network") if isinstance(config, dict) else None
        ethernets = (network or {}).get("ethernets") or {}
        if not isinstance(ethernets, dict) or not ethernets:
            continue
        seen = True
        bound = {key: why for key, settings in ethernets.items() if (why := _netplan_binding(key, settings or {}))}
        if not bound:
            dhcp = True
            notes.append(f"{', '.join(ethernets)} take DHCP on any name ({path})")
            continue
        network["ethernets"] = {LOGICAL: dict(NETPLAN_ENTRY)}
        after = yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
        detail = ", ".join(f"{key} {why}" for key, why in bound.items())
        edits.append(Edit(path, text, after, f"{_WHY}; {detail}"))
        notes.append(f"{detail} ({path})")
        dhcp = True
    return _Found("netplan", tuple(edits), dhcp, tuple(notes)) if seen else None


def _netplan_binding(key: str, settings: dict) -> str:
    """Why a netplan ``ethernets`` entry will not configure the instance's NIC ('' when it will)."""
    match = settings.get("match") or {}
    if "macaddress" in match:
        return "is pinned to a MAC address"
    if not match:
        reason = f"has no match, so it binds the name {key}"
    elif "name" in match and not _is_pattern(str(match["name"])):
        reason = f"matches the literal name {match['name']}"
    elif "name" in match and not fnmatch.fnmatch("ens5", str(match["name"])):
        reason = f"matches {match['name']}, which ens5 is not"
    else:
        reason = ""
    static = settings.get("dhcp4") not in (True, "true", "yes", "on")
    if static:
        reason = (reason + " and " if reason else "") + "has a static address"
    return reason


# -- ifupdown --------------------------------------------------------------------------------


def _ifupdown(fs: ExtFilesystem) -> _Found | None:
    main = fs.read_text("/etc/network/interfaces")
    if main is None:
        return None
    files = {"/etc/network/interfaces": main}
    for name in fs.listdir("/etc/network/interfaces.d"):
        text = fs.read_text(f"/etc/network/interfaces.d/{name}")
        if text is not None:
            files[f"/etc/network/interfaces.d/{name}"] = text
    logical = {m.group(1) for text in files.values() for m in re.finditer(r"^\s*(?:auto|allow-\S+)\s.*?/\S*=(\S+)", text, re.MULTILINE)}
    edits, removed, dhcp = [], [], False
    for path, text in files.items():
        after, names = _unbind_ifupdown(text, logical)
        removed += [n for n in names if n not in removed]
        dhcp = dhcp or _takes_dhcp(after, logical)
        if after != text:
            edits.append([path, text, after])
    if not dhcp and (removed or fs.exists("/sbin/ifup") or fs.exists("/usr/sbin/ifup")):
        if edits and edits[0][0] == "/etc/network/interfaces":
            edits[0][2] = _append(edits[0][2], IFUPDOWN_BLOCK)
        else:
            edits.insert(0, ["/etc/network/interfaces", main, _append(main, IFUPDOWN_BLOCK)])
        dhcp = True
    if not edits:
        return _Found("ifupdown", (), dhcp, ("ifupdown takes DHCP on the first interface by pattern",) if dhcp else ())
    if removed:
        note = f"ifupdown binds {', '.join(removed)}"
    elif logical:
        note = "ifupdown brings its pattern up on hotplug only, where names are matched literally"
    else:
        note = "ifupdown configures no interface besides lo"
    reason = f"{_WHY}; {note}"
    return _Found("ifupdown", tuple(Edit(p, b, a, reason) for p, b, a in edits), dhcp, (note + " (/etc/network/interfaces)",))


def _takes_dhcp(text: str, logical: set[str]) -> bool:
    """True when ``text`` has a DHCP stanza for a logical interface that an ``auto`` pattern brings up."""
    return any(re.search(rf"^\s*iface\s+{re.escape(name)}\s+inet\s+dhcp\b", text, re.MULTILINE) for name in logical)


def _append(text: str, block: str) -> str:
    text = text.rstrip("\n")
    return (text + "\n\n" if text.strip() else "") + block


def _unbind_ifupdown(text: str, logical: set[str]) -> tuple[str, list[str]]:
    """``text`` without the stanzas and ``auto``/``allow-`` entries naming real interfaces, and those names."""
    out, removed, skipping = [], [], False
    for line in text.splitlines(keepends=True):
        fields = line.split()
        keyword = bool(fields) and fields[0].startswith(_KEYWORDS)
        if keyword:
            skipping = False
        if fields and (fields[0] == "auto" or fields[0].startswith("allow-")):
            names = [n for n in fields[1:] if n == "lo" or n.startswith("/")]
            dropped = [n for n in fields[1:] if n not in names]
            removed += [n for n in dropped if n not in removed]
            # The hotplug path looks names up literally, so only "auto" brings a pattern up.
            start = "auto" if any(n.startswith("/") for n in names) else fields[0]
            if dropped or start != fields[0]:
                if names:
                    out.append(f"{start} {' '.join(names)}\n")
                continue
        elif len(fields) >= 2 and fields[0] == "iface" and fields[1] != "lo" and fields[1] not in logical:
            if fields[1] not in removed:
                removed.append(fields[1])
            skipping = True
            continue
        if skipping and not keyword and line.strip():
            continue
        out.append(line)
    result = re.sub(r"\n{3,}", "\n\n", "".join(out))
    return result, removed


# -- NetworkManager --------------------------------------------------------------------------


def _networkmanager(fs: ExtFilesystem) -> _Found | None:
    installed = fs.exists("/usr/sbin/NetworkManager") or fs.exists("/etc/NetworkManager/NetworkManager.conf")
    folder = "/etc/NetworkManager/system-connections"
    edits, names = [], []
    for name in fs.listdir(folder):
        path = f"{folder}/{name}"
        text = fs.read_text(path)
        if text is None or not re.search(r"^type=(ethernet|802-3-ethernet)\s*$", text, re.MULTILINE):
            continue
        after = _unbind_keyfile(text)
        if after != text:
            edits.append(Edit(path, text, after, f"{_WHY}; the connection was bound to a name, a MAC address or a static address"))
            names.append(name)
    if not installed and not edits:
        return None
    note = f"NetworkManager connection {', '.join(names)} bound to a name or static" if names else "NetworkManager configures new interfaces by DHCP"
    return _Found("NetworkManager", tuple(edits), installed, (note,))


def _unbind_keyfile(text: str) -> str:
    out, section = [], ""
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
        key = stripped.split("=", 1)[0].strip()
        if section == "[connection]" and key == "interface-name":
            continue
        if section in ("[ethernet]", "[802-3-ethernet]") and key in ("mac-address", "cloned-mac-address"):
            continue
        if section == "[ipv4]" and (key.startswith("address") or key in ("gateway", "dns", "dns-search")) and "method=manual" in text:
            continue
        if section == "[ipv4]" and stripped == "method=manual":
            line = line.replace("method=manual", "method=auto")
        out.append(line)
    return "".join(out)


# -- systemd-networkd ------------------------------------------------------------------------


def _networkd(fs: ExtFilesystem) -> _Found | None:
    folder = "/etc/systemd/network"
    edits, notes, dhcp = [], [], False
    for name in fs.listdir(folder):
        if not name.endswith(".network"):
            continue
        path = f"{folder}/{name}"
        text = fs.read_text(path) or ""
        after = _unbind_networkd(text)
        if after != text:
            edits.append(Edit(path, text, after, f"{_WHY}; the unit matched a literal name or MAC address or had a static address"))
            notes.append(f"systemd-networkd {name} bound to a name or static")
        dhcp = True
    if not dhcp:
        return None
    return _Found("systemd-networkd", tuple(edits), True, tuple(notes) or ("systemd-networkd takes DHCP on any name",))


def _unbind_networkd(text: str) -> str:
    sections: dict[str, list[str]] = {}
    order: list[str] = []
    section = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
        if section not in sections:
            sections[section] = []
            order.append(section)
        if not stripped.startswith("["):
            sections[section].append(line)
    match = sections.get("[Match]", [])
    network = sections.get("[Network]", [])
    match_bound = any(l.strip().startswith("MACAddress=") or (l.strip().startswith("Name=") and not _is_pattern(l.split("=", 1)[1])) for l in match)
    dhcp_on = any(re.match(r"\s*DHCP\s*=\s*(yes|ipv4|true)", l) for l in network)
    if not match_bound and dhcp_on:
        return text
    sections["[Match]"] = [l for l in match if l.strip() and not l.strip().startswith(("MACAddress=", "Name="))] + ["Name=e*"]
    sections["[Network]"] = [l for l in network if l.strip() and not re.match(r"\s*(DHCP|Address|Gateway|DNS)\s*=", l)] + ["DHCP=ipv4"]
    for required in ("[Match]", "[Network]"):
        if required not in order:
            order.append(required)
    blocks = []
    for name in order:
        body = sections[name]
        while body and not body[-1].strip():
            body = body[:-1]
        if name or body:
            blocks.append("\n".join(([name] if name else []) + body))
    return "\n\n".join(blocks) + "\n"
