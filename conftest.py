"""Repository-wide pytest setup: the plugin's own tests use pytester."""

pytest_plugins = ("pytester",)
