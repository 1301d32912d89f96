"""What a deployment says to each device: the bundle transfer, and the rollback command.

Per device, ``protocol.transfer.Sender`` decides what to send; this module owns
time: a reply timeout that backs off (jittered, capped) when nothing comes, and a
limit on consecutive silent rounds after which the device is reported as
unreachable. Devices are served in parallel; a failure on one never stops the
others, and each gets one result. Which devices, in which order, and when to roll
back is the deployment service's call (agent/deployment.py).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from gridcast.agent.transport import Transport, TransportError
from gridcast.protocol import messages, reasons, topics
from gridcast.protocol.transfer import Sender

REPLY_TIMEOUT_S = 1.0
ROLLBACK_TIMEOUT_S = 5.0
MAX_TIMEOUT_S = 8.0
MAX_SILENT_ROUNDS = 6
# Errors about damaged bytes on the link, not about the transfer: answered by resending.
LINK_ERRORS = (reasons.BAD_FRAME, reasons.TRUNCATED, reasons.TOO_LARGE)


@dataclass
class DeployResult:
    id: str
    ok: bool
    error: str = ""
    reason: str = ""
    seconds: float = 0.0
    bytes: int = 0
    resends: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


async def deploy_one(transport: Transport, device_id: str, bundle: bytes, track_id: str,
                     bundle_version: int, *, chunk_bytes: int | None = None,
                     window: int | None = None, reply_timeout_s: float = REPLY_TIMEOUT_S,
                     progress: Callable[[str, int], None] | None = None) -> DeployResult:
    started = time.monotonic()
    sender = Sender(bundle, random.getrandbits(31) + 1,
                    chunk_bytes or transport.chunk_bytes_for(device_id),
                    window or transport.window, track_id, bundle_version)
    replies = transport.queue(device_id)
    while not replies.empty():  # stale replies of an earlier transfer
        replies.get_nowait()
    result = DeployResult(device_id, False, bytes=len(bundle))
    outgoing = [sender.offer()]
    timeout = reply_timeout_s
    silent = 0
    reported = 0
    try:
        while not sender.finished:
            for out in outgoing:  # chunks on the bundle topic, offer/activate as commands
                await transport.send(device_id, topics.BUNDLE if out.kind == "chunk"
                                     else topics.CMD, out.payload)
            outgoing = []
            try:
                # asyncio.timeout, not wait_for: wait_for can swallow a cancellation that
                # races with a reply, leaving a cancelled transfer running (Python 3.11).
                async with asyncio.timeout(timeout):
                    item = await replies.get()
            except TimeoutError:
                silent += 1
                if silent >= MAX_SILENT_ROUNDS:
                    result.error = (f"{device_id}: no answer after {silent} tries "
                                    f"({sender.acked} of {len(bundle)} bytes acknowledged)")
                    result.reason = "timeout"
                    break
                timeout = min(timeout * 2, MAX_TIMEOUT_S) * random.uniform(0.8, 1.2)
                outgoing = sender.on_timeout()
                result.resends += len(outgoing)
                continue
            silent = 0
            timeout = reply_timeout_s
            msg = item.message  # decoded by the link
            if msg.kind == "error":
                if msg.reason in LINK_ERRORS:  # a frame was damaged on the way: send again
                    outgoing = sender.on_timeout()
                    result.resends += len(outgoing)
                    continue
                result.error = f"{device_id}: {reasons.name(msg.reason)}: {msg.detail}"
                result.reason = reasons.name(msg.reason)
                break
            outgoing = sender.on_reply(msg)
            if progress is not None and sender.acked > reported:
                progress(device_id, sender.acked - reported)
                reported = sender.acked
    except TransportError as exc:
        result.error = f"{device_id}: {exc}"
        result.reason = "transport"
    if sender.state == "done":
        result.ok = True
        result.error = ""
        if progress is not None and len(bundle) > reported:
            progress(device_id, len(bundle) - reported)
    elif sender.state == "failed" and sender.error is not None:
        code, detail = sender.error
        result.reason = reasons.name(code)
        result.error = f"{device_id}: rejected ({result.reason}): {detail}"
    result.seconds = round(time.monotonic() - started, 3)
    return result


async def deploy(transport: Transport, device_ids: list[str], bundle: bytes, track_id: str,
                 bundle_version: int, *, parallel: int = 128,
                 progress: Callable[[str, int], None] | None = None,
                 **options: object) -> list[DeployResult]:
    """Deploy to every device (at most ``parallel`` at once); results in the given order."""
    gate = asyncio.Semaphore(parallel)

    async def one(device_id: str) -> DeployResult:
        async with gate:
            return await deploy_one(transport, device_id, bundle, track_id, bundle_version,
                                    progress=progress, **options)  # type: ignore[arg-type]

    return list(await asyncio.gather(*(one(d) for d in device_ids)))


async def rollback_one(transport: Transport, device_id: str,
                       timeout_s: float = ROLLBACK_TIMEOUT_S,
                       expect: tuple[str, int] | None = None) -> DeployResult:
    """Tell a device to return to its previous bundle (its store keeps it); ok once the
    device answers ``activated`` (naming ``expect``, (track, version), when given)."""
    started = time.monotonic()
    result = DeployResult(device_id, False)
    replies = transport.queue(device_id)
    while not replies.empty():
        replies.get_nowait()
    try:
        await transport.send(device_id, topics.CMD, messages.encode("rollback"))
        async with asyncio.timeout(timeout_s):
            while True:
                reply = (await replies.get()).message
                kind = reply.kind
                if kind in ("activated", "rejected", "error"):
                    break
    except TimeoutError:
        result.error, result.reason = "no answer to rollback", "timeout"
    except TransportError as exc:
        result.error, result.reason = f"rollback not sent ({exc})", "transport"
    else:
        result.ok = kind == "activated"
        if not result.ok:
            result.error, result.reason = f"rollback refused ({kind})", kind
        elif expect is not None and (reply.track_id, reply.bundle_version) != expect:
            result.ok = False
            result.error = (f"rolled back to {reply.track_id!r} v{reply.bundle_version}, not "
                            f"{expect[0]!r} v{expect[1]}")
            result.reason = "other_bundle"
    result.seconds = round(time.monotonic() - started, 3)
    return result


async def rollback(transport: Transport, device_ids: list[str],
                   timeout_s: float = ROLLBACK_TIMEOUT_S,
                   expect: tuple[str, int] | None = None) -> list[DeployResult]:
    """Roll every device back at once; results in the given order."""
    return list(await asyncio.gather(*(rollback_one(transport, d, timeout_s, expect)
                                       for d in device_ids)))
