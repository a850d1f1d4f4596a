"""Serve the real firmware console (CPython, FakeDevice) on a loopback TCP port, so host tools
reach it with pyserial's `socket://` URL exactly as they reach a tty or a pty."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path
from typing import Any

from console_fakes import FakeDevice
from modgate.console.shell import Console


class _SocketStream:
    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn

    def write(self, data: bytes) -> int:
        self.conn.sendall(data)
        return len(data)


class ConsoleServer:
    def __init__(self, state_dir: Path, device: Any = None) -> None:
        self.device: Any = device or FakeDevice(str(state_dir / "config.json"))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.url = f"socket://127.0.0.1:{self.port}"
        self.received = bytearray()
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            console = Console(self.device, _SocketStream(conn))
            console.start()
            with conn:
                while True:
                    try:
                        data = conn.recv(4096)
                    except OSError:
                        break
                    if not data:
                        break
                    self.received += data
                    try:
                        asyncio.run(console.feed(data))
                    except OSError:
                        break

    def close(self) -> None:
        self._stop = True
        self.sock.close()
