"""The ``envcap ui`` command: click code only; the app is :mod:`envcap.ui.app`."""

from __future__ import annotations

import click

from .common import open_store


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to listen on; anything but loopback must be asked for.")
@click.option("--port", default=8642, show_default=True, type=click.IntRange(0, 65535),
              help="The port to listen on (0: any free port).")
def ui(host: str, port: int) -> None:
    """Serve a read-only web page over the store: runs, comparisons, importance, fleet.

    \b
    envcap ui                      then open the address it prints
    The JSON API is under /api (described by /api/openapi.json).
    It shows the store every command uses: `envcap ui --store URL` (the global option,
    taken after any command) shows another, embedded or shared.
    """
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
    app = create_app(open_store)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    _announce_when_started(server, host)
    server.run()


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
