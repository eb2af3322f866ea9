"""Starlette upstream for the path differential test (see README.md).

Starlette's Router (Route with its str and path convertors), served by uvicorn.
Starlette has no method override. Usage: starlette_app.py PORT
"""

import asyncio
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

SERVER = "starlette"


class Endpoint:
    """A raw ASGI endpoint: Route hands it every method (a function endpoint would
    get GET/HEAD only, and a list of methods could not name arbitrary ones)."""

    def __init__(self, route):
        self.route = route

    async def __call__(self, scope, receive, send):
        body = {"route": self.route, "method": scope["method"].upper(), "server": SERVER}
        await JSONResponse(body)(scope, receive, send)


def routes_for(prefix, name):
    endpoint = Endpoint(name)
    return [Route(prefix, endpoint), Route(prefix + "/{rest:path}", endpoint)]


app = Starlette(
    routes=[
        *routes_for("/api/public", "public"),
        *routes_for("/api/private-scoped", "private-scoped"),
        *routes_for("/api/private", "private"),
        Route("/api/items/{item_id}", Endpoint("items")),
        *routes_for("/admin", "admin"),
        *routes_for("/internal", "internal"),
        Route("/{rest:path}", Endpoint("other")),
    ]
)
# No 307 to the slash-toggled path (the catch-all route already makes it unreachable),
# and "other" rather than a 404 for a path no route can match at all (one that does not
# start with "/", such as an absolute-form request target).
app.router.redirect_slashes = False
app.router.default = Endpoint("other")


def main():
    port = int(sys.argv[1])
    # http="h11": uvicorn's "auto" would switch to httptools wherever that is installed.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, http="h11"
    )
    server = uvicorn.Server(config)

    async def serve():
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():  # startup failed (port taken, ...)
                await task
                sys.exit(1)
            await asyncio.sleep(0.01)
        print("ready", flush=True)
        await task

    asyncio.run(serve())


if __name__ == "__main__":
    main()
