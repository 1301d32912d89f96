"""The edge agent: devices, transports, deployment, sync, telemetry (docs/agent.md)."""
