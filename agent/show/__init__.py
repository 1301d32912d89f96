"""The show player: set lists played as sound and lights on the agent's clock (docs/player.md)."""
