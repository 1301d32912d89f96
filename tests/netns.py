"""Network namespaces that hold only a loopback interface, for tests that multicast.

Ableton Link finds peers by UDP multicast on every interface that is up. Run in the
machine's own namespace, it would send to the LAN; so every Link peer of the tests
and the bench runs inside a namespace made here: only ``lo`` (up, 127.0.0.1), no
other link, no route out. Link scans ``lo`` like any other interface and two peers in
one such namespace find each other over it (checked: Link 3.0.6's posix interface
scan keeps every interface that is up, loopback included).

``loopback_netns()`` makes one with a unique name, checks that it is isolated, and
always deletes it (ending what still runs inside it: only processes started there by
this run). Namespaces left by a run that was killed (its pid is gone) are deleted
the next time. Needs root and iproute2's ``ip netns`` (CI has both).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator

PREFIX = "gridcast-link"


class NetnsError(RuntimeError):
    """A namespace could not be made or is not isolated; the message says why."""


def _ip(*args: str, check: bool = True) -> str:
    ip = shutil.which("ip")
    if ip is None:
        raise NetnsError("iproute2's `ip` command is missing: apt-get install iproute2 "
                         "(the Link tests run their peers in a network namespace)")
    proc = subprocess.run([ip, *args], capture_output=True, text=True, timeout=10)
    if check and proc.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip() or proc.returncode}"
                         " (network namespaces need root: run the Link tests as root)")
    return proc.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delete(name: str) -> None:
    # What still runs in the namespace was started there by this helper's user (the
    # name is unique to one run): end it by pid, then the namespace can go.
    for line in _ip("netns", "pids", name, check=False).split():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(line), signal.SIGKILL)
    _ip("netns", "delete", name, check=False)


def remove_stale() -> None:
    """Delete namespaces of this helper left by runs whose process is gone."""
    for line in _ip("netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        if not name.startswith(PREFIX + "-") or len(parts) < 4 or not parts[-2].isdigit():
            continue
        if not _pid_alive(int(parts[-2])):
            _delete(name)


def check_isolated(name: str) -> None:
    """Raise NetnsError unless namespace ``name`` has only ``lo``, up, and no route out."""
    links = [line.split(":")[1].strip().split("@")[0]
             for line in _ip("-n", name, "-o", "link", "show").splitlines() if line.strip()]
    if links != ["lo"]:
        raise NetnsError(f"namespace {name} has interfaces {links}, expected only lo")
    if "UP" not in _ip("-n", name, "-o", "link", "show", "lo"):
        raise NetnsError(f"loopback of namespace {name} is not up")
    routes = _ip("-n", name, "route", "show").strip()
    if routes:
        raise NetnsError(f"namespace {name} has routes beyond loopback: {routes!r}")


@contextlib.contextmanager
def loopback_netns() -> Iterator[str]:
    """A fresh isolated namespace (only ``lo``, up); yields its name; always deleted."""
    if os.geteuid() != 0:
        raise NetnsError("network namespaces need root: run the Link tests as root "
                         "(CI does)")
    remove_stale()
    name = f"{PREFIX}-{os.getpid()}-{secrets.token_hex(4)}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        check_isolated(name)
        yield name
    finally:
        _delete(name)


def in_netns(name: str, argv: list[str]) -> list[str]:
    """``argv`` to run inside namespace ``name``."""
    ip = shutil.which("ip") or "ip"
    return [ip, "netns", "exec", name, *argv]
