"""``gridcast provision``: broker credentials and ACL entries for a device or the agent."""

from __future__ import annotations

import argparse

from gridcast.host.cli import output
from gridcast.protocol.errors import GridcastError

HELP = "broker credentials and ACL for a device (or the agent)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("device", nargs="?", help="device id to create credentials for")
    p.add_argument("--agent", action="store_true",
                   help="create the agent's broker user instead (may send commands)")
    p.add_argument("--key-file", help="the site key the device will trust")
    p.add_argument("--broker", help="HOST:PORT the device connects to")
    p.add_argument("--mosquitto-dir", default="/etc/mosquitto/gridcast",
                   help="where the password and ACL files live")
    p.add_argument("--out", default=".", help="folder for the device's config.json")


def run(args: argparse.Namespace) -> int:
    """Credentials and ACL entries for a device (or the agent), and the device's config."""
    from gridcast.agent.provisioning import AGENT_USER, Provisioner
    from gridcast.protocol import keys

    prov = Provisioner(args.mosquitto_dir)
    if args.agent:
        done = prov.provision(args.device or AGENT_USER, role="agent")
        output.info(f"agent user {done.user}: password in {done.config_path} (set "
                    f"broker_username / broker_password in the agent's config)")
    else:
        if not args.device:
            raise GridcastError("give the device id (or --agent for the agent's user)")
        if not args.key_file:
            raise GridcastError("a device needs --key-file (the site key it will trust)")
        done = prov.provision(args.device, key=keys.load(args.key_file), broker=args.broker or "",
                              config_dir=args.out)
        output.info(f"device {done.user}: config with its credentials in {done.config_path} "
                    f"(flash it: gridcast flash --config {done.config_path} ...)")
    output.info(f"mosquitto files in {args.mosquitto_dir}: passwd, acl. The listener needs:\n"
                + prov.mosquitto_conf() + "then reload mosquitto (SIGHUP).")
    return 0
