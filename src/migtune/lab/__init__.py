"""The local two-QEMU testbed: guest build, scenarios, single runs and the matrix."""
