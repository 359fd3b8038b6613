"""A fault-injecting HTTP proxy between a real AWS SDK client and a Kinesis emulator.

Neither kinesalite nor moto ever throttles or fails part of a PutRecords, so the tests put this
proxy in front of the emulator. For each PutRecords request it draws, from a seeded generator:

- throttle: answer 400 ProvisionedThroughputExceededException without forwarding;
- service error: answer 500 InternalFailure without forwarding;
- drop before: close the connection without forwarding or answering;
- drop after: forward (the records land), then close without answering (an ambiguous failure:
  the producer must resend, and the stream then holds those events twice);
- partial: forward, then rewrite the answer so that some accepted entries read as failed with
  ProvisionedThroughputExceededException or InternalFailure (they landed too: resent, twice);
- pass: forward unchanged;
- and, with `blackout_after`, throttle everything after that many requests.

Other operations (DescribeStreamSummary, ListShards, ...) always pass. Only 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


def forward(port, method, path, headers, body):
    """Sends one request on to the emulator on 127.0.0.1:port; returns (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        forwarded = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
        connection.request(method, path, body=body, headers=forwarded)
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        connection.close()


def relay(handler: BaseHTTPRequestHandler, status, headers, answer: bytes):
    """Writes a forwarded (and perhaps rewritten) answer back to the client."""
    handler.send_response(status)
    for name, value in headers:
        if name.lower() not in HOP_BY_HOP:
            handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(answer)))
    handler.end_headers()
    handler.wfile.write(answer)


class LocalProxy:
    """An HTTP server on 127.0.0.1 (a free port) running `handler` in a thread, as a context manager."""

    def start_server(self, handler):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class FaultProxy(LocalProxy):
    def __init__(self, upstream_port: int, seed: int = 7, *, throttle=0.1, error=0.05,
                 drop_before=0.04, drop_after=0.04, partial=0.25, blackout_after=None):
        self.upstream_port = upstream_port
        self.rates = dict(throttle=throttle, error=error, drop_before=drop_before,
                          drop_after=drop_after, partial=partial)
        # After this many PutRecords requests, every one is throttled (a stream that stays
        # overloaded), so that a producer's retries run out.
        self.blackout_after = blackout_after
        self.put_requests = 0
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.failed_entries = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                target = self.headers.get("X-Amz-Target", "")
                fault = proxy.draw() if target.endswith(".PutRecords") else "pass"
                with proxy.lock:
                    proxy.counts[fault] += 1
                if fault == "drop_before":
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault == "throttle":
                    return self.reply(400, {
                        "__type": "ProvisionedThroughputExceededException",
                        "message": "Rate exceeded for shard shardId-000000000000 in stream (injected)",
                    })
                if fault == "error":
                    return self.reply(500, {"__type": "InternalFailure",
                                            "message": "injected internal failure"})
                status, headers, answer = proxy.forward(self.command, self.path, self.headers, body)
                if fault == "drop_after":
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault == "partial" and status == 200:
                    answer = proxy.fail_some(answer)
                relay(self, status, headers, answer)

            def reply(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("x-amzn-ErrorType", payload["__type"])
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.start_server(Handler)

    def draw(self) -> str:
        with self.lock:
            self.put_requests += 1
            if self.blackout_after is not None and self.put_requests > self.blackout_after:
                return "throttle"
            roll = self.random.random()
        for fault, rate in self.rates.items():
            if roll < rate:
                return fault
            roll -= rate
        return "pass"

    def forward(self, method, path, headers, body):
        return forward(self.upstream_port, method, path, headers, body)

    def fail_some(self, answer: bytes) -> bytes:
        """Marks some accepted entries of a PutRecords answer as failed, as Kinesis does under
        load: the entry carries ErrorCode/ErrorMessage instead of SequenceNumber/ShardId."""
        result = json.loads(answer)
        failed = 0
        with self.lock:
            for entry in result.get("Records", []):
                if "SequenceNumber" in entry and self.random.random() < 0.3:
                    code = self.random.choice(["ProvisionedThroughputExceededException",
                                               "InternalFailure"])
                    entry.clear()
                    entry["ErrorCode"] = code
                    entry["ErrorMessage"] = "injected partial failure"
                    failed += 1
            self.failed_entries += failed
        result["FailedRecordCount"] = result.get("FailedRecordCount", 0) + failed
        return json.dumps(result).encode()


class S3FaultProxy(LocalProxy):
    """A proxy in front of the S3 emulator (moto) for the faults moto never makes:

    - `lose_every`: every n-th conditional PUT (If-Match / If-None-Match: a commit-state write) is
      applied, then its connection is closed without an answer, as after a timeout or a reset;
    - `fail_one_write`: the first table-file PUT is refused with 403 (an error the SDK does not
      retry), while every other table-file PUT is held `slow_s` seconds before it is forwarded,
      so that the failing batch still has writes in flight when it learns of the failure.

    Every other request is forwarded unchanged. Only 127.0.0.1.
    """

    def __init__(self, upstream_port: int, *, lose_every=None, fail_one_write=False, slow_s=3.0):
        self.upstream_port = upstream_port
        self.lose_every = lose_every
        self.fail_one_write = fail_one_write
        self.slow_s = slow_s
        self.failing_key = None
        self.conditional_puts = 0
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def handle_any(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length) if length else None
                fault = proxy.draw(self.command, self.path, self.headers)
                with proxy.lock:
                    proxy.counts[fault] += 1
                if fault == "fail":
                    data = (b"<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code>"
                            b"<Message>injected</Message></Error>")
                    self.send_response(403)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if fault == "slow":
                    import time

                    time.sleep(proxy.slow_s)
                status, headers, answer = forward(proxy.upstream_port, self.command, self.path,
                                                  self.headers, body)
                if fault == "lose":
                    self.close_connection = True
                    self.connection.close()
                    return
                relay(self, status, headers, answer)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

        self.start_server(Handler)

    def draw(self, method, path, headers) -> str:
        if method != "PUT":
            return "pass"
        conditional = "If-Match" in headers or "If-None-Match" in headers
        with self.lock:
            if conditional and self.lose_every:
                self.conditional_puts += 1
                if self.conditional_puts % self.lose_every == 0:
                    return "lose"
            table_file = "/sales_events/" in path or "/daily_sales/" in path
            if self.fail_one_write and table_file:
                if self.failing_key is None:
                    self.failing_key = path
                return "fail" if path == self.failing_key else "slow"
        return "pass"
