"""The only package that touches the platform: files, sockets, clock, serial streams.

These modules serve the unix board (emulator) and any MicroPython port with a POSIX-like VFS
and a BSD socket module. A real board's board.py builds the hardware objects (UART, network,
watchdog, RTC) and hands them to the app; nothing above this package imports platform modules.
"""
