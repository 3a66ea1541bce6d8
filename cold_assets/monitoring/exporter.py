"""`cold-assets metrics --listen HOST:PORT`: Prometheus' text format at /metrics, the status
page at /, and /-/healthy for a container's health check."""

import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from cold_assets.monitoring.metrics import STUCK_S, TierCollector
from cold_assets.monitoring.status_page import render_html


def parse_listen(listen: str) -> tuple[str, int]:
    """"HOST:PORT" (an IPv6 host in brackets); a clear error for anything else."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen must be HOST:PORT, e.g. 127.0.0.1:9108; got {listen!r}")
    return host.strip("[]"), int(port)


def exporter_server(listen: str, collector: TierCollector) -> ThreadingHTTPServer:
    """The exporter's server, bound and not yet serving (serve_forever() serves it)."""
    host, port = parse_listen(listen)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            try:
                if path == "/metrics":
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    self._send(200, content_type, encoder(registry))
                elif path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", render_html(collector.status(), collector.staleness()).encode())
                elif path == "/-/healthy":
                    # Unhealthy while a reading hangs or readings keep failing (a catalog or
                    # database that does not answer), so that a health check reports it.
                    stuck = collector.stuck_for()
                    if stuck > STUCK_S:
                        what = collector.last_failure or "a reading in progress"
                        self._send(503, "text/plain; charset=utf-8", f"stuck for {stuck:.0f} s: {what}\n".encode())
                    else:
                        self._send(200, "text/plain; charset=utf-8", b"ok\n")
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics or /\n")
            except Exception as error:  # a scrape that cannot read says why, and the server lives on
                self.log_error("reading the tier failed: %r", error)
                self._send(500, "text/plain; charset=utf-8", f"reading the tier failed: {type(error).__name__}: {error}\n".encode())

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
            pass  # one line per scrape is noise; errors go through log_error

        def log_error(self, format: str, *args: object) -> None:  # noqa: A002
            BaseHTTPRequestHandler.log_message(self, format, *args)

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True  # a scrape left hanging does not keep the process from stopping

    return Server((host, port), Handler)
