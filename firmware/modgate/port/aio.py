"""The event loop's facilities the device core needs, the same on CPython and MicroPython.

Both runtimes have `asyncio`, but they differ where it matters here: MicroPython sleeps and times
out in milliseconds (`sleep_ms`, `wait_for_ms`) and waits on a stream through its scheduler's
poll queue; CPython works in seconds and waits on a file descriptor with `add_reader`. This
module hides the difference: `readable`/`writable` suspend the calling task until a socket, tty
or UART is ready (or a timeout passes) while every other task goes on. Only one task may wait on
one stream in one direction at a time (MicroPython's I/O queue holds one waiter per direction).
"""

import asyncio

CancelledError = asyncio.CancelledError
TimeoutError = asyncio.TimeoutError
create_task = asyncio.create_task
run = asyncio.run


# MicroPython's asyncio loads its lock module on first use: only the device core needs it, not a
# job like `send`.
def Lock():  # noqa: N802 - stands for the class
    return asyncio.Lock()

try:
    from asyncio import core as _core  # MicroPython: the scheduler and its I/O queue

    _io_queue = _core._io_queue
except ImportError:  # pragma: no cover - CPython
    _io_queue = None

if hasattr(asyncio, "sleep_ms"):
    sleep_ms = asyncio.sleep_ms
    wait_for_ms = asyncio.wait_for_ms
else:  # pragma: no cover - CPython

    def sleep_ms(ms):
        return asyncio.sleep(ms / 1000)

    def wait_for_ms(awaitable, ms):
        return asyncio.wait_for(awaitable, ms / 1000)


def _queued(stream, write):
    # A generator the scheduler runs as a task: it parks that task on the I/O queue until poll
    # reports the stream ready (MicroPython's asyncio streams wait the same way).
    if write:
        yield _io_queue.queue_write(stream)
    else:
        yield _io_queue.queue_read(stream)


# Timed waits on MicroPython: asyncio's wait_for makes two tasks and raises a CancelledError per
# wait, even one that ends in time, and on a small board that churn fragments the heap. Instead a
# waiting task takes a slot (preallocated) with its deadline, and one reaper task, alive only
# while slots are taken, cancels the waits that pass their deadline; a wait that ends in time
# allocates only its own generator. Deadlines are kept to within REAP_MS.
REAP_MS = 50
_SLOTS = 16  # timed waits at once: the core has about ten tasks
_slots = [[None, 0, False] for _ in range(_SLOTS)]  # [task, deadline ticks, timed out]
_reaping = [False]


def _take_slot(task, timeout_ms):
    for slot in _slots:
        if slot[0] is None:
            slot[0] = task
            slot[1] = _core.ticks_add(_core.ticks(), timeout_ms)
            slot[2] = False
            if not _reaping[0]:
                _reaping[0] = True
                asyncio.create_task(_reap())
            return slot
    return None  # every slot taken: that wait goes through wait_for instead


# The reaper stays this many empty rounds before it ends: a sender waiting for room after every
# PDU would otherwise start a new reaper task (and its coroutine) per wait, most of the heap
# churn of a C-STORE to a slow archive.
REAP_IDLE_ROUNDS = 20


async def _reap():
    idle = 0
    try:
        while True:
            now = _core.ticks()
            nearest = REAP_MS
            busy = False
            for slot in _slots:
                task = slot[0]
                if task is None:
                    continue
                busy = True
                left = _core.ticks_diff(slot[1], now)
                if left <= 0 and not slot[2]:
                    slot[2] = True
                    task.cancel()  # leaves the I/O queue, resumes with CancelledError
                elif 0 < left < nearest:
                    nearest = left
            idle = 0 if busy else idle + 1
            if idle > REAP_IDLE_ROUNDS:
                return
            await asyncio.sleep_ms(nearest)
    finally:
        _reaping[0] = False


async def _ready_mp(stream, write, timeout_ms):
    if timeout_ms is None:
        await _queued(stream, write)
        return True
    slot = _take_slot(_core.cur_task, timeout_ms)
    if slot is None:
        return await _ready_wait_for(stream, write, timeout_ms)
    try:
        await _queued(stream, write)
    except asyncio.CancelledError:
        if slot[2]:
            return False  # our deadline, not someone cancelling this task
        raise
    finally:
        slot[0] = None
    return True


async def _ready_wait_for(stream, write, timeout_ms):
    waiter = asyncio.create_task(_queued(stream, write))
    try:
        await asyncio.wait_for_ms(waiter, timeout_ms)
    except asyncio.TimeoutError:
        return False
    finally:
        # Whatever ended the wait (a timeout, a cancel, no heap for wait_for's own task), the
        # waiter must leave the I/O queue: it holds the stream's one slot for this direction.
        waiter.cancel()
    return True


async def _ready_cpython(stream, write, timeout_ms):  # pragma: no cover - CPython
    loop = asyncio.get_running_loop()
    fd = stream if isinstance(stream, int) else stream.fileno()
    ready = loop.create_future()

    def done():
        if not ready.done():
            ready.set_result(True)

    try:
        if write:
            loop.add_writer(fd, done)
        else:
            loop.add_reader(fd, done)
    except PermissionError:
        return True  # a regular file (stdin from /dev/null): epoll refuses it, and it never blocks
    try:
        if timeout_ms is None:
            await ready
        else:
            await asyncio.wait_for(ready, timeout_ms / 1000)
        return True
    except asyncio.TimeoutError:
        return False
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


_ready = _ready_mp if _io_queue is not None else _ready_cpython


def readable(stream, timeout_ms=None):
    """Await until `stream` has input (or an error/hang-up); False when `timeout_ms` passed."""
    return _ready(stream, False, timeout_ms)


def writable(stream, timeout_ms=None):
    """Await until `stream` accepts output; False when `timeout_ms` passed."""
    return _ready(stream, True, timeout_ms)
