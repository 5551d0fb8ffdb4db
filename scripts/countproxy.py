#!/usr/bin/env python3
"""A counting HTTP proxy: sits between xcr and an emulator and counts requests at the wire.

Why: "requests per object" is a design property (a new object should cost one S3 GET, one
GCS upload and two DynamoDB writes; a duplicate one DynamoDB write). Counting inside xcr
would only count what xcr thinks it sends; counting here also catches SDK retries, token
fetches and anything else that really crosses the wire.

Each request is classified by service:
  * DynamoDB: has an `X-Amz-Target: DynamoDB_20120810.<Op>` header;
  * SQS: `X-Amz-Target: AmazonSQS.<Op>` (JSON protocol) or a POST whose form has `Action=`;
  * S3: every other request to the AWS endpoint (`s3:GET`, `s3:HEAD`, ...);
  * GCS: every request to the GCS endpoint, named by its upload type or method
    (`gcs:upload-multipart`, `gcs:upload-resumable`, `gcs:GET-object`, ...).

The proxy is deliberately simple: one upstream connection per request, bodies buffered in
memory (it is meant for small objects), chunked request bodies de-chunked. It forwards the
bytes unchanged otherwise, so xcr behaves as it does against the emulator directly, only
slower. Use it for counts, never for timings.

Library use (scripts/bench.py): `p = CountingProxy(upstream_url, kind="aws"|"gcs"); p.start();
... p.snapshot() ...; p.stop()`. Standalone: `countproxy.py --upstream URL --kind aws` prints
the counts on Ctrl-C.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import http.server
import socket
import sys
import threading
import time
import urllib.parse

# Hop-by-hop headers are the proxy's business, not the upstream's (RFC 9110 7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


def classify_aws(method: str, path: str, headers: http.client.HTTPMessage, body: bytes) -> str:
    """Names an AWS request by service and operation, as the issue defines the split."""
    target = headers.get("X-Amz-Target", "")
    if target.startswith("DynamoDB"):
        return "dynamodb:" + target.rsplit(".", 1)[-1]
    if target.startswith("AmazonSQS"):
        return "sqs:" + target.rsplit(".", 1)[-1]
    if method == "POST" and b"Action=" in body[:4096]:
        form = urllib.parse.parse_qs(body.decode("latin-1"))
        return "sqs:" + form.get("Action", ["?"])[0]
    return f"s3:{method}"


def classify_gcs(method: str, path: str, headers: http.client.HTTPMessage, body: bytes) -> str:
    """Names a GCS JSON API request: uploads by protocol, the rest by method and resource."""
    url = urllib.parse.urlparse(path)
    query = urllib.parse.parse_qs(url.query)
    if url.path.startswith("/upload/"):
        if "upload_id" in query:
            return "gcs:upload-resumable-chunk"
        return f"gcs:upload-{query.get('uploadType', ['?'])[0]}"
    resource = "object" if "/o/" in url.path else ("objects" if url.path.endswith("/o") else "other")
    if url.path.startswith("/token") or "oauth" in url.path:
        resource = "token"
    return f"gcs:{method}-{resource}"


class CountingProxy:
    """One listening port in front of one upstream; counts per class, thread-safe."""

    def __init__(self, upstream: str, kind: str, host: str = "127.0.0.1", port: int = 0):
        self.upstream = urllib.parse.urlparse(upstream)
        self.classify = classify_aws if kind == "aws" else classify_gcs
        self.counts: collections.Counter[str] = collections.Counter()
        # Seconds the upstream took per class: where an emulator spends its time.
        self.seconds: collections.Counter[str] = collections.Counter()
        # (label, start, seconds) of every request, for a timeline when profiling.
        self.log: list[tuple[str, float, float]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            # HTTP/1.1 towards the client so that xcr's keep-alive connections work as usual.
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # silence the per-request stderr line
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _forward(self):
                body = self._body()
                label = proxy.classify(self.command, self.path, self.headers, body)
                with proxy.lock:
                    proxy.counts[label] += 1
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                if body or self.command in ("POST", "PUT", "PATCH"):
                    headers["Content-Length"] = str(len(body))
                up = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=600)
                started = time.perf_counter()
                try:
                    up.request(self.command, self.path, body=body or None, headers=headers)
                    resp = up.getresponse()
                    data = resp.read()
                except (OSError, http.client.HTTPException) as e:
                    with proxy.lock:
                        proxy.counts["proxy-error"] += 1
                    self.send_error(502, f"upstream: {e}")
                    return
                finally:
                    up.close()
                    took = time.perf_counter() - started
                    with proxy.lock:
                        proxy.seconds[label] += took
                        proxy.log.append((label, started, took))
                self.send_response_only(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                if self.command != "HEAD" or data:
                    self.send_header("Content-Length", str(len(data)))
                else:
                    length = resp.getheader("Content-Length")
                    if length is not None:
                        self.send_header("Content-Length", length)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _forward

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                # A client closing its keep-alive connection is normal, not worth a traceback.
                if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                    super().handle_error(request, client_address)

            def server_bind(self):
                self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                super().server_bind()

        self.server = Server((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"countproxy-{kind}", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "CountingProxy":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)

    def upstream_seconds(self) -> dict[str, float]:
        with self.lock:
            return dict(self.seconds)

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.seconds.clear()
            self.log.clear()


def by_service(counts: dict[str, int]) -> dict[str, int]:
    """Totals per service (the part before the colon)."""
    out: collections.Counter[str] = collections.Counter()
    for label, n in counts.items():
        out[label.split(":", 1)[0]] += n
    return dict(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upstream", required=True, help="emulator URL, e.g. http://127.0.0.1:5000")
    ap.add_argument("--kind", choices=["aws", "gcs"], required=True)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    proxy = CountingProxy(args.upstream, args.kind, port=args.port).start()
    print(f"counting proxy on {proxy.url} -> {args.upstream}", flush=True)
    try:
        proxy.thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
        for label, n in sorted(proxy.snapshot().items()):
            print(f"{n:8} {label}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
