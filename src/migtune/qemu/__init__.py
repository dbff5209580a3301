"""Real QEMU: QMP client facade, process control, version checks, the migration driver
and the management-layer policies it can follow."""
