"""One persistent keep-alive HTTP/1.1 connection to the node, driven synchronously."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

RESPONSE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str | None
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        body = self.body if len(self.body) <= 1000 else self.body[:1000] + b"..."
        return f"Reply({self.status}, {self.content_type!r}, {body!r})"


class Connection:
    """Requests go out exactly as given (headers as latin-1 text, the body as bytes); a
    connection the server closed is reopened for the next request."""

    def __init__(self, port: int) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=RESPONSE_TIMEOUT_S)

    def request(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> Reply:
        conn = self._conn
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value.encode("latin-1"))
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            data = response.read()
        except Exception:
            conn.close()  # the next request starts on a fresh connection
            raise
        if response.will_close:
            conn.close()
        return Reply(response.status, response.getheader("Content-Type"), data)

    def close(self) -> None:
        self._conn.close()
