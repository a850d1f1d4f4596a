"""Nucleo-F767ZI: on-board Ethernet (stm32 port's network.LAN), UART console and frames,
code on the internal /flash, the spool on a microSD card over SPI (the Nucleo has no slot).

Builds the port objects from board.json; no application logic lives here.
"""

import os

import boardkit
import network
from modgate.errors import ModgateError


def ethernet_link(data):
    """The on-board Ethernet (stm32 port's network.LAN): link and address come by themselves."""

    def make():
        nic = network.LAN()
        nic.active(True)
        boardkit.static_ip(nic, data["network"])
        return nic

    return boardkit.Link(make)


def mount_sdcard(storage):
    """Mount the SD card at storage["mount"] unless already there (a soft reboot keeps mounts)."""
    mount = storage["mount"]
    try:
        os.stat(mount)
        return
    except OSError:
        pass
    try:
        import sdcard
    except ImportError:
        raise ModgateError("sdcard driver missing: mpremote mip install sdcard")
    try:
        card = sdcard.SDCard(boardkit.make_spi(storage["spi"]), boardkit.pin(storage["cs"]))
        os.mount(os.VfsFat(card), mount)
    except OSError as exc:
        raise ModgateError("sd card at " + mount + " not usable: " + str(exc))


def start(argv):
    """Port objects for the app (the board contract in boards/README.md)."""
    data = boardkit.load_data(boardkit.folder_of(globals().get("__file__")))
    mount_sdcard(data["storage"])
    return boardkit.ports(data, ethernet_link(data))
