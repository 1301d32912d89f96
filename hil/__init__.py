"""The hardware-in-the-loop bench: simulated devices, fault injectors, scenarios."""
