from sync_harness import emulator, harness  # noqa: F401 - fixtures for this folder
