"""The field engineer's serial console: line editing, commands, PIN."""
