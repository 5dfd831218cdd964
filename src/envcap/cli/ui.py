"""The ``envcap ui`` command: click code only; the app is :mod:`envcap.ui.app`."""

from __future__ import annotations

import click

from .common import open_store


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on; anything but loopback must be asked for.")
@click.option("--port", default=8642, show_default=True, type=click.IntRange(0, 65535),
              help="The port to listen on (0: any free port).")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME",
              help="Also answer requests for this host name (repeatable; '*.lab.example' for a domain). "
                   "By default only the --host address and, on loopback, localhost; others get 400.")
def ui(host: str, port: int, allow_hosts: tuple[str, ...]) -> None:
    """Serve a read-only web page over the store: runs, comparisons, importance, fleet.

    \b
    envcap ui                      then open the address it prints
    The JSON API is under /api (described by /api/openapi.json).
    It shows the store every command uses: `envcap ui --store URL` (the global option,
    taken after any command) shows another, embedded or shared.
    """
    from ..ui.fitworker import start_worker

    # The experiment page's fits run in a worker process, started first: it imports its
    # libraries (seconds) on another core while the server starts (envcap.ui.fitworker).
    worker = start_worker()
    try:
        _serve(host, port, allow_hosts)
    finally:
        worker.close()


def _serve(host: str, port: int, allow_hosts: tuple[str, ...]) -> None:
    from ..core.errors import UsageError

    try:
        import uvicorn

        from ..ui.app import create_app
    except ImportError as exc:
        raise UsageError(f"envcap ui needs its extra: pip install 'envcap[ui]' ({exc.name} is missing)") from None
    # The store every command uses (--store, $ENVCAP_STORE, the config file, else the
    # embedded one); opened now so that a missing store is an error here, not on the
    # first request.
    open_store().close()
    app = create_app(open_store, allowed_hosts=served_hosts(host, allow_hosts))
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    _announce_when_started(server, host)
    server.run()


def served_hosts(host: str, extra: tuple[str, ...] = ()) -> list[str]:
    """The Host names the UI answers: the address it listens on, localhost on loopback,
    this machine's names on a wildcard address, and the ones given."""
    import ipaddress
    import socket

    names = [host.strip("[]")]
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if address is not None and address.is_loopback or host == "localhost":
        names += ["localhost", "127.0.0.1", "::1"]
    elif address is not None and address.is_unspecified:
        names += [socket.gethostname(), socket.getfqdn(), "localhost", "127.0.0.1"]
    names += list(extra)
    return list(dict.fromkeys(n for n in names if n))


def _announce_when_started(server: object, host: str) -> None:
    """Print the address once the socket is bound (with --port 0 the port is known only then)."""
    import uvicorn

    assert isinstance(server, uvicorn.Server)
    startup = server.startup

    async def started(sockets: object = None) -> None:
        await startup(sockets=sockets)  # type: ignore[arg-type]
        for s in server.servers:
            for sock in s.sockets:
                port = sock.getsockname()[1]
                shown = f"[{host}]" if ":" in host else host
                click.echo(f"envcap ui: serving the store on http://{shown}:{port}/ (Ctrl-C stops it)", err=True)
                return

    server.startup = started  # type: ignore[method-assign]
