"""Raspberry Pi Pico W: Wi-Fi (CYW43439), console and frames on UARTs, littlefs flash at /.

Builds the port objects from board.json; no application logic lives here.
"""

import boardkit


def start(argv):
    """Port objects for the app (the board contract in boards/README.md)."""
    data = boardkit.load_data(boardkit.folder_of(globals().get("__file__")))
    return boardkit.ports(data, boardkit.wifi_link(data))
