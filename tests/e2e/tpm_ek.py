"""Print the public area of a TPM state's RSA endorsement key (persistent handle
0x81010001, where swtpm_setup puts it), as hex, reading a *copy* of the state.

    python3 tpm_ek.py STATE_DIR

A private swtpm is started on a copy of STATE_DIR (the original is never opened by a
TPM, so nothing in it changes), then TPM2_ReadPublic is sent over swtpm's data socket:
the EK public key is derived from the TPM's endorsement seed, so two states print the
same text only if they are the same TPM.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

EK_HANDLE = 0x81010001
TPM_ST_NO_SESSIONS = 0x8001
TPM_CC_READ_PUBLIC = 0x00000173


def _command(sock: socket.socket, body: bytes) -> bytes:
    sock.sendall(body)
    head = b""
    while len(head) < 10:
        chunk = sock.recv(10 - len(head))
        if not chunk:
            raise RuntimeError("swtpm closed the connection")
        head += chunk
    _, size, rc = struct.unpack(">HII", head)
    rest = b""
    while len(rest) < size - 10:
        chunk = sock.recv(size - 10 - len(rest))
        if not chunk:
            raise RuntimeError("short TPM response")
        rest += chunk
    if rc != 0:
        raise RuntimeError(f"TPM error 0x{rc:x}")
    return rest


def read_ek(state_dir: str) -> str:
    work = tempfile.mkdtemp(prefix="tpm-ek-")
    try:
        copy = os.path.join(work, "state")
        shutil.copytree(state_dir, copy)
        lock = os.path.join(copy, ".lock")
        if os.path.exists(lock):
            os.unlink(lock)
        data = os.path.join(work, "data.sock")
        ctrl = os.path.join(work, "ctrl.sock")
        proc = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={copy}",
             "--server", f"type=unixio,path={data}", "--ctrl", f"type=unixio,path={ctrl}",
             "--flags", "not-need-init,startup-clear"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 10
            while not os.path.exists(data):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"swtpm did not start: {proc.stderr}")
                time.sleep(0.05)
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(data)
                body = struct.pack(">HIII", TPM_ST_NO_SESSIONS, 14, TPM_CC_READ_PUBLIC,
                                   EK_HANDLE)
                out = _command(s, body)
            (size,) = struct.unpack(">H", out[:2])
            return out[2:2 + size].hex()
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    print(read_ek(sys.argv[1]))
