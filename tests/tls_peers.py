"""Keys and peers of the secure-transport tests (issue 19), made at test time (CPython only).

- `Pki(folder)`: a throw-away certification authority made with `openssl`: `.issue(name, san,
  days=, expired=)` signs a key pair for a server or client; `.ca` is the CA's PEM file.
  Expired certificates come from `openssl ca` with explicit dates (OpenSSL 3.0's `x509 -days`
  cannot make one in the past).
- `storescp_tls(pki, cert, client_certs)`: dcmtk storescp's arguments for TLS (PS3.15 B.9, its
  default non-downgrading BCP 195 profile), with or without requiring our client certificate.
- `SntpServer(offset_s=, kiss=, silent=)`: an RFC 4330 server on a UDP port of 127.0.0.1 that
  answers from this host's clock moved by `offset_s`; `kiss` makes it answer with a
  kiss-of-death, `silent` not at all.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType

NTP_UNIX_OFFSET = 2208988800

_CA_CONFIG = """[ ca ]
default_ca = local
[ local ]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/issued
serial = {dir}/serial
default_md = sha256
policy = anything
copy_extensions = copy
unique_subject = no
[ anything ]
commonName = supplied
"""


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("openssl " + " ".join(args) + " failed: " + proc.stderr[-800:])


class Pki:
    """A certification authority in `folder` (created), named `name`, valid `days`."""

    def __init__(self, folder: Path, name: str = "modgate test CA", days: int = 30) -> None:
        self.dir = folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "issued").mkdir(exist_ok=True)
        (folder / "index.txt").write_text("")
        (folder / "serial").write_text("1000\n")
        (folder / "ca.cnf").write_text(_CA_CONFIG.format(dir=folder))
        self.ca = folder / "ca.pem"
        self.ca_key = folder / "ca.key"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.ca_key), "-out",
                 str(self.ca), "-days", str(days), "-subj", "/CN=" + name, cwd=folder)

    def issue(self, name: str, san: str, days: int = 10, expired: bool = False) -> tuple[Path, Path]:
        """(certificate, key) PEM files for `name` with subjectAltName `san` (e.g.
        "IP:127.0.0.1,DNS:localhost"), valid `days` from now, or valid only in 2020 (`expired`)."""
        key = self.dir / (name + ".key")
        csr = self.dir / (name + ".csr")
        cert = self.dir / (name + ".pem")
        ext = self.dir / (name + ".ext")
        ext.write_text("subjectAltName=" + san + "\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj",
                 "/CN=" + name, cwd=self.dir)
        in_2020 = ["-startdate", "20200101000000Z", "-enddate", "20200201000000Z"]
        dates = in_2020 if expired else ["-days", str(days)]
        _openssl("ca", "-batch", "-config", str(self.dir / "ca.cnf"), "-cert", str(self.ca), "-keyfile",
                 str(self.ca_key), "-in", str(csr), "-out", str(cert), "-extfile", str(ext), "-notext",
                 *dates, cwd=self.dir)
        return cert, key


def storescp_tls(ca: Path, cert: Path, key: Path, require_client: bool = False) -> list[str]:
    """storescp arguments for TLS with `cert`/`key`, trusting `ca` for client certificates."""
    return ["+tls", str(key), str(cert), "-pw", "+cf", str(ca), "-rc" if require_client else "-ic"]


class SntpServer:
    """An RFC 4330 server on 127.0.0.1 (port 0 = any); see the module docstring."""

    def __init__(self, offset_s: float = 0.0, kiss: str = "", silent: bool = False, stratum: int = 2) -> None:
        self.offset_s = offset_s
        self.kiss = kiss
        self.silent = silent
        self.stratum = stratum
        self.requests = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> SntpServer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _stamp(self, t: float) -> bytes:
        seconds = int(t) + NTP_UNIX_OFFSET
        return struct.pack(">II", seconds & 0xFFFFFFFF, int((t - int(t)) * (1 << 32)) & 0xFFFFFFFF)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(512)
            except OSError:
                continue
            self.requests += 1
            if self.silent or len(data) < 48:
                continue
            received = time.time() + self.offset_s
            version = (data[0] >> 3) & 7
            reply = bytearray(48)
            reply[0] = (version << 3) | 4  # leap 0, the client's version, mode 4 (server)
            reply[1] = 0 if self.kiss else self.stratum
            reply[2], reply[3] = data[2] or 6, 0xEC  # poll, precision (~2^-20 s)
            reply[12:16] = self.kiss.encode().ljust(4, b"\0")[:4] if self.kiss else b"LOCL"
            reply[16:24] = self._stamp(received)  # reference timestamp
            reply[24:32] = data[40:48]  # originate = the client's transmit timestamp
            reply[32:40] = self._stamp(received)
            reply[40:48] = self._stamp(time.time() + self.offset_s)
            self.sock.sendto(bytes(reply), addr)
