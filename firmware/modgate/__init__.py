"""modgate firmware: wraps raw frames from legacy imaging hardware into DICOM and delivers them."""

VERSION = "0.1.0"


def unload(*names):
    """Forget modules a passing job loaded, so the garbage collector can take back what they
    hold in the heap (a frozen module's code stays in flash, but its globals, functions and
    tables are built in RAM at import). Only for modules without state of their own: the next
    import builds them afresh; a reference still held elsewhere keeps working."""
    import sys

    for name in names:
        if name in sys.modules:
            del sys.modules[name]
            parent, _, child = name.rpartition(".")
            package = sys.modules.get(parent)
            if package is not None and hasattr(package, child):
                delattr(package, child)
