from realtime_harness import pubsub_emulator  # noqa: F401 - fixtures for this folder
