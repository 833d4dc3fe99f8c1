"""The model zoo. Each family registers its models and checkpoint detectors on import (explicit list)."""
