"""Fake `network` for board import tests: interfaces that come up when told to.

`behaviour["link"]` False keeps every interface down (for timeout tests); `interfaces` lists
every interface built, so a test can check the board's arguments.
"""

STA_IF = 0
AP_IF = 1
PHY_W5500 = 17
PHY_LAN8720 = 1

interfaces = []
behaviour = {"link": True, "ip": "192.0.2.10"}
_country = [None]


def country(code=None):
    if code is None:
        return _country[0]
    _country[0] = code
    return None


class _Interface:
    PM_NONE = 0x10

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs
        self._active = False
        self._connected = False
        self._static = None
        self.joined = None
        self.settings = {}
        interfaces.append(self)

    def active(self, state=None):
        if state is None:
            return self._active
        self._active = bool(state)
        if self._active and self._wired():
            self._connected = behaviour["link"]
        return None

    def _wired(self):
        return True

    def config(self, **kwargs):
        self.settings.update(kwargs)

    def isconnected(self):
        return self._active and self._connected

    def ifconfig(self, config=None):
        if config is not None:
            self._static = tuple(config)
            return None
        if self._static:
            return self._static
        if self.isconnected():
            return (behaviour["ip"], "255.255.255.0", "192.0.2.1", "192.0.2.1")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")


class WLAN(_Interface):
    def _wired(self):
        return False

    def connect(self, ssid, key=None):
        self.joined = (ssid, key)
        self._connected = self._active and behaviour["link"]

    def disconnect(self):
        self._connected = False


class LAN(_Interface):
    pass


class WIZNET5K(_Interface):
    pass


def clear():
    del interfaces[:]
    behaviour["link"] = True
    behaviour["ip"] = "192.0.2.10"
    _country[0] = None
