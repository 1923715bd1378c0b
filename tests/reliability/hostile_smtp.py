#!/usr/bin/python3
"""tests/reliability/hostile_smtp.py — a scripted, misbehaving SMTP server on loopback.

One behaviour per process (--mode). Every event is appended to --log as "TIME EVENT DETAIL" lines
(TIME = monotonic-free unix seconds with decimals) so tests can check when the client sent what and
when it hung up. Writes --ready once listening. Runs until SIGTERM, at most an hour.
Modes:
  normal            a well-behaved server (accepts everything; "accepted" per message)
  silent            accept, never send a byte
  stall:CMD         behave until CMD (EHLO MAIL RCPT DATA DOT), then never answer it
  reset_in_data     after DATA's 354 and some body bytes, close with RST
  421_after_rcpt    answer RCPT with 421 and close
  garbage           greet with binary junk lines
  nul               greet with NUL bytes inside reply lines
  long_line         greet with a 100 KB line
  endless_multiline answer EHLO with a million "250-" lines (never the last one)
  starttls_inject   offer STARTTLS, answer "220" plus an injected "250" in the same packet, then TLS
  auth_fail         offer AUTH PLAIN LOGIN and answer every AUTH with 535
  reply:CMD:TEXT    behave normally, but answer CMD (GREETING EHLO HELO MAIL RCPT DATA DOT STARTTLS)
                    with the literal line TEXT, then carry on (a 3xx to DATA still reads a body; a
                    220 to STARTTLS starts TLS when --tls-cert is given)
  long5xx:CMD       answer CMD with one "550 5.1.1 ..." line of about 2,000 bytes
  tarpit:SECONDS    answer everything (greeting included) correctly, each reply SECONDS late
  tls_broken        offer STARTTLS, answer "220 go ahead", then answer the ClientHello with garbage
                    and close ("tls_attempt"); without STARTTLS, accept mail ("plain_accepted")
Every session logs "connect #N" first and "end #N" last (N counts sessions from 1).
"""
import argparse
import asyncio
import os
import signal
import socket
import ssl
import struct
import time

args = None
sessions = 0

# The long 5xx line of long5xx:CMD: about 2,000 bytes, words and spaces, as a verbose real server.
LONG_5XX = ("550 5.1.1 " + "recipient address rejected: user unknown in virtual mailbox table; " * 40)[:2000]


def log(event, detail=""):
    with open(args.log, "a") as f:
        f.write("{:.3f} {} {}\n".format(time.time(), event, detail.replace("\n", " ")))


async def readline(reader):
    line = await reader.readline()
    if not line:
        raise ConnectionError("eof")
    text = line.decode("latin-1").rstrip("\r\n")
    log("recv", text[:200])
    return text


async def start_tls(writer):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.tls_cert, args.tls_key)
    await writer.start_tls(ctx)
    log("tls")
    return True


def rst(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


async def until_eof(reader):
    """Never answers again, but notices (and logs) when the client hangs up."""
    while True:
        data = await asyncio.wait_for(reader.read(65536), 3600)
        if not data:
            log("disconnect", "eof")
            return


def override(mode, cmd):
    """The reply line (bytes, with CRLF) that replaces the normal answer to cmd, or None."""
    if mode.startswith("reply:"):
        _, what, text = mode.split(":", 2)
        if what.upper() == cmd:
            return text.encode("latin-1") + b"\r\n"
    if mode.startswith("long5xx:") and mode.split(":", 1)[1].upper() == cmd:
        return LONG_5XX.encode() + b"\r\n"
    return None


async def session(reader, writer):
    global sessions
    sessions += 1
    number = sessions
    log("connect", "#{}".format(number))
    try:
        await session_body(reader, writer)
    finally:
        log("end", "#{}".format(number))


async def session_body(reader, writer):
    mode = args.mode
    stall = mode.split(":", 1)[1] if mode.startswith("stall:") else None
    tarpit = float(mode.split(":", 1)[1]) if mode.startswith("tarpit:") else 0.0
    tls_broken = mode == "tls_broken"
    tried_tls = False  # tls_broken: this session asked for STARTTLS (and got garbage)

    async def answer(cmd, normal):
        """Writes the reply to cmd: the scripted one if the mode says so, else `normal`. Returns it."""
        if tarpit:
            await asyncio.sleep(tarpit)
        out = override(mode, cmd)
        if out is None:
            out = normal
        else:
            log("scripted", "{} {}".format(cmd, out.decode("latin-1")[:80]))
        writer.write(out)
        await writer.drain()
        return out

    try:
        if mode == "silent":
            return await until_eof(reader)
        if mode == "garbage":
            writer.write(bytes(range(256)) * 4 + b"\r\n\xff\xfe\r\n")
            await writer.drain()
            await readline(reader)
            return await until_eof(reader)
        if mode == "nul":
            writer.write(b"220\x00 hostile\x00\x00 ESMTP\r\n")
            await writer.drain()
            await readline(reader)
            writer.write(b"250\x00ok\r\n")
            await writer.drain()
            return await until_eof(reader)
        if mode == "long_line":
            writer.write(b"220 " + b"x" * 100 * 1024 + b"\r\n")
            await writer.drain()
            await readline(reader)
            return await until_eof(reader)
        await answer("GREETING", b"220 hostile.test ESMTP\r\n")
        tls_done = False
        while True:
            cmd = await readline(reader)
            verb = cmd.split(" ", 1)[0].upper()
            if stall == verb:
                log("stall", verb)
                return await until_eof(reader)
            if verb in ("EHLO", "HELO"):
                if mode == "endless_multiline":
                    chunk = b"250-hostile.test endless\r\n" * 10000
                    for _ in range(100):
                        writer.write(chunk)
                        await writer.drain()
                    log("multiline_sent")
                    return await until_eof(reader)
                lines = ["hostile.test", "PIPELINING", "8BITMIME"]
                if (mode in ("starttls_inject", "tls_broken") or mode.startswith("reply:STARTTLS:")) and not tls_done:
                    lines.append("STARTTLS")
                if mode == "auth_fail":
                    lines.append("AUTH PLAIN LOGIN")
                if verb == "HELO":
                    lines = ["hostile.test"]
                out = "".join("250-{}\r\n".format(l) for l in lines[:-1]) + "250 {}\r\n".format(lines[-1])
                await answer(verb, out.encode())
                continue
            elif verb == "STARTTLS" and tls_broken:
                log("tls_attempt")
                tried_tls = True
                writer.write(b"220 go ahead\r\n")
                await writer.drain()
                hello = await asyncio.wait_for(reader.read(4096), 30)  # the ClientHello
                log("tls_garbage", "after {} bytes".format(len(hello)))
                writer.write(b"this is not TLS\r\n" + bytes(range(1, 200)) + b"\r\n")
                await writer.drain()
                await asyncio.sleep(0.2)
                writer.close()
                return
            elif verb == "STARTTLS" and override(mode, "STARTTLS") is not None:
                out = await answer("STARTTLS", b"")
                if out.startswith(b"220") and args.tls_cert:
                    tls_done = await start_tls(writer)
                continue
            elif verb == "STARTTLS":
                writer.write(b"220 go ahead\r\n250 injected-before-tls\r\n")
                await writer.drain()
                tls_done = await start_tls(writer)
                continue
            elif verb == "AUTH":
                writer.write(b"535 5.7.8 authentication failed\r\n")
            elif verb == "MAIL":
                await answer("MAIL", b"250 2.1.0 ok\r\n")
                continue
            elif verb == "RCPT":
                if mode == "421_after_rcpt":
                    writer.write(b"421 4.3.2 closing, go away\r\n")
                    await writer.drain()
                    writer.close()
                    log("closed", "421")
                    return
                await answer("RCPT", b"250 2.1.5 ok\r\n")
                continue
            elif verb == "DATA":
                out = await answer("DATA", b"354 go ahead\r\n")
                if not out.startswith(b"3"):
                    continue  # no body follows (as far as this server is concerned)
                if mode == "reset_in_data":
                    await reader.read(10)
                    log("reset")
                    rst(writer)
                    return
                while True:
                    line = await reader.readline()
                    if not line:
                        raise ConnectionError("eof in data")
                    if line in (b".\r\n", b".\n"):
                        break
                log("recv", "DOT")
                if stall == "DOT":
                    log("stall", "DOT")
                    return await until_eof(reader)
                out = await answer("DOT", b"250 2.0.0 accepted\r\n")
                if out.startswith(b"2"):
                    log("accepted")
                    if tls_broken and not tried_tls:
                        log("plain_accepted")
                continue
            elif verb == "RSET" or verb == "NOOP":
                await answer(verb, b"250 ok\r\n")
                continue
            elif verb == "QUIT":
                await answer("QUIT", b"221 bye\r\n")
                log("quit")
                writer.close()
                return
            else:
                writer.write(b"502 5.5.2 what\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError) as e:
        log("disconnect", type(e).__name__)
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    server = await asyncio.start_server(session, args.host, args.port, limit=1 << 20)
    with open(args.ready, "w") as f:
        f.write(str(os.getpid()))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), 3600)
    except asyncio.TimeoutError:
        pass
    server.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--log", required=True)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args()
    asyncio.run(main())
