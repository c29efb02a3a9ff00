"""Serve the no-op Python handler over a minimal HTTP/1.1 server.

This is the cost of Python and its standard-library HTTP server alone, with no
Lambda runtime. Every POST, on any path, calls handler(event, None) with the
request body parsed as JSON (an empty body is None) and responds with the result
as JSON. Connections are kept alive.

Usage: server.py PORT [APP_PY]

APP_PY defaults to bench/functions/noop-python/app.py, found relative to this
script. The server binds 127.0.0.1 and prints "listening on http://127.0.0.1:PORT"
once it accepts connections.
"""

import importlib.util
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DEFAULT_APP = Path(__file__).resolve().parent.parent / "functions" / "noop-python" / "app.py"


def load_handler(app_path):
    if not app_path.is_file():
        raise SystemExit(f"server.py: handler file {app_path} not found: pass the path to app.py as the second argument")
    spec = importlib.util.spec_from_file_location("app", app_path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"server.py: failed to load {app_path}: expected a Python source file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


def make_request_handler(handler):
    class RequestHandler(BaseHTTPRequestHandler):
        # HTTP/1.1 keeps connections open between requests, as long as every
        # response carries Content-Length.
        protocol_version = "HTTP/1.1"
        # The headers and the body go out in two writes, and Nagle's algorithm
        # could hold the second one until the client acknowledges the first.
        disable_nagle_algorithm = True

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            try:
                event = json.loads(body) if body else None
            except ValueError as error:
                self.log_error("rejected POST %s: invalid JSON in the request body: %s", self.path, error)
                self.send_text(400, f"invalid JSON in the request body: {error}\n")
                return
            self.send_body(200, "application/json", json.dumps(handler(event, None)).encode())

        def send_text(self, status, text):
            self.send_body(status, "text/plain; charset=utf-8", text.encode())

        def send_body(self, status, content_type, payload):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_request(self, code="-", size="-"):
            # One line per request on stderr would cost more than the handler.
            # Errors still go to stderr through log_error.
            pass

    return RequestHandler


def main():
    if len(sys.argv) not in (2, 3):
        raise SystemExit("usage: server.py PORT [APP_PY]")
    try:
        port = int(sys.argv[1])
    except ValueError:
        raise SystemExit(f"server.py: invalid port {sys.argv[1]!r}: expected an integer from 0 to 65535")
    app_path = Path(sys.argv[2]) if len(sys.argv) == 3 else DEFAULT_APP

    handler = load_handler(app_path)
    server = ThreadingHTTPServer(("127.0.0.1", port), make_request_handler(handler))
    host, bound_port = server.server_address[:2]
    print(f"listening on http://{host}:{bound_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
