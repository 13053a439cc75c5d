"""QEMU option syntax (opts) and the argv built from a hardware plan (argv)."""
