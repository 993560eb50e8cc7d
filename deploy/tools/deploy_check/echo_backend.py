"""The pods' backend: it answers every request with the headers it got, as JSON."""
import http.server
import json


class Echo(http.server.BaseHTTPRequestHandler):
    """The backend: answers every request with the request headers it got, as JSON."""

    def do_GET(self):  # noqa: N802 - the standard library's name
        body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass
