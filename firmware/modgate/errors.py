"""The firmware's error hierarchy: one module, so every layer raises and catches the same names."""


class ModgateError(Exception):
    """Base of every error the firmware raises on purpose."""


class ConfigError(ModgateError):
    """A configuration value is missing or invalid; the message names the key."""


class EncodeError(ModgateError):
    """A frame or file cannot become a valid DICOM object (bad geometry, unsupported format...)."""


class DecodeError(ModgateError):
    """A received data set (a C-FIND identifier) breaks PS3.5's encoding rules."""


class DeliveryError(ModgateError):
    """Delivery to a destination failed. `transient` says whether retrying may help; `scope` is
    "object" when this object was refused, "destination" when the destination refused us (an
    association rejected), which says nothing about the object."""

    def __init__(self, message, transient=True, scope="object"):
        super().__init__(message)
        self.transient = transient
        self.scope = scope


class LinkTimeout(ModgateError):
    """A transport operation ran past its configured timeout."""


class LinkClosed(ModgateError):
    """The peer closed or reset the transport."""


class TlsError(LinkClosed):
    """A TLS connection could not be made or verified (PS3.15 B.9); the message names the cause.
    `transient` is False when retrying cannot help until the configuration or the peer changes
    (an untrusted, expired or misnamed certificate, a refused client certificate)."""

    def __init__(self, message, transient=False):
        super().__init__(message)
        self.transient = transient


class ClockError(ModgateError):
    """A time server gave no usable time (no answer, or one that fails RFC 4330's checks)."""


class SpoolFull(ModgateError):
    """The flash budget is at its high watermark; the source must wait (BUSY)."""


class FrameError(ModgateError):
    """A frame on the acquisition input is corrupt or unacceptable; `code` is the NAK reason."""

    def __init__(self, message, code=0):
        super().__init__(message)
        self.code = code
