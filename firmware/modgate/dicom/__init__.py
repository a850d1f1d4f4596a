"""DICOM data: tags, UIDs, Part 10 encoding, IODs and pixel formats. Knows nothing of sockets."""
