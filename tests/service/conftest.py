from service_support import emulator  # noqa: F401 - fixtures for this folder
