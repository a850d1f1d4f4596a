"""Boards: every board.json against the schema and the budgets, and every board.py imported and
started (real boards with the fake `machine`/`network` of tests/fakes), on CPython and MicroPython."""

import json
import sys
import unittest

import support
from modgate.errors import ConfigError, ModgateError
from modgate.port import fs

ROOT = __file__.rsplit("/", 3)[0] if __file__.count("/") >= 3 else "../.."
BOARDS = ROOT + "/boards"
FAKES = ROOT + "/tests/fakes"
HARDWARE = ("esp32-s3", "nucleo-f767zi", "pico-w")
EMULATORS = ("qemu-armhf", "unix")
BAREMETAL = ("qemu-mps2",)  # bare-metal MicroPython in qemu-system-arm (tests/e2e/test_baremetal.py)
# What mpy-cross 1.29 accepts for -march (see `mpy-cross --help`).
MPY_ARCHS = (
    "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp", "xtensa", "xtensawin",
    "rv32imc", "rv64imc",
)
NETWORK_KINDS = ("host", "wifi", "ethernet-w5500", "ethernet-lan8720", "ethernet-stm32", "none")
CONTRACT_KEYS = ("board", "state_dir", "console_in", "console_poll", "console_out", "frame_uart", "network",
                 "watchdog", "rtc_set", "reboot", "options")
# Modules a board import brings in; dropped after each test so the fakes never leak into other tests.
TRANSIENT = ("board", "boardkit", "machine", "network", "sdcard")


def board_ids():
    return [name for name in fs.listdir(BOARDS) if fs.exists(BOARDS + "/" + name + "/board.json")]


def board_data(board_id):
    with open(BOARDS + "/" + board_id + "/board.json") as f:
        return json.load(f)


class BoardImport(unittest.TestCase):
    """Imports boards/<id>/board.py as `board`, with the fakes first on the path."""

    def setUp(self):
        self._path = list(sys.path)
        self._forget()

    def tearDown(self):
        self._forget()
        sys.path[:] = self._path

    def _forget(self):
        for name in TRANSIENT:
            if name in sys.modules:
                del sys.modules[name]

    def load(self, board_id):
        self._forget()
        sys.path[:] = [BOARDS + "/" + board_id, BOARDS + "/common", FAKES] + self._path
        board = __import__("board")
        self.machine = __import__("machine")
        self.network = __import__("network")
        self.machine.clear()
        self.network.clear()
        return board


class TestBoardData(unittest.TestCase):
    def test_every_board_is_listed(self):
        self.assertEqual(sorted(board_ids()), sorted(HARDWARE + EMULATORS + BAREMETAL))

    def test_schema(self):
        for board_id in board_ids():
            data = board_data(board_id)
            self.assertEqual(data["id"], board_id)
            self.assertIn(data["kind"], ("emulator", "hardware", "qemu-system"))
            self.assertIn(data["mpy_cross_arch"], MPY_ARCHS)
            for key in ("heap_budget_bytes", "flash_budget_bytes", "spool_budget_bytes"):
                self.assertIsInstance(data[key], int)
                self.assertGreater(data[key], 16 * 1024)
            for key in ("heap_budget_why", "flash_budget_why", "name", "mcu"):
                self.assertGreater(len(data[key]), 10)
            self.assertIn(data["network"]["kind"], NETWORK_KINDS)
            self.assertIsInstance(data["rtc"], bool)
            self.assertIsInstance(data["features"], list)
            for extra in data["extra_modules"]:
                self.assertTrue(fs.exists(BOARDS + "/" + extra), extra)

    def test_hardware_boards_have_pins_watchdog_and_a_flash_root(self):
        for board_id in HARDWARE:
            data = board_data(board_id)
            for role in ("console", "frames"):
                spec = data[role]
                self.assertIsInstance(spec["uart"], int)
                self.assertIsNotNone(spec["tx"])
                self.assertIsNotNone(spec["rx"])
                self.assertGreaterEqual(spec["baud"], 9600)
            self.assertNotEqual(data["console"]["uart"], data["frames"]["uart"])
            self.assertGreater(data["watchdog_ms"], 1000)
            self.assertTrue(data["fs_root"].startswith("/"))
            self.assertTrue(data["state_dir"].startswith("/"))
            self.assertIn(data["rtc_weekday_base"], (0, 1))
            # The port's make line the board's frozen manifest goes with (modgate build's recipe).
            self.assertTrue(data["image_make"].startswith("make -C ports/"))

    def test_emulators_run_with_the_smallest_board_heap(self):
        smallest = min(HARDWARE, key=lambda b: board_data(b)["heap_budget_bytes"])
        floor = board_data(smallest)["heap_budget_bytes"]
        # The whole device's floor; the send job alone is held to 64 KB (tests/e2e, -X heapsize=64k).
        self.assertLessEqual(floor, 96 * 1024)
        for board_id in EMULATORS + BAREMETAL:
            data = board_data(board_id)
            self.assertEqual(data["heap_budget_bytes"], floor)
            self.assertEqual(data["heap_budget_from"], smallest)
        # The 32-bit emulator runs at exactly the floor, with the floor board's RAM-driven defaults
        # (the x86-64 one has twice the heap: its objects are twice as wide).
        armhf = board_data("qemu-armhf")
        self.assertEqual(armhf["emulated_heap_bytes"], floor)
        self.assertEqual(armhf.get("config_defaults"), board_data(smallest).get("config_defaults"))
        self.assertEqual(board_data("unix")["emulated_heap_bytes"], 2 * floor)

    def test_every_board_says_whether_it_offers_tls(self):
        # DICOM TLS (issue 19): which boards carry a TLS association in their heap, and why.
        for board_id in board_ids():
            data = board_data(board_id)
            self.assertIn(data["tls"], (True, False), board_id)
            self.assertTrue(len(data["tls_why"]) > 20, board_id)
        self.assertFalse(board_data("pico-w")["tls"])  # measured: it does not fit 96 KB
        offered = [b for b in HARDWARE if board_data(b)["tls"]]
        smallest = min(offered, key=lambda b: board_data(b)["heap_budget_bytes"])
        floor = board_data(smallest)["heap_budget_bytes"]
        # The emulators model pico-w, so no TLS at their heap; at tls_heap_bytes they model the
        # smallest board that offers it (twice that on 64-bit words).
        armhf, unix = board_data("qemu-armhf"), board_data("unix")
        self.assertFalse(armhf["tls"] or unix["tls"])
        self.assertEqual(armhf["tls_heap_bytes"], floor)
        self.assertEqual(unix["tls_heap_bytes"], 2 * floor)
        self.assertEqual(armhf["frames"]["allow"], ["127.0.0.1"])  # their modality link: loopback
        for board_id in HARDWARE:
            self.assertNotIn("allow", board_data(board_id)["frames"])  # the frame UART, no TCP source

    def test_the_watchdog_fits_the_rp2040(self):
        self.assertLessEqual(board_data("pico-w")["watchdog_ms"], 8388)


class TestEmulatorBoard(BoardImport):
    def test_start_gives_the_contract(self):
        for board_id in EMULATORS:
            board = self.load(board_id)
            argv = ["--state", "/tmp/x/", "--frames-port", "0", "--dest", "A@h:1", "--dest", "B@h:2"]
            ports = board.start(argv)
            for key in CONTRACT_KEYS:
                self.assertIn(key, ports)
            self.assertEqual(ports["board"]["id"], board_id)
            self.assertEqual(ports["state_dir"], "/tmp/x")
            self.assertEqual(ports["options"], {"frames-port": "0", "dest": ["A@h:1", "B@h:2"]})
            ports["network"].start()
            self.assertEqual(ports["network"].address(), "127.0.0.1")
            self.assertIsNone(ports["watchdog"])
            self.assertIsNone(ports["frame_uart"])

    def test_the_emulated_cable_can_be_pulled(self):
        board = self.load("unix")
        folder = support.scratch_dir("cable")
        self.addCleanup(support.remove_tree, folder)
        link = board.start(["--state", folder])["network"]
        self.assertEqual(link.address(), "127.0.0.1")
        fs.write_atomic(folder + "/link-down", b"")
        self.assertIsNone(link.address())
        fs.remove(folder + "/link-down")
        self.assertEqual(link.address(), "127.0.0.1")

    def test_the_emulated_watchdog_writes_a_byte_per_feed(self):
        board = self.load("unix")
        folder = support.scratch_dir("wdt")
        self.addCleanup(support.remove_tree, folder)
        # The emulator gives a pipe's /dev/fd/N; any writable path shows the contract.
        ports = board.start(["--state", folder, "--watchdog", folder + "/feeds"])
        ports["watchdog"].feed()
        ports["watchdog"].feed()
        self.assertEqual(fs.read_bytes(folder + "/feeds"), b"..")
        self.assertNotIn("watchdog", ports["options"])

    def test_state_is_required(self):
        board = self.load("unix")
        with self.assertRaises(ConfigError):
            board.start(["--frames-port", "0"])
        with self.assertRaises(ConfigError):
            board.start(["--state"])

    def test_reboot_exits_with_the_restart_code(self):
        board = self.load("unix")
        ports = board.start(["--state", "/tmp/x"])
        with self.assertRaises(SystemExit) as caught:
            ports["reboot"]()
        code = caught.exception.args[0] if caught.exception.args else None
        self.assertEqual(code, ports["board"]["reboot_exit_code"])

    def test_stdin_reader_never_waits(self):
        board = self.load("unix")
        folder = support.scratch_dir("stdin")
        self.addCleanup(support.remove_tree, folder)
        fs.write_atomic(folder + "/in", b"abc")
        with open(folder + "/in", "rb") as f:
            reader = board.StdinReader(f)
            self.assertEqual(reader.read(2), b"ab")
            self.assertEqual(reader.read(10), b"c")
            self.assertEqual(reader.read(10), b"")  # end of input


class TestRealBoards(BoardImport):
    def test_start_builds_uarts_watchdog_and_rtc_from_the_data(self):
        for board_id in ("esp32-s3", "pico-w"):
            board = self.load(board_id)
            ports = board.start([])
            data = ports["board"]
            for key in CONTRACT_KEYS:
                self.assertIn(key, ports)
            self.assertEqual(data["id"], board_id)
            self.assertEqual(ports["state_dir"], data["state_dir"])
            console, frames = ports["console_in"], ports["frame_uart"]
            self.assertIs(console, ports["console_out"])
            self.assertEqual(console.args, (data["console"]["uart"],))
            self.assertEqual(console.kwargs["baudrate"], data["console"]["baud"])
            self.assertEqual(console.kwargs["timeout"], 0)
            self.assertEqual(console.kwargs["tx"].args, (data["console"]["tx"],))
            self.assertEqual(frames.args, (data["frames"]["uart"],))
            self.assertEqual(frames.kwargs["rxbuf"], data["frames"]["rxbuf"])
            self.assertEqual(ports["watchdog"].kwargs, {"timeout": data["watchdog_ms"]})
            console.feed(b"status\r\n")
            self.assertEqual(console.read(6), b"status")
            ports["rtc_set"](2026, 11, 27, 17, 5, 9)  # a Friday
            rtc = self.machine.of_type(self.machine.RTC)[0]
            self.assertEqual(rtc.value, (2026, 11, 27, 4 + data["rtc_weekday_base"], 17, 5, 9, 0))
            ports["reboot"]()
            self.assertEqual(self.machine.reset_calls[0], 1)

    def test_weekday(self):
        self.load("pico-w")
        boardkit = __import__("boardkit")
        self.assertEqual(boardkit.weekday(1970, 1, 1), 3)
        self.assertEqual(boardkit.weekday(2024, 2, 29), 3)
        self.assertEqual(boardkit.weekday(2000, 1, 3), 0)

    def test_wifi_needs_credentials_then_joins(self):
        board = self.load("pico-w")
        ports = board.start([])
        folder = support.scratch_dir("secrets")
        self.addCleanup(support.remove_tree, folder)
        ports["board"]["fs_root"] = folder
        link = ports["network"]
        with self.assertRaises(ModgateError):
            link.start()
        self.assertIsNone(link.address())
        fs.write_atomic(folder + "/secrets.json", b'{"wifi": {"ssid": "ward3", "key": "k"}}')
        link.start()  # returns at once: the core polls address() instead of waiting
        self.assertEqual(link.address(), "192.0.2.10")
        nic = self.network.interfaces[-1]
        self.assertEqual(nic.joined, ("ward3", "k"))
        self.assertEqual(nic.settings, {"pm": nic.PM_NONE})
        self.assertEqual(self.network.country(), "GB")

    def test_no_link_means_no_address_and_a_later_join(self):
        board = self.load("pico-w")
        ports = board.start([])
        folder = support.scratch_dir("nolink")
        self.addCleanup(support.remove_tree, folder)
        ports["board"]["fs_root"] = folder
        fs.write_atomic(folder + "/secrets.json", b'{"wifi": {"ssid": "ward3"}}')
        self.network.behaviour["link"] = False
        link = ports["network"]
        link.start()
        self.assertIsNone(link.address())  # never waits, never raises: the core keeps polling
        self.network.behaviour["link"] = True
        link.start()  # the core starts it again after a while: it joins this time
        self.assertEqual(link.address(), "192.0.2.10")
        self.assertEqual(len(self.network.interfaces), 1)  # the same interface, joined again

    def test_esp32_s3_w5500_wiring(self):
        board = self.load("esp32-s3")
        ports = board.start([])
        spec = ports["board"]["network"]
        reset_pin = [p for p in self.machine.of_type(self.machine.Pin) if p.args == (spec["reset"], 1)]
        self.assertEqual(reset_pin[0].value(), 1)
        ports["network"].start()
        self.assertEqual(ports["network"].address(), "192.0.2.10")
        nic = self.network.interfaces[-1]
        self.assertIsInstance(nic, self.network.LAN)
        self.assertEqual(nic.kwargs["phy_type"], self.network.PHY_W5500)
        self.assertEqual(nic.kwargs["cs"].args, (spec["cs"],))
        spi = self.machine.of_type(self.machine.SPI)[-1]
        self.assertEqual(spi.kwargs["sck"].args, (spec["spi"]["sck"],))

    def test_esp32_s3_refuses_lan8720(self):
        board = self.load("esp32-s3")
        data = board_data("esp32-s3")
        data["network"]["kind"] = "ethernet-lan8720"
        with self.assertRaises(ConfigError) as caught:
            board.network_for(data)
        self.assertIn("EMAC", str(caught.exception))
        data["network"]["kind"] = "wifi"
        self.assertTrue(hasattr(board.network_for(data), "address"))

    def test_nucleo_needs_its_sd_card(self):
        board = self.load("nucleo-f767zi")
        with self.assertRaises(ModgateError) as caught:
            board.start([])  # no /sd here and no sdcard driver
        self.assertIn("sdcard", str(caught.exception))
        folder = support.scratch_dir("sd")
        self.addCleanup(support.remove_tree, folder)
        board.mount_sdcard({"mount": folder})  # already mounted: nothing to do

    def test_nucleo_ethernet_and_fixed_pin_uarts(self):
        board = self.load("nucleo-f767zi")
        boardkit = __import__("boardkit")
        data = board_data("nucleo-f767zi")
        ports = boardkit.ports(data, board.ethernet_link(data))
        self.assertNotIn("tx", ports["console_in"].kwargs)  # stm32 UART pins are fixed
        ports["network"].start()
        self.assertEqual(ports["network"].address(), "192.0.2.10")
        self.assertIsInstance(self.network.interfaces[-1], self.network.LAN)
        data["network"]["ip"] = ["10.1.2.3", "255.255.255.0", "10.1.2.1", "10.1.2.1"]
        fixed = boardkit.ports(data, board.ethernet_link(data))["network"]
        fixed.start()
        self.assertEqual(fixed.address(), "10.1.2.3")


class FakeCmsdkUart:
    """The registers of one CMSDK UART (DATA, STATE, CTRL, BAUDDIV) at `base`, as machine.mem32
    shows them: a byte waits in DATA while STATE has RXFULL; what the board writes to DATA goes out."""

    def __init__(self, base, incoming=b""):
        self.base = base
        self.incoming = bytearray(incoming)
        self.sent = bytearray()
        self.regs = {}

    def __getitem__(self, addr):
        offset = addr - self.base
        if offset == 4:  # STATE: never TXFULL, RXFULL while bytes wait
            return 2 if self.incoming else 0
        if offset == 0:
            byte = self.incoming[0]
            self.incoming[:] = self.incoming[1:]
            return byte
        return self.regs.get(offset, 0)

    def __setitem__(self, addr, value):
        offset = addr - self.base
        if offset == 0:
            self.sent.append(value)
        else:
            self.regs[offset] = value


class TestBareMetalBoard(BoardImport):
    """qemu-mps2's board module drives registers and RAM it is handed: checked here against fakes,
    and for real on the board in tests/e2e/test_baremetal.py."""

    def test_uart_setup_reads_and_writes(self):
        board = self.load("qemu-mps2")
        data = board.load_data()
        base = data["frames"]["base"]
        regs = FakeCmsdkUart(base, b"MGFR-abc")
        uart = board.CmsdkUart(base, data["frames"]["baud"], regs)
        self.assertEqual(regs.regs[16], 25000000 // 921600)  # BAUDDIV from the board's baud rate
        self.assertEqual(regs.regs[8], 3)  # TX and RX enabled
        self.assertEqual(uart.any(), 1)
        self.assertEqual(uart.ioctl(3, 1 | 4), 1 | 4)  # poll: readable and writable
        buf = bytearray(5)
        self.assertEqual(uart.readinto(buf), 5)
        self.assertEqual(bytes(buf), b"MGFR-")
        self.assertEqual(uart.read(10), b"abc")
        self.assertIsNone(uart.read(10))  # nothing waits: None, as machine.UART with timeout=0
        self.assertEqual(uart.ioctl(3, 1), 0)
        self.assertEqual(uart.write(b"ACK"), 3)
        self.assertEqual(bytes(regs.sent), b"ACK")

    def test_ram_blocks(self):
        board = self.load("qemu-mps2")
        blocks = board.RamBlocks(bytearray(8 * 512), 512)
        self.assertEqual(blocks.ioctl(4, 0), 8)  # block count
        self.assertEqual(blocks.ioctl(5, 0), 512)  # block size
        blocks.writeblocks(2, b"littlefs", 10)
        out = bytearray(8)
        blocks.readblocks(2, out, 10)
        self.assertEqual(bytes(out), b"littlefs")
        whole = bytearray(512)
        blocks.readblocks(3, whole)
        self.assertEqual(bytes(whole), bytes(512))
