from api_support import api, emulator  # noqa: F401 - fixtures for this folder
