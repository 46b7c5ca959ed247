"""A pausable TCP proxy on 127.0.0.1: ``python -m tests.faults.proxy LISTEN_PORT TARGET_PORT``.

SIGUSR1 pauses, SIGUSR2 resumes. Paused means a network stall, not a reset: connections stay
open, no byte moves in either direction, and new connections are accepted but stall too, so
a client behind the proxy sees timeouts rather than errors. SIGTERM exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

HOST = "127.0.0.1"
CHUNK = 64 * 1024


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.flowing = asyncio.Event()
        self.flowing.set()

    def pause(self) -> None:
        self.flowing.clear()
        print("proxy paused", flush=True)

    def resume(self) -> None:
        self.flowing.set()
        print("proxy resumed", flush=True)

    async def pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction. The gate sits before the read and before the write, so while
        paused nothing is read (the kernel buffers fill) and nothing read is passed on."""
        try:
            while True:
                await self.flowing.wait()
                data = await reader.read(CHUNK)
                await self.flowing.wait()
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.close()
            return
        # The top of its connection's task, cancelled only when the proxy exits.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(self.pump(reader, up_writer), self.pump(up_reader, writer))


async def main(listen_port: int, target_port: int) -> None:
    proxy = Proxy(target_port)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, proxy.pause)
    loop.add_signal_handler(signal.SIGUSR2, proxy.resume)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    server = await asyncio.start_server(proxy.serve, HOST, listen_port)
    print(f"proxy {listen_port} -> {target_port}", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
