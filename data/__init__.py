"""Package data / code shipped under the memsim namespace (see pyproject.toml)."""
