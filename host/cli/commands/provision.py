"""``gridcast provision``: broker logins (mosquitto's dynamic-security plugin, a device bound to
its own client id), ACLs and TLS for a device or the agent."""

from __future__ import annotations

import argparse
import os

from gridcast.host.cli import output
from gridcast.protocol.errors import GridcastError

HELP = "broker logins, ACLs and TLS (site CA, mosquitto.conf) for a device or the agent"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("device", nargs="?", help="device id to create credentials for")
    p.add_argument("--agent", action="store_true",
                   help="create the agent's broker user instead (may send commands)")
    p.add_argument("--key-file", help="the site key the device will trust")
    p.add_argument("--broker", help="HOST:PORT devices dial: turns on TLS (site CA, broker "
                                    "certificate, mosquitto.conf with one TLS listener on PORT)")
    p.add_argument("--mosquitto-dir", default="/etc/mosquitto/gridcast",
                   help="where the CA, certificates, the logins (dynsec/dynamic-security.json) "
                        "and mosquitto.conf live")
    p.add_argument("--out", default=".", help="folder for the device's config.json")
    p.add_argument("--client-cert", action="store_true",
                   help="also issue a client certificate, and make the broker require one "
                        "from every client from now on")


def _unreachable_for_broker(folder: str) -> str | None:
    """A parent folder mosquitto's own user cannot enter (it drops to it when started as
    root), or None."""
    if os.geteuid() != 0:
        return None
    path = os.path.abspath(folder)
    while True:
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
        if not os.stat(path).st_mode & 0o001:
            return path


def run(args: argparse.Namespace) -> int:
    """Credentials and ACL entries for a device (or the agent), the device's config, and
    (with --broker, or a site set up before) the site CA and a TLS-only mosquitto.conf."""
    from gridcast.agent.provisioning import AGENT_USER, Provisioner
    from gridcast.protocol import keys

    prov = Provisioner(args.mosquitto_dir)
    if args.agent:
        user = args.device or AGENT_USER
        done = prov.provision(user, role="agent", broker=args.broker or "",
                              client_cert=args.client_cert)
        url = prov.agent_url(user)
        output.info(f"agent user {done.user}: password in {done.config_path} (set "
                    f"broker_username / broker_password in the agent's config)")
        if url:
            output.info(f"agent broker URL: {url}")
    else:
        if not args.device:
            raise GridcastError("give the device id (or --agent for the agent's user)")
        if not args.key_file:
            raise GridcastError("a device needs --key-file (the site key it will trust)")
        done = prov.provision(args.device, key=keys.load(args.key_file), broker=args.broker or "",
                              config_dir=args.out, client_cert=args.client_cert)
        output.info(f"device {done.user}: config with its credentials in {done.config_path} "
                    f"(flash it: gridcast flash --config {done.config_path} ...)")
    output.info(f"{done.user}: added to the running broker" if done.live else
                f"{done.user}: written to {prov.dynsec_path} (mosquitto reads it when it "
                "starts; a running site broker is changed directly)")
    for note in done.notes:
        output.warn(note)
    if os.path.exists(prov.conf_path) and prov.site().get("broker"):
        output.info(f"TLS: site CA {prov.ca.cert_path}; broker config {prov.conf_path} "
                    f"(run: mosquitto -c {prov.conf_path})")
        blocked = _unreachable_for_broker(args.mosquitto_dir)
        if blocked:
            output.warn(f"{blocked} is closed to other users: mosquitto, started as root, "
                        f"drops to its own user and cannot read {args.mosquitto_dir} "
                        f"(chmod o+x {blocked}, or put the folder elsewhere)")
    else:
        output.info(f"logins in {prov.dynsec_path}. The listener needs:\n"
                    + prov.mosquitto_conf() + "then restart mosquitto. Give --broker "
                    "HOST:PORT to set up TLS and a complete mosquitto.conf.")
    return 0
