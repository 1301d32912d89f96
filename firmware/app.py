"""The device application: wires the parts together and answers the agent.

``main(board)`` is all a board's /main.py calls. The board object is the
hardware boundary (clock, LEDs, serial, sensors); everything else here is the
same on an ESP32 and in the simulator.
"""

import asyncio
import gc

from gridcast.firmware import config as config_mod
from gridcast.firmware.auth import CommandAuth
from gridcast.firmware.clock import LocalClock
from gridcast.firmware.clocksync import SyncEstimator
from gridcast.firmware.keystore import DeviceKeys
from gridcast.firmware.leds import Renderer
from gridcast.firmware.player import Player
from gridcast.firmware.store import BundleStore
from gridcast.firmware.telemetry import Telemetry
from gridcast.protocol import messages, topics, transfer
from gridcast.protocol.errors import ProtocolError
from gridcast.protocol.reasons import (
    BAD_CONFIG,
    BAD_SIGNATURE,
    INTERNAL,
    NOT_FOUND,
    OK,
    RATE_OUT_OF_RANGE,
    REORDERED,
    REPLAYED,
    STALE,
    STORAGE_ERROR,
    UNAUTHENTICATED,
    UNKNOWN_KEY,
    UNKNOWN_MESSAGE,
    WRONG_SESSION,
)

FW_VERSION = config_mod.FW_VERSION
# Largest message the device takes: a chunk of this size is copied a few times on
# its way from the socket to flash, and must fit in a fragmented 256 KB heap.
MAX_FRAME = 2048
TELEMETRY_WORK_US = 100000  # time allowed for building a telemetry batch (see telemetry_loop)
SYNC_REFIT_WORK_US = 30000  # time allowed for the clock-skew refit (see sync_refit_loop)
# Refusals of the authentication checks: always counted, answered at most every
# AUTH_REPLY_US, so that a flood of forgeries cannot become a flood of replies.
_AUTH_REASONS = (UNAUTHENTICATED, BAD_SIGNATURE, UNKNOWN_KEY, REPLAYED, REORDERED, STALE,
                 WRONG_SESSION)
AUTH_REPLY_US = 100000
_DEVICE_KINDS = ("hello", "chunk_ack", "chunk_nack", "activated", "rejected", "sync_req",
                 "telemetry", "status")


class Device:
    def __init__(self, board, cfg, cfg_error=None):
        self.board = board
        self.cfg = cfg
        self.clock = LocalClock(board)
        self.sync = SyncEstimator(defer_refit=True)
        self._refit_wanted = asyncio.Event()
        self.keys = DeviceKeys(cfg)
        self.store = BundleStore(self.keys.bundle, FW_VERSION)
        self.receiver = transfer.Receiver(self.store, self.keys.bundle, FW_VERSION)
        self.leds = Renderer(board, cfg["led_count"])
        self.telemetry = Telemetry()
        # Sealed messages name this boot (the boot id of hello and telemetry).
        self.auth = CommandAuth(self.keys, self.telemetry.boot, self.sync)
        self._auth_replied_us = -AUTH_REPLY_US
        self.player = Player(board, self.clock, self.sync, self.leds, self.telemetry, self.store)
        self.settings = config_mod.load_settings()
        self.player.light_offset_us = self.settings["light_offset_us"]
        self.links = []
        self.started_us = self.clock.now_us()
        self.sync_seq = 0
        self.cfg_error = cfg_error
        if cfg_error is not None:
            self.telemetry.count_error(BAD_CONFIG)
            board.log("config: %s" % cfg_error)

    # --- messages out -------------------------------------------------------
    def hello_message(self):
        active = self.store.active()
        return messages.encode("hello", proto_version=messages.PROTOCOL_VERSION,
                               fw_version=FW_VERSION, device_id=self.cfg["device_id"],
                               max_frame=MAX_FRAME, window=4,
                               active_track=active[0] if active else "",
                               active_version=active[1] if active else 0,
                               light_offset_us=self.player.light_offset_us,
                               auth=self.keys.mode, boot=self.telemetry.boot,
                               key_ids=self.keys.ids_text())

    def status_message(self, state):
        active = self.store.active()
        return messages.encode("status", state=state, fw_version=FW_VERSION,
                               active_track=active[0] if active else "",
                               bundle_version=active[1] if active else 0,
                               uptime_s=(self.clock.now_us() - self.started_us) // 1000000,
                               light_offset_us=self.player.light_offset_us)

    def primary_link(self):
        for link in self.links:
            if link.connected:
                return link
        return None

    # --- messages in --------------------------------------------------------
    async def handle(self, payload, link, received_us):
        try:
            msg = messages.decode(payload)
        except ProtocolError as exc:
            self.telemetry.count_error(exc.code)
            await link.reply(messages.encode("error", reason=exc.code, detail=str(exc)[:200]))
            return
        try:
            msg = self.auth.check(msg, received_us)
        except ProtocolError as exc:
            await self._refuse(exc, msg, link)
            return
        try:
            reply = self._dispatch(msg, received_us)
        except ProtocolError as exc:
            self.telemetry.count_error(exc.code)
            reply = messages.encode("error", reason=exc.code, detail=str(exc)[:200],
                                    ref_tag=msg.tag)
        except Exception as exc:
            self.telemetry.count_error(INTERNAL)
            reply = messages.encode("error", reason=INTERNAL, detail=repr(exc)[:200],
                                    ref_tag=msg.tag)
        if reply is not None:
            await link.reply(reply)
            if msg.kind in ("activate", "rollback"):
                await self.publish_status()
        elif msg.kind == "light_offset":
            await self.publish_status()  # retained: the registry learns the new offset
        elif msg.kind in ("key_install", "key_retire"):
            await self.publish_hello()  # retained: every agent learns which keys it holds

    # --- authentication (docs/protocol.md 11) ---------------------------------
    async def _refuse(self, exc, msg, link):
        """Count a refused message; answer it unless it is a sync answer (those get none)
        or the last authentication refusal was answered under AUTH_REPLY_US ago."""
        self.telemetry.count_error(exc.code)
        tag = self.auth.inner_tag or msg.tag  # what was refused: the sealed one's content
        if tag == messages.SYNC_RESP:
            return
        if exc.code in _AUTH_REASONS:
            now = self.clock.now_us()
            if now - self._auth_replied_us < AUTH_REPLY_US:
                return
            self._auth_replied_us = now
        self.board.log("refused %s: %s" % (msg.kind, exc))
        await link.reply(messages.encode("error", reason=exc.code, detail=str(exc)[:200],
                                         ref_tag=tag))

    def _install_key(self, msg):
        try:
            self.auth.install(msg)
        except OSError as exc:
            return self._result(STORAGE_ERROR, msg, "keys.json: %s" % exc)
        self.board.log("key %s installed (held: %s)" % (msg.key_id, self.keys.ids_text()))
        return None

    def _retire_keys(self, msg):
        try:
            self.auth.retire(msg)
        except OSError as exc:
            return self._result(STORAGE_ERROR, msg, "keys.json: %s" % exc)
        self.board.log("keys retired but %s" % msg.key_id)
        return None

    def _dispatch(self, msg, received_us):
        kind = msg.kind
        if kind == "sync_resp":
            # (unsealed ones only reach here on a device that takes them: _authenticate)
            self.sync.add(msg.t1_us, msg.t2_us, msg.t3_us, received_us)
            if self.sync.refit_due:
                self._refit_wanted.set()
            return None
        if kind in ("bundle_offer", "chunk", "activate"):
            # A repeated activate (the agent resent it) is answered again and changes
            # nothing: the play that followed the first one may already hold.
            repeat = kind == "activate" and msg.transfer_id == self.receiver.activated[0]
            reply = self.receiver.handle(msg)
            if reply is None:
                return None
            if reply.kind == "activated" and kind == "activate" and not repeat:
                self.player.bundle_changed(msg.at_us)
            return reply.payload
        if kind == "rollback":
            if self.store.rollback():
                self.player.bundle_changed()
                t, v, sha = self.store.active()
                return messages.encode("activated", track_id=t, bundle_version=v, sha256=sha)
            return self._rejected(NOT_FOUND, "no previous bundle to roll back to")
        if kind == "play":
            return self._result(self.player.play(msg.track_id, msg.start_us, msg.rate_ppm), msg,
                                "track %r is not the active bundle" % msg.track_id)
        if kind == "stop":
            return self._result(self.player.stop(msg.at_us), msg, "")
        if kind == "seek":
            return self._result(self.player.seek(msg.position_us, msg.at_us, msg.rate_ppm),
                                msg, "nothing is playing")
        if kind == "rate":
            return self._result(self.player.set_rate(msg.rate_ppm, msg.at_us), msg,
                                "no bundle is playing")
        if kind == "live_beats":
            return self._result(self.player.live_beats(msg), msg,
                                "generation %d is not newer than %d"
                                % (msg.generation, self.player.live.generation))
        if kind == "live_env":
            return self._result(self.player.live_env.replace(msg), msg, "")
        if kind == "light_offset":
            return self._set_light_offset(msg)
        if kind == "key_install":
            return self._install_key(msg)
        if kind == "key_retire":
            return self._retire_keys(msg)
        if kind in _DEVICE_KINDS:
            self.telemetry.count_error(UNKNOWN_MESSAGE)
            return messages.encode("error", reason=UNKNOWN_MESSAGE,
                                   detail="%s is sent by devices, not to them" % kind,
                                   ref_tag=msg.tag)
        return None

    def _set_light_offset(self, msg):
        messages.check_light_offset(msg.offset_us)
        if msg.offset_us != self.settings["light_offset_us"]:
            settings = dict(self.settings)
            settings["light_offset_us"] = msg.offset_us
            try:
                config_mod.save_settings(settings)
            except OSError as exc:
                return self._result(STORAGE_ERROR, msg, "settings.json: %s" % exc)
            self.settings = settings
        self.player.light_offset_us = msg.offset_us
        return None

    def _rejected(self, code, detail):
        self.telemetry.count_error(code)
        return messages.encode("rejected", transfer_id=0, reason=code, detail=detail)

    def _result(self, code, msg, detail):
        if code == OK:
            return None
        if code == RATE_OUT_OF_RANGE:
            detail = "rate %d ppm is outside %d..%d (92-108 %%)" % (
                msg.rate_ppm, messages.MIN_RATE_PPM, messages.MAX_RATE_PPM)
        self.telemetry.count_error(code)
        return messages.encode("error", reason=code, detail=detail, ref_tag=msg.tag)

    async def publish_hello(self):
        """Say hello again (the key ids changed): retained on MQTT, a frame elsewhere."""
        hello = self.hello_message()
        for link in self.links:
            if not link.connected:
                continue
            if link.name == "mqtt":
                await link.client.publish(link.topic[topics.HELLO], hello, 1, True)
            else:  # serial, BLE: the message kind tells the agent it is a hello
                await link.reply(hello)

    async def publish_status(self):
        for link in self.links:
            if link.connected:
                await link.send_status(self.status_message("online"))

    # --- loops ---------------------------------------------------------------
    async def sync_loop(self):
        period_ms = 1000 // self.cfg["sync_hz"]
        while True:
            link = self.primary_link()
            if link is not None:
                self.sync_seq += 1
                t1 = self.clock.now_us()
                self.auth.open_syncs.add(self.sync_seq, t1)
                await link.send_sync(messages.encode("sync_req", seq=self.sync_seq, t1_us=t1))
            await asyncio.sleep_ms(period_ms)

    async def sync_refit_loop(self):
        """Refit the clock skew once a second (when a bin closes), between beats: the
        fit takes about 0.4 ms on a PC and tens of ms on a board, and run from the
        message handler it could hold the event loop just before a beat."""
        while True:
            await self._refit_wanted.wait()
            self._refit_wanted.clear()
            await self.player.quiet(SYNC_REFIT_WORK_US)
            self.sync.refit()

    async def telemetry_loop(self):
        while True:
            await asyncio.sleep_ms(1000 * self.cfg["telemetry_s"])
            link = self.primary_link()
            if link is None:
                continue
            # A batch turns older beats into drift with the two-sided clock estimate:
            # about 1 ms for 30 beats on a PC, tens of ms on a board. Build it between
            # beats, never in the stretch before one.
            await self.player.quiet(TELEMETRY_WORK_US)
            if self.player.playing and self.player.free_after_gc:
                free = self.player.free_after_gc  # measured after the last beat's collection
            else:
                gc.collect()  # not playing: a collection here disturbs nothing
                free = gc.mem_free()
            batch = self.telemetry.batch(self.sync, self.clock.now_us(), self.board.cpu_percent(),
                                         self.board.temperature_c(), free)
            await link.send_telemetry(batch)

    async def clock_keeper(self):
        """Read the clock often enough that 2**30 tick wraps are never missed."""
        while True:
            self.clock.now_us()
            await asyncio.sleep_ms(1000)

    async def run(self):
        self.store.recover()
        if self.cfg_error is not None:
            self.leds.error(BAD_CONFIG)
        else:
            self.leds.off()
        cfg = self.cfg
        if cfg.get("broker_host") and self.cfg_error is None:
            from gridcast.firmware.links import MqttLink

            self.links.append(MqttLink(self, cfg["device_id"], cfg["broker_host"],
                                       cfg["broker_port"], cfg["mqtt_user"],
                                       cfg["mqtt_password"]))
        serial = self.board.serial_streams() if cfg["serial"] else None
        if serial is not None:
            from gridcast.firmware.links import SerialLink

            self.links.append(SerialLink(self, serial[0], serial[1]))
        tasks = [asyncio.create_task(link.run()) for link in self.links]
        tasks.append(asyncio.create_task(self.player.run()))
        tasks.append(asyncio.create_task(self.sync_loop()))
        tasks.append(asyncio.create_task(self.sync_refit_loop()))
        tasks.append(asyncio.create_task(self.telemetry_loop()))
        tasks.append(asyncio.create_task(self.clock_keeper()))
        await asyncio.gather(*tasks)


def main(board):
    cfg, err = config_mod.load()
    device = Device(board, cfg, err)
    board.device = device
    try:
        asyncio.run(device.run())
    finally:
        asyncio.new_event_loop()
