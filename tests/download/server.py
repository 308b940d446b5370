"""A local HTTP server for the download tests and bench: real video files and every failure.

Routes (GET and HEAD):
  /v/<name>                    the file `<name>` (video/mp4, Content-Length, single byte ranges)
  /page/<name>.html            an HTML page with <video src="/v/<name>">
  /status/<code>/<anything>    that HTTP status, a short text body
  /flaky/<n>/<code>/<name>     <code> for the first <n> requests of this exact path, then /v/<name>
  /slow/<seconds>/<name>       /v/<name> after waiting <seconds> before the headers
  /truncated/<name>            Content-Length of the whole file, half the bytes, then the connection closes
  /unsized/<name>              the file without Content-Length (the body ends when the connection closes)
  /bytes/<size>                <size> bytes that are no video, as application/octet-stream

The server counts requests per path (`hits`) and records, per Host header, the most requests
in flight at once (`max_in_flight`), each request's start time (`starts`) and the Cookie
header of the last request per path (`cookies`). `delay_s` slows every file response (so that
concurrent requests overlap); `bytes_per_s` caps each file response's speed, as a video site
streams one connection (0: as fast as it goes).
"""
from __future__ import annotations

import collections
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class MediaServer:
    def __init__(self, files: dict[str, Path], delay_s: float = 0.0, bytes_per_s: float = 0.0):
        self.files = {name: Path(path) for name, path in files.items()}
        self.delay_s = delay_s
        self.bytes_per_s = bytes_per_s
        self.hits: collections.Counter[str] = collections.Counter()
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.max_in_flight: collections.Counter[str] = collections.Counter()
        self.starts: dict[str, list[float]] = collections.defaultdict(list)
        self.cookies: dict[str, str] = {}
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="media-server", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/{path.lstrip('/')}"

    def start(self) -> "MediaServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def reset(self) -> None:
        with self.lock:
            self.hits.clear()
            self.max_in_flight.clear()
            self.starts.clear()

    def __enter__(self) -> "MediaServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _handler(server: MediaServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def handle(self) -> None:
            try:
                super().handle()
            except (BrokenPipeError, ConnectionResetError):  # a client that gave up (a timeout test)
                pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
            with server.lock:
                server.hits[self.path] += 1
                server.cookies[self.path] = self.headers.get("Cookie") or ""
                hits = server.hits[self.path]
                server.starts[host].append(time.monotonic())
                server.in_flight[host] += 1
                server.max_in_flight[host] = max(server.max_in_flight[host], server.in_flight[host])
            try:
                self._route(body, hits)
            finally:
                with server.lock:
                    server.in_flight[host] -= 1

        def _route(self, body: bool, hits: int) -> None:
            path = self.path.split("?", 1)[0]
            if m := re.fullmatch(r"/v/([\w.-]+)", path):
                return self._file(m.group(1), body)
            if m := re.fullmatch(r"/page/([\w.-]+)\.html", path):
                html = (f"<!DOCTYPE html><html><head><title>{m.group(1)}</title></head><body>"
                        f'<video controls src="/v/{m.group(1)}"></video></body></html>').encode()
                return self._bytes(200, html, "text/html; charset=utf-8", body)
            if m := re.fullmatch(r"/status/(\d{3})/.*", path):
                return self._bytes(int(m.group(1)), b"status page\n", "text/plain", body)
            if m := re.fullmatch(r"/flaky/(\d+)/(\d{3})/([\w.-]+)", path):
                if hits <= int(m.group(1)):
                    return self._bytes(int(m.group(2)), b"try again\n", "text/plain", body)
                return self._file(m.group(3), body)
            if m := re.fullmatch(r"/slow/([\d.]+)/([\w.-]+)", path):
                time.sleep(float(m.group(1)))
                return self._file(m.group(2), body)
            if m := re.fullmatch(r"/truncated/([\w.-]+)", path):
                data = self._read(m.group(1))
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                if body:
                    self.wfile.write(data[: len(data) // 2])
                self.close_connection = True
                return None
            if m := re.fullmatch(r"/unsized/([\w.-]+)", path):
                data = self._read(m.group(1))
                self.send_response(200)
                self.send_header("Content-Type", "video/mp4")
                self.send_header("Connection", "close")
                self.end_headers()
                if body:
                    self.wfile.write(data)
                self.close_connection = True
                return None
            if m := re.fullmatch(r"/bytes/(\d+)", path):
                return self._bytes(200, bytes(range(256)) * (int(m.group(1)) // 256), "application/octet-stream", body)
            return self._bytes(404, b"no such route\n", "text/plain", body)

        def _read(self, name: str) -> bytes:
            time.sleep(server.delay_s)
            return server.files[name].read_bytes()

        def _file(self, name: str, body: bool) -> None:
            if name not in server.files:
                return self._bytes(404, b"no such file\n", "text/plain", body)
            data = self._read(name)
            start, end = 0, len(data) - 1
            ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
            if ranged:
                start, end = int(ranged.group(1)), int(ranged.group(2) or end)
            self.send_response(206 if ranged else 200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Accept-Ranges", "bytes")
            if ranged:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            if body:
                self._paced(data[start:end + 1])

        def _paced(self, data: bytes) -> None:
            step = max(1, int(server.bytes_per_s / 20)) if server.bytes_per_s else len(data) or 1
            started = time.monotonic()
            for offset in range(0, len(data), step):
                self.wfile.write(data[offset:offset + step])
                if server.bytes_per_s:
                    ahead = started + (offset + step) / server.bytes_per_s - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)

        def _bytes(self, status: int, data: bytes, content_type: str, body: bool) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler
