"""ESP32-S3: W5500 Ethernet on SPI (esp32 port's network.LAN) or Wi-Fi, UART console and frames.

Builds the port objects from board.json; no application logic lives here.
"""

import boardkit
import machine
import network
from modgate.errors import ConfigError


def w5500_link(data):
    """The W5500: the esp32 port drives SPI Ethernet through network.LAN."""

    def make():
        spec = data["network"]
        nic = network.LAN(
            phy_type=network.PHY_W5500,
            phy_addr=spec["phy_addr"],
            spi=boardkit.make_spi(spec["spi"]),
            cs=boardkit.pin(spec["cs"]),
            int=boardkit.pin(spec["int"]),
        )
        nic.active(True)
        boardkit.static_ip(nic, spec)
        return nic

    return boardkit.Link(make)


def network_for(data):
    kind = data["network"]["kind"]
    if kind == "ethernet-w5500":
        return w5500_link(data)
    if kind == "wifi":
        return boardkit.wifi_link(data)
    if kind == "ethernet-lan8720":
        raise ConfigError("board " + data["id"] + ": " + data["network"]["lan8720_why"])
    raise ConfigError("board " + data["id"] + ": network.kind " + repr(kind) + " not supported")


def start(argv):
    """Port objects for the app (the board contract in boards/README.md)."""
    data = boardkit.load_data(boardkit.folder_of(globals().get("__file__")))
    reset = data["network"].get("reset")
    if data["network"]["kind"] == "ethernet-w5500" and reset is not None:
        boardkit.pin(reset, machine.Pin.OUT).value(1)  # hold the W5500 out of reset
    return boardkit.ports(data, network_for(data))
