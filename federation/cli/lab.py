from federation.cli.app import cli  # noqa: F401
