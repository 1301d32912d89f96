"""mosquitto.conf for a provisioned site: one TLS listener, the dynamic-security plugin
(logins, their client ids and ACLs: agent/dynsec.py), limits.

``gridcast provision`` writes it to MOSQUITTO_DIR/mosquitto.conf, complete: ``mosquitto
-c MOSQUITTO_DIR/mosquitto.conf`` runs it as it is. There is no plain listener: a
CONNECT in clear text would show every password to anyone on the venue's Wi-Fi.

The limits are mosquitto's own (mosquitto 2.0 has no per-client message *rate*
limit; the agent throttles a flooding device on ingest):

- ``max_packet_size``: the largest MQTT packet accepted. gridcast's largest are bundle
  chunks (<= 8 KiB) and device frames (<= 2 KiB); 64 KiB leaves room and stops a client
  from making the broker buffer megabytes.
- ``max_connections``: per listener, above any venue's fleet, below what exhausts
  the broker's file descriptors.
- ``max_inflight_messages``: unacknowledged QoS 1 messages per client. Above the
  collector's batch (it acknowledges after each database commit, up to 5,000), so
  it bounds a stuck client without slowing a healthy agent.
- ``max_queued_messages`` / ``max_queued_bytes``: what the broker holds for one
  slow or offline client (the agent's persistent session across a restart).
- ``max_keepalive``: a client may not ask to be left alone for longer.
"""

from __future__ import annotations

import os

from gridcast.agent import dynsec

LIMITS = {
    "max_packet_size": 65536,
    "max_connections": 2000,
    "max_inflight_messages": 10000,
    "max_queued_messages": 100000,
    "max_queued_bytes": 64 * 1024 * 1024,
    "max_keepalive": 300,
}


def security_lines(dynsec_file: str, plugin: str | None = None) -> str:
    """The lines that make mosquitto authenticate and authorise with the plugin and its
    file (``plugin``: its path on the broker's machine, found here by default)."""
    return (f"plugin {plugin or dynsec.plugin_path()}\n"
            f"plugin_opt_config_file {os.path.abspath(dynsec_file)}\n")


def render(folder: str, port: int, *, require_client_cert: bool = False,
           bind: str | None = None, run_as_root: bool = False,
           persistence_dir: str | None = None, extra: str = "",
           plugin: str | None = None) -> str:
    """The config text. ``folder`` holds ca.crt, broker.crt/.key and
    dynsec/dynamic-security.json. ``bind``: an address to listen on (default: every
    interface, where devices are)."""
    d = os.path.abspath(folder)
    lines = [
        "# Written by `gridcast provision`; running it again rewrites this file.",
        "# Run: mosquitto -c " + os.path.join(d, "mosquitto.conf"),
        "per_listener_settings false",
        "allow_anonymous false",
        "# Logins, their client ids and ACLs (add users with gridcast provision).",
        *security_lines(os.path.join(d, "dynsec", "dynamic-security.json"),
                        plugin).splitlines(),
        "",
        "# The only listener: TLS. Devices verify this certificate against ca.crt.",
        f"listener {port}" + (f" {bind}" if bind else ""),
        f"cafile {d}/ca.crt",
        f"certfile {d}/broker.crt",
        f"keyfile {d}/broker.key",
        "tls_version tlsv1.2",  # the minimum; TLS 1.3 is negotiated where both have it
        f"require_certificate {'true' if require_client_cert else 'false'}",
        "use_identity_as_username false",  # the password and the plugin still decide
        "",
        "# Limits (see docs/agent.md, provisioning).",
        *(f"{k} {v}" for k, v in LIMITS.items()),
        "",
        # Nagle on the broker's sends delays small sync answers unevenly.
        "set_tcp_nodelay true",
    ]
    if persistence_dir:
        data = os.path.abspath(persistence_dir)
        lines += ["persistence true", f"persistence_location {data}/", "autosave_interval 60",
                  # The agent reads why devices fail TLS from here (agent/broker_log.py).
                  "log_dest stderr", f"log_dest file {data}/mosquitto.log",
                  "log_timestamp_format %Y-%m-%dT%H:%M:%S"]
    if run_as_root:  # a child process of a root test or demo: no user switch
        lines.append("user root")
    return "\n".join(lines) + "\n" + extra
