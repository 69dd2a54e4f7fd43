"""A closed-loop HTTP/1.1 flood that times every answer by its status, for bench_predict --saturate.

    python bench/flood.py HOST PORT PATH BODY_FILE --connections 256 --seconds 20

Each connection POSTs the body, reads the answer and sends again at once (like wrk, it ignores
Retry-After). wrk cannot say which answers were refused, and on this machine its latencies at 256
connections are not the server's: plain uvicorn's trivial FastAPI endpoint measured p99 2.1 s with
wrk and 85 ms with this client, which found every connection answered within 2 of the others' counts.
Prints one JSON line: for each status, the count and latency percentiles; timeouts (> 5 s) and errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

TIMEOUT_S = 5.0


async def _connection(args: argparse.Namespace, request: bytes, deadline: float, out: dict) -> None:
    try:
        reader, writer = await asyncio.open_connection(args.host, args.port)
    except OSError:
        out["errors"] += 1
        return
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT_S)
            status = int(head.split(b" ", 2)[1])
            length = next(int(h.split(b":")[1]) for h in head.lower().split(b"\r\n") if h.startswith(b"content-length"))
            await asyncio.wait_for(reader.readexactly(length), TIMEOUT_S)
            out["latencies"].setdefault(status, []).append(1000 * (time.perf_counter() - started))
    except TimeoutError:
        out["timeouts"] += 1
    except (OSError, asyncio.IncompleteReadError, ValueError, StopIteration):
        out["errors"] += 1
    finally:
        writer.close()


def _percentiles(ms: list[float]) -> dict:
    ms.sort()
    at = lambda q: round(ms[int(q * (len(ms) - 1))], 1)  # noqa: E731
    return {"count": len(ms), "p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99), "max_ms": round(ms[-1], 1)}


async def flood(args: argparse.Namespace) -> dict:
    body = Path(args.body).read_bytes()
    request = (
        f"POST {args.path} HTTP/1.1\r\nHost: {args.host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    out = {"latencies": {}, "timeouts": 0, "errors": 0}
    deadline = time.perf_counter() + args.seconds
    await asyncio.gather(*(_connection(args, request, deadline, out) for _ in range(args.connections)))
    statuses = {str(s): _percentiles(ms) for s, ms in sorted(out["latencies"].items())}
    return {"statuses": statuses, "timeouts": out["timeouts"], "errors": out["errors"], "seconds": args.seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("path")
    ap.add_argument("body")
    ap.add_argument("--connections", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=20)
    print(json.dumps(asyncio.run(flood(ap.parse_args()))))


if __name__ == "__main__":
    main()
