"""DICOM upper layer (PS3.8) and DIMSE service users (PS3.7). Knows nothing of frames."""
