"""fedctl command line. Each module registers its commands on the shared group."""

from federation.cli import adopt as _adopt  # noqa: F401
from federation.cli import agent as _agent  # noqa: F401
from federation.cli import backup as _backup  # noqa: F401
from federation.cli import entrypoint as _entrypoint  # noqa: F401
from federation.cli import events as _events  # noqa: F401
from federation.cli import gate as _gate  # noqa: F401
from federation.cli import jobs as _jobs  # noqa: F401
from federation.cli import lab as _lab  # noqa: F401
from federation.cli import operations as _operations  # noqa: F401
from federation.cli import pending as _pending  # noqa: F401
from federation.cli import status as _status  # noqa: F401
from federation.cli import store as _store  # noqa: F401
from federation.cli import validate as _validate  # noqa: F401
from federation.cli.app import cli


def main() -> None:
    cli()
