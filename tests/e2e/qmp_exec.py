#!/usr/bin/env python3
"""Run QMP commands on a socket and print one JSON line per command:
{"return": …} or {"error": "…"}; `{"closed": true}` when QEMU went away.

    qmp_exec.py SOCKET '{"execute": "query-status"}' …
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import sys

from qemu.qmp import QMPClient


async def main(sock: str, commands: list[str]) -> None:
    client = QMPClient("qmp-exec")
    await asyncio.wait_for(client.connect(sock), 5)
    try:
        for text in commands:
            cmd = json.loads(text)
            try:
                ret = await asyncio.wait_for(
                    client.execute(cmd["execute"], cmd.get("arguments")), 10)
                print(json.dumps({"return": ret}), flush=True)
            except Exception as exc:
                closed = client.runstate.name != "RUNNING"
                print(json.dumps({"error": f"{type(exc).__name__}: {exc}",
                                  "closed": closed}), flush=True)
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
