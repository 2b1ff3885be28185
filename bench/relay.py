#!/usr/bin/env python3
"""Delay relays for the benchmark lab: round-trip delay without the kernel's netem qdisc.

Runs inside the lab's server namespace (started by bench/benchlab.py). Two kinds:

  --tcp LISTEN_IP:PORT=TARGET_IP:PORT@RTT_MS
      Accepts on LISTEN, connects to TARGET (a local server, ~0 ms away) and delays every
      chunk by RTT/2 in each direction, keeping order. A userspace relay cannot delay the
      kernel's SYN/SYN-ACK, so the client's connect() returns at once; to keep end-to-end
      times right, the client's first bytes are held until 1.5 RTT after the connection was
      accepted, i.e. exactly when they would reach a server RTT away after a real TCP
      handshake (SYN d/2, SYN-ACK d/2, first data d/2). Totals are faithful; a client's own
      split into "connect" and "TLS" moves that one RTT from the former to the latter.

  --dns LISTEN_IP:PORT=UPSTREAM_IP:PORT  with  --dns-rtt NAME=RTT_MS (repeatable)
      UDP DNS relay: each query for NAME (exact match, case-insensitive) reaches the
      upstream RTT/2 late and its answer comes back RTT/2 late, so each endpoint's name
      costs that endpoint's RTT. Other names get --dns-default-rtt.

Bounded: the process exits after --lifetime seconds (default 900); upstream waits time out
after 3 s. NETWORK SAFETY: it only listens on and dials the lab's own addresses given on the
command line.
"""

import argparse
import asyncio
import socket
import sys
import time


def hostport(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


async def pump(reader, writer, delay, not_before=None):
    """Copy reader -> writer, each chunk delivered `delay` s after it was read (in order),
    and never before `not_before` (monotonic seconds)."""
    q = asyncio.Queue()

    async def read_side():
        try:
            while True:
                data = await reader.read(65536)
                q.put_nowait((time.monotonic() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            q.put_nowait((time.monotonic(), b""))

    async def write_side():
        try:
            while True:
                due, data = await q.get()
                if not_before is not None:
                    due = max(due, not_before)
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return

    await asyncio.gather(read_side(), write_side())


async def tcp_relay(listen, target, rtt_ms):
    half = rtt_ms / 2000.0

    async def handle(creader, cwriter):
        accepted = time.monotonic()
        try:
            sreader, swriter = await asyncio.wait_for(asyncio.open_connection(*target), 3)
        except (OSError, asyncio.TimeoutError):
            cwriter.close()
            return
        try:
            await asyncio.gather(
                pump(creader, swriter, half, not_before=accepted + 3 * half),
                pump(sreader, cwriter, half),
            )
        finally:
            for w in (cwriter, swriter):
                try:
                    w.close()
                except OSError:
                    pass

    server = await asyncio.start_server(handle, *listen, reuse_address=True, backlog=256)
    return server


def qname(packet):
    """The question name of a DNS query (lowercase, no trailing dot), or '' if malformed."""
    i, labels = 12, []
    for _ in range(128):
        if i >= len(packet):
            return ""
        n = packet[i]
        if n == 0:
            return ".".join(labels).lower()
        if n & 0xC0:
            return ""
        labels.append(packet[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    return ""


class DnsRelay(asyncio.DatagramProtocol):
    def __init__(self, upstream, rtts, default_rtt):
        self.upstream = upstream
        self.rtts = rtts
        self.default = default_rtt
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        asyncio.get_running_loop().create_task(self.handle(data, addr))

    async def handle(self, data, addr):
        half = self.rtts.get(qname(data), self.default) / 2000.0
        await asyncio.sleep(half)
        loop = asyncio.get_running_loop()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        try:
            await loop.sock_sendto(s, data, self.upstream)
            reply, _ = await asyncio.wait_for(loop.sock_recvfrom(s, 65535), 3)
        except (OSError, asyncio.TimeoutError):
            return
        finally:
            s.close()
        await asyncio.sleep(half)
        self.transport.sendto(reply, addr)


async def main_async(a):
    servers = []
    for spec in a.tcp:
        left, rtt = spec.rsplit("@", 1)
        listen, target = left.split("=", 1)
        servers.append(await tcp_relay(hostport(listen), hostport(target), float(rtt)))
    if a.dns:
        listen, upstream = a.dns.split("=", 1)
        rtts = {}
        for r in a.dns_rtt:
            name, ms = r.split("=", 1)
            rtts[name.lower().rstrip(".")] = float(ms)
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(
            lambda: DnsRelay(hostport(upstream), rtts, a.dns_default_rtt),
            local_addr=hostport(listen))
    print("relay ready", flush=True)
    await asyncio.sleep(a.lifetime)
    for s in servers:
        s.close()


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tcp", action="append", default=[])
    p.add_argument("--dns")
    p.add_argument("--dns-rtt", action="append", default=[])
    p.add_argument("--dns-default-rtt", type=float, default=0.0)
    p.add_argument("--lifetime", type=float, default=900.0)
    a = p.parse_args()
    try:
        asyncio.run(main_async(a))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
