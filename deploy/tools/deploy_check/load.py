"""A stand-in Service as kube-proxy makes one, and clients sending load through it without pause."""
import contextlib
import socket
import threading
import time


class TcpService:
    """A Service as kube-proxy makes one: each new connection goes to one of the
    current endpoints (in turn) and stays with it; an endpoint taken out gets no new
    connections, while the ones it has go on."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.endpoints = []
        self.turn = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def set_endpoints(self, ports):
        with self.lock:
            self.endpoints = list(ports)

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                port = self.endpoints[self.turn % len(self.endpoints)] if self.endpoints else None
                self.turn += 1
            threading.Thread(target=self.forward, args=(client, port), daemon=True).start()

    def forward(self, client, port):
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=2) if port else None
        except OSError:
            upstream = None
        if upstream is None:
            client.close()  # what a client of a gone pod sees: the connection fails
            return
        upstream.settimeout(None)

        def pump(source, sink):
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                for end in (source, sink):
                    with contextlib.suppress(OSError):
                        end.shutdown(socket.SHUT_RDWR)

        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def close(self):
        self.listener.close()


class Load:
    """Clients sending a key's requests through a Service without pause, each on a
    keep-alive connection of its own that it replaces when the answer says
    `connection: close`, as HTTP clients do. Every answer and every failure counts."""

    def __init__(self, port, key, clients=4):
        self.port, self.key = port, key
        self.answers = []  # (monotonic time, status or the failure, connection header)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def client(self):
        import http.client

        connection = None
        while not self.stopped.is_set():
            try:
                connection = connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", "/orders", headers={"authorization": f"Bearer {self.key}"})
                response = connection.getresponse()
                response.read()
                outcome, closing = response.status, response.getheader("connection")
                if response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as e:
                outcome, closing = f"{type(e).__name__}: {e}", None
                if connection:
                    connection.close()
                connection = None
            with self.lock:
                self.answers.append((time.monotonic(), outcome, closing))

    def count(self):
        with self.lock:
            return len(self.answers)

    def stop(self):
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=10)
        return list(self.answers)
