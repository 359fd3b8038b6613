"""A recording, paging HTTP proxy between `consumer query` and moto's Athena API.

moto answers GetQueryResults with every row at once and never fails a query, so this proxy:

- records each request (operation and JSON body) and the state each GetQueryExecution reported,
  so a test can check the client's request sequence;
- pages GetQueryResults as Athena does: at most MaxResults rows per answer, the rest behind a
  NextToken (here the offset of the next row);
- with `fail_with`, turns the first SUCCEEDED state into FAILED with that reason, as Athena
  reports a query that did not compile or run.

Only 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler

from fault_proxy import LocalProxy, forward, relay


class AthenaProxy(LocalProxy):
    def __init__(self, upstream_port: int, *, fail_with: str | None = None):
        self.upstream_port = upstream_port
        self.fail_with = fail_with
        self.requests: list[tuple[str, dict]] = []
        self.states: list[str] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
                request = json.loads(body or b"{}")
                with proxy.lock:
                    proxy.requests.append((operation, request))
                status, headers, answer = forward(proxy.upstream_port, "POST", self.path, self.headers, body)
                if status == 200 and operation == "GetQueryResults":
                    answer = proxy.page(request, answer)
                if status == 200 and operation == "GetQueryExecution":
                    answer = proxy.observe(answer)
                relay(self, status, headers, answer)

        self.start_server(Handler)

    def operations(self) -> list[str]:
        with self.lock:
            return [operation for operation, _ in self.requests]

    def page(self, request: dict, answer: bytes) -> bytes:
        result = json.loads(answer)
        rows = result["ResultSet"]["Rows"]
        start = int(request.get("NextToken") or 0)
        size = int(request.get("MaxResults") or 1000)
        result["ResultSet"]["Rows"] = rows[start:start + size]
        result.pop("NextToken", None)
        if start + size < len(rows):
            result["NextToken"] = str(start + size)
        return json.dumps(result).encode()

    def observe(self, answer: bytes) -> bytes:
        result = json.loads(answer)
        status = result["QueryExecution"]["Status"]
        if self.fail_with and status["State"] == "SUCCEEDED":
            status["State"] = "FAILED"
            status["StateChangeReason"] = self.fail_with
        with self.lock:
            self.states.append(status["State"])
        return json.dumps(result).encode()
