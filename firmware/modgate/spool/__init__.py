"""Store-and-forward queue on flash and the forwarder. Knows an object only by its SOP Instance UID."""
