"""Everything that touches the host: processes, systemd, QMP, sysfs, netlink."""
