"""A webhook receiver for the e2e tests: verifies every delivery with the Standard
Webhooks reference library (`standardwebhooks` from PyPI) and records what it got.

Usage: python webhook_receiver.py [--tls CERT_PEM KEY_PEM]  -> prints "listening on PORT
control PORT", then serves on 127.0.0.1 (the first port https with that certificate, given
--tls; the control port, for the test's requests below, plain http).

- PUT /_secret/NAME  (body: the whsec_ secret) registers the secret of endpoint NAME.
- POST /hook/NAME[?fail=N][&delay=S]  is a delivery to endpoint NAME: verified with its
  secret (400 when the signature does not verify, 503 before the secret is known); with
  `fail=N` the first N attempts of each webhook-id answer 500; with `delay=S` the answer
  waits S seconds first; with `hang_first=S` the first attempt of each webhook-id does.
- GET /_received  lists every delivery as JSON: name, headers, body, whether it verified,
  the status answered and when it arrived (unix seconds, float).
"""

import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

LOCK = threading.Lock()
SECRETS = {}
RECEIVED = []
ATTEMPTS = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        sys.stderr.write("receiver: " + (format % args) + "\n")

    def answer(self, status, body=b""):
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        length = int(self.headers.get("content-length", "0"))
        return self.rfile.read(length)

    def do_GET(self):
        if self.path != "/_received":
            return self.answer(404)
        with LOCK:
            text = json.dumps(RECEIVED).encode()
        self.answer(200, text)

    def do_PUT(self):
        url = urlsplit(self.path)
        if not url.path.startswith("/_secret/"):
            return self.answer(404)
        with LOCK:
            SECRETS[url.path[len("/_secret/"):]] = self.body().decode()
        self.answer(204)

    def do_POST(self):
        arrived = time.time()
        url = urlsplit(self.path)
        if not url.path.startswith("/hook/"):
            return self.answer(404)
        name = url.path[len("/hook/"):]
        query = parse_qs(url.query)
        data = self.body()
        headers = {key.lower(): value for key, value in self.headers.items()}
        message_id = headers.get("webhook-id", "")
        with LOCK:
            secret = SECRETS.get(name)
            ATTEMPTS[(name, message_id)] = ATTEMPTS.get((name, message_id), 0) + 1
            attempt = ATTEMPTS[(name, message_id)]
        verified, error, body = False, None, None
        if secret is None:
            status, error = 503, "no secret registered"
        else:
            try:
                body = Webhook(secret).verify(data, headers)
                verified = True
                status = 500 if attempt <= int(query.get("fail", ["0"])[0]) else 200
            except WebhookVerificationError as failure:
                status, error = 400, str(failure)
        delay = float(query.get("delay", ["0"])[0])
        if attempt == 1:
            delay += float(query.get("hang_first", ["0"])[0])
        if delay:
            time.sleep(delay)
        with LOCK:
            RECEIVED.append({
                "name": name,
                "headers": headers,
                "raw": data.decode(errors="replace"),
                "body": body,
                "verified": verified,
                "error": error,
                "attempt": attempt,
                "status": status,
                "arrived": arrived,
                "answered": time.time(),
            })
        self.answer(status)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    control = server
    if len(sys.argv) == 4 and sys.argv[1] == "--tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
        server.socket = context.wrap_socket(server.socket, server_side=True)
        control = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        control.daemon_threads = True
        threading.Thread(target=control.serve_forever, daemon=True).start()
    print(
        f"listening on {server.server_address[1]} control {control.server_address[1]}",
        flush=True,
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
