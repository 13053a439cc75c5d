"""Hardware planning: the PCIe topology (pcie) and the devices of a machine (devices)."""
