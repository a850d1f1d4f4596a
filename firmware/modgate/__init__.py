"""modgate firmware: wraps raw frames from legacy imaging hardware into DICOM and delivers them."""

VERSION = "0.1.0"
