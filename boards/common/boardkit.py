"""What every real board's board.py shares: reading its data, and building UARTs, the
watchdog, the RTC setter and the network link from that data with `machine`/`network`.

Only board modules import this (it is platform code, like firmware/modgate/port); the
build copies it next to board.py on the device.
"""

import json

import machine
from modgate.errors import ConfigError, ModgateError


def folder_of(module_file):
    """Folder of a module's __file__ ("" when the port gives a bare name: the current dir)."""
    path = module_file or ""
    return path.rsplit("/", 1)[0] if "/" in path else ""


def load_data(folder):
    """board.json beside board.py (deploy copies it there)."""
    with open((folder + "/" if folder else "") + "board.json") as f:
        return json.load(f)


def read_secrets(fs_root):
    """secrets.json at the file-system root ({"wifi": {"ssid": ..., "key": ...}}), {} if absent.
    Credentials never live in board.json, which is in the repository."""
    try:
        with open(fs_root.rstrip("/") + "/secrets.json") as f:
            return json.load(f)
    except OSError:
        return {}


def pin(name, mode=None):
    if mode is None:
        return machine.Pin(name)
    return machine.Pin(name, mode)


def make_uart(spec, rxbuf=1024):
    """A machine.UART from a board.json console/frames entry; reads never block (timeout=0)."""
    if spec.get("uart") is None:
        return None
    kwargs = {"baudrate": spec["baud"], "timeout": 0, "rxbuf": spec.get("rxbuf", rxbuf)}
    if not spec.get("fixed_pins"):
        # stm32 UARTs have fixed pins (named in board.json for wiring only); rp2 and
        # esp32 route any UART to the pins given.
        kwargs["tx"] = pin(spec["tx"])
        kwargs["rx"] = pin(spec["rx"])
    return machine.UART(spec["uart"], **kwargs)


def make_spi(spec):
    if spec.get("fixed_pins"):
        return machine.SPI(spec["id"], baudrate=spec["baudrate"])
    return machine.SPI(
        spec["id"],
        baudrate=spec["baudrate"],
        sck=pin(spec["sck"]),
        mosi=pin(spec["mosi"]),
        miso=pin(spec["miso"]),
    )


def make_watchdog(timeout_ms):
    """machine.WDT; once started it cannot be stopped, so the app must feed it."""
    if not timeout_ms:
        return None
    return machine.WDT(timeout=timeout_ms)


def weekday(year, month, day):
    """Monday = 0, by days since 1970-01-01 (a Thursday)."""
    y = year - (1 if month <= 2 else 0)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return (days + 3) % 7


def rtc_setter(weekday_base):
    """rtc_set(Y, M, D, h, m, s) for machine.RTC().datetime; ports count weekdays from 0 or 1."""
    rtc = machine.RTC()

    def rtc_set(year, month, day, hour, minute, second):
        rtc.datetime((year, month, day, weekday(year, month, day) + weekday_base, hour, minute, second, 0))

    return rtc_set


def static_ip(nic, network_spec):
    """Apply a fixed address when board.json gives one; "dhcp" leaves the port's default."""
    ip = network_spec.get("ip", "dhcp")
    if ip != "dhcp":
        if len(ip) != 4:
            raise ConfigError("board network.ip: expected 'dhcp' or [ip, mask, gateway, dns]")
        nic.ifconfig(tuple(ip))


def address_of(nic):
    if hasattr(nic, "ifconfig"):
        return nic.ifconfig()[0]
    return nic.ipconfig("addr4")[0]


class Link:
    """A network interface the device core brings up without ever waiting for it: `start()`
    builds and activates it (and joins, for Wi-Fi) and returns at once; `address()` is its IP
    address once it has link and one, else None. The core polls it, and starts again when the
    link stays down (the board contract, boards/README.md)."""

    def __init__(self, make, join=None):
        self.make = make  # () -> an active interface
        self.join = join  # (interface) -> None: start associating (Wi-Fi)
        self.nic = None

    def start(self):
        if self.nic is None:
            self.nic = self.make()
        if self.join is not None and not self.nic.isconnected():
            self.join(self.nic)

    def address(self):
        nic = self.nic
        if nic is None or not nic.isconnected():
            return None
        ip = address_of(nic)
        return ip if ip and ip != "0.0.0.0" else None


def wifi_link(data):
    """A Wi-Fi station: credentials from secrets.json, address by DHCP or board.json."""
    spec = data["network"]

    def make():
        import network

        if spec.get("country") and hasattr(network, "country"):
            network.country(spec["country"])
        nic = network.WLAN(network.STA_IF)
        nic.active(True)
        if not spec.get("power_save", True) and hasattr(nic, "PM_NONE"):
            nic.config(pm=nic.PM_NONE)  # power save delays replies by up to a beacon interval
        static_ip(nic, spec)
        return nic

    def join(nic):
        wifi = read_secrets(data["fs_root"]).get("wifi") or {}
        if not wifi.get("ssid"):
            raise ModgateError('wifi: no credentials; write secrets.json {"wifi": {"ssid": ..., "key": ...}}')
        nic.connect(wifi["ssid"], wifi.get("key", ""))

    return Link(make, join)


def reboot():
    machine.reset()


def ports(data, link, state_dir=None):
    """The port-object dict of the board contract (boards/README.md) for a real board."""
    console = make_uart(data["console"])
    return {
        "board": data,
        "state_dir": state_dir or data["state_dir"],
        "console_in": console,
        "console_poll": console,
        "console_out": console,
        "frame_uart": make_uart(data["frames"]),
        "network": link,
        "watchdog": make_watchdog(data["watchdog_ms"]),
        "rtc_set": rtc_setter(data["rtc_weekday_base"]) if data["rtc"] else None,
        "reboot": reboot,
        "options": {},
    }
