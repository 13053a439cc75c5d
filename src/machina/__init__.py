"""machina: a lightweight, opinionated virtual machine manager for QEMU/KVM hosts."""

__version__ = "0.1.0"
