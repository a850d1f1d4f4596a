"""Device jobs runnable from firmware/main.py: each module has main(argv) -> exit code."""
