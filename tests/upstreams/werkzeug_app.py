"""Werkzeug upstream for the path differential test (see README.md).

A plain WSGI app routed by werkzeug.routing.Map / Rule, wrapped in the method
override middleware from Flask's docs ("Adding HTTP Method Overrides"), served by
Werkzeug's own server. Usage: werkzeug_app.py PORT [--override-post-only]
"""

import json
import logging
import sys

from werkzeug.exceptions import NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

SERVER = "werkzeug"

# strict_slashes=False: Werkzeug would otherwise redirect /admin/ to /admin (and the
# reverse); merge_slashes=False: it would otherwise redirect //admin to /admin.
url_map = Map(
    [
        Rule("/api/public", endpoint="public"),
        Rule("/api/public/<path:rest>", endpoint="public"),
        Rule("/api/private-scoped", endpoint="private-scoped"),
        Rule("/api/private-scoped/<path:rest>", endpoint="private-scoped"),
        Rule("/api/private", endpoint="private"),
        Rule("/api/private/<path:rest>", endpoint="private"),
        Rule("/api/items/<item_id>", endpoint="items"),
        Rule("/admin", endpoint="admin"),
        Rule("/admin/<path:rest>", endpoint="admin"),
        Rule("/internal", endpoint="internal"),
        Rule("/internal/<path:rest>", endpoint="internal"),
        Rule("/", endpoint="other"),
        Rule("/<path:rest>", endpoint="other"),
    ],
    strict_slashes=False,
    merge_slashes=False,
)


class HTTPMethodOverrideMiddleware:
    """As in Flask's docs (patterns/methodoverrides), which apply it to every method."""

    allowed_methods = frozenset(["GET", "HEAD", "POST", "DELETE", "PUT", "PATCH", "OPTIONS"])
    bodyless_methods = frozenset(["GET", "HEAD", "OPTIONS", "DELETE"])
    post_only = False

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        if self.post_only and environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        method = environ.get("HTTP_X_HTTP_METHOD_OVERRIDE", "").upper()
        if method in self.allowed_methods:
            environ["REQUEST_METHOD"] = method
        if method in self.bodyless_methods:
            environ["CONTENT_LENGTH"] = "0"
        return self.app(environ, start_response)


@Request.application
def routed(request):
    adapter = url_map.bind_to_environ(request.environ)
    try:
        route, _args = adapter.match()
    except NotFound:  # the catch-all rule makes this unreachable; kept for safety
        route = "other"
    body = {"route": route, "method": request.method.upper(), "server": SERVER}
    return Response(json.dumps(body), status=200, mimetype="application/json")


app = HTTPMethodOverrideMiddleware(routed)


def main():
    port = int(sys.argv[1])
    HTTPMethodOverrideMiddleware.post_only = "--override-post-only" in sys.argv[2:]
    # Werkzeug logs every request at INFO; keep stderr quiet for thousands of them.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", port, app, threaded=True)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
