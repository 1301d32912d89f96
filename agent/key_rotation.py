"""Rolling a new site key out to devices with no dark moment (docs/protocol.md 11).

1. install: each device gets ``key_install`` sealed under the command key it holds,
   carrying its next command key and the new site key, each wrapped under that key;
   the device keeps both and says hello again (hello.key_ids lists both).
2. switch: from the moment a device's hello lists the new key, the transport's signer
   seals everything for it under the new key (each device on its own, no common instant).
3. retire: ``key_retire`` sealed under the new key makes each device drop the old one;
   the signer then forgets the old site key.

A device that does not confirm within the timeout keeps the old key (and the agent keeps
sealing for it with the old key): ``RotationError`` names it and nothing is retired.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from gridcast.agent.transport import Transport
from gridcast.protocol import command_auth, messages, topics
from gridcast.protocol.errors import GridcastError
from gridcast.protocol.key_id import key_id

POLL_S = 0.05


class RotationError(GridcastError):
    """Some devices did not take the new key; the message names them."""


@dataclass
class Rotation:
    installed_s: float = 0.0  # from the first key_install to the last device's hello
    retired_s: float = 0.0
    devices: list[str] = field(default_factory=list)


def _holds(transport: Transport, device_id: str, kid: str, only: bool = False) -> bool:
    hello = transport.hellos.get(device_id)
    held = hello.key_ids.split(",") if hello is not None and hello.key_ids else []
    return held == [kid] if only else kid in held


async def _until(transport: Transport, ids: list[str], kid: str, only: bool,
                 timeout_s: float, step: str) -> None:
    deadline = time.monotonic() + timeout_s
    while missing := [d for d in ids if not _holds(transport, d, kid, only)]:
        if time.monotonic() > deadline:
            raise RotationError(f"key rotation: {', '.join(missing)} did not {step} key {kid} "
                                f"within {timeout_s:g} s (their last hello lists "
                                + "; ".join(f"{d}: {_held_text(transport, d)}" for d in missing)
                                + "); they keep the keys they hold")
        await asyncio.sleep(POLL_S)


def _held_text(transport: Transport, device_id: str) -> str:
    hello = transport.hellos.get(device_id)
    return (hello.key_ids or "no keys") if hello is not None else "no hello"


async def rotate(transport: Transport, device_ids: list[str], new_site_key: bytes,
                 retire: bool = True, timeout_s: float = 10.0) -> Rotation:
    """Install ``new_site_key`` on ``device_ids``, switch to it, and (``retire``) retire
    the old one. The transport's signer must hold the current site key."""
    signer = transport.signer
    if signer is None:
        raise RotationError("key rotation needs the current site key (GRIDCAST_KEY_FILE or "
                            "a CommandSigner on the transport)")
    bundle_kid = key_id(new_site_key)
    out = Rotation(devices=list(device_ids))
    start = time.monotonic()
    for device_id in device_ids:
        hello = transport.hellos.get(device_id)
        if hello is None or not hello.auth:
            raise RotationError(f"key rotation: {device_id} does not check sealed messages "
                                "(no hello with auth > 0: firmware before protocol 3?)")
        current = signer.key_for(device_id, hello)
        new_key, new_kid = signer.device_key(device_id, new_site_key)
        install = messages.encode(
            "key_install", key_id=new_kid,
            key=command_auth.wrap(current[0], b"c", new_key, new_kid),
            bundle_key_id=bundle_kid,
            bundle_key=command_auth.wrap(current[0], b"b", new_site_key, bundle_kid))
        await transport.send(device_id, topics.CMD,
                             signer.seal(device_id, hello, install, key=current))
    signer.add_key(new_site_key)  # preferred for each device as soon as its hello lists it
    new_kids = {d: signer.device_key(d, new_site_key)[1] for d in device_ids}
    for device_id in device_ids:
        await _until(transport, [device_id], new_kids[device_id], False, timeout_s, "install")
    out.installed_s = time.monotonic() - start
    if not retire:
        return out
    start = time.monotonic()
    for device_id in device_ids:
        await transport.send(device_id, topics.CMD,
                             messages.encode("key_retire", key_id=new_kids[device_id]))
    for device_id in device_ids:
        await _until(transport, [device_id], new_kids[device_id], True, timeout_s, "keep only")
    signer.forget_old_keys()
    out.retired_s = time.monotonic() - start
    return out
