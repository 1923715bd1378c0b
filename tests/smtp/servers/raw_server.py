#!/usr/bin/python3
# tests/smtp/servers/raw_server.py — a scripted, deliberately misbehaving SMTP server for one
# failure mode at a time (one scenario per run, one connection at a time, blocking sockets):
#   pipelining  advertises PIPELINING and records whether MAIL+RCPT+DATA arrived in one read
#   inject      sends fake replies right after the STARTTLS 220, then does TLS and works normally
#   stall-ehlo  greets, then never answers EHLO
#   stall-dot   accepts everything but never answers the final dot
#   reset-data  closes the connection (RST) in the middle of the message body
#   stall-body  stops reading after the 354, so the client's writes block
#   421-rcpt    answers the second RCPT with 421 and closes
#   452-after-2 accepts at most two RCPTs per transaction (452 4.5.3 for more); logs each delivery
#   behind-dot  advertises PIPELINING; before answering a final dot, waits up to 0.3 s and logs
#               whether the client already sent its next command ("behind-dot yes/no"); the first
#               dot is refused with 554, later ones accepted
#   nagle       advertises PIPELINING, leaves Nagle on and writes every reply on its own (as
#               servers without TCP_NODELAY do); logs "gap <ms>" from each 354 to the body's
#               first bytes: a client that delays its ACKs makes the 354 wait behind the
#               unacknowledged replies before it (40 ms each on Linux)
# --pipelining advertises PIPELINING in any scenario (e.g. stall-dot).
# Results go to --log (one line per fact). Rule: every wait is bounded (socket timeouts, lifetime).
import argparse
import socket
import ssl
import struct
import sys
import time


class Conn:
    def __init__(self, sock, log):
        self.sock = sock
        self.buf = b""
        self.log = log

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def recv_some(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError()
        return data

    def line(self):
        while b"\n" not in self.buf:
            self.buf += self.recv_some()
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def data_until_dot(self):
        while b"\r\n.\r\n" not in self.buf:
            self.buf += self.recv_some()
        body, self.buf = self.buf.split(b"\r\n.\r\n", 1)
        return body


def ehlo_lines(extra):
    caps = ["sink.test"] + extra
    return "".join("250%s%s\r\n" % ("-" if i < len(caps) - 1 else " ", c) for i, c in enumerate(caps))


def next_command_waits(c):
    """Whether the client's next command arrives (within 0.3 s) before the dot is answered."""
    c.sock.settimeout(0.3)
    try:
        while b"\n" not in c.buf:
            c.buf += c.recv_some()
    except socket.timeout:
        pass
    c.sock.settimeout(10)
    return c.buf.startswith(b"MAIL")


def serve_transactions(c, a, pipelining):
    # After EHLO: any number of MAIL/RCPT/DATA transactions, RSET, QUIT.
    n = 0
    n_dots = 0
    rcpts = []
    while True:
        if pipelining:
            while b"\n" not in c.buf:
                c.buf += c.recv_some()
            first_read = c.buf
            if first_read.startswith(b"MAIL"):
                one = b"DATA\r\n" in first_read
                c.log("one-packet %s" % ("yes" if one else "no"))
        cmd = c.line()
        verb = cmd[:4].upper()
        if verb == "MAIL":
            rcpts = []
            c.send("250 2.1.0 ok\r\n")
        elif verb == "RCPT":
            n += 1
            if a.scenario == "421-rcpt" and n == 2:
                c.send("421 4.3.2 shutting down\r\n")
                return
            if a.scenario == "452-after-2" and len(rcpts) >= 2:
                c.send("452 4.5.3 too many recipients\r\n")
                continue
            rcpts.append(cmd[8:])
            c.send("250 2.1.5 ok\r\n")
        elif verb == "DATA":
            sent_354 = time.monotonic()
            c.send("354 go\r\n")
            if a.scenario == "nagle":
                while not c.buf:
                    c.buf += c.recv_some()
                c.log("gap %.1f" % ((time.monotonic() - sent_354) * 1000))
            if a.scenario == "stall-body":
                c.log("not reading")
                time.sleep(a.stall)
                return
            if a.scenario == "reset-data":
                c.buf += c.recv_some()
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.log("reset")
                return
            body = c.data_until_dot()
            c.log("body %d for %s" % (len(body), ",".join(rcpts)))
            if a.scenario in ("stall-dot", "behind-dot"):
                c.log("behind-dot %s" % ("yes" if next_command_waits(c) else "no"))
            if a.scenario == "stall-dot":
                time.sleep(a.stall)
                return
            if a.scenario == "behind-dot":
                if n_dots == 0:
                    n_dots += 1
                    c.send("554 5.7.1 first message refused\r\n")
                    continue
                n_dots += 1
            c.send("250 2.0.0 queued\r\n")
        elif verb == "RSET":
            c.send("250 ok\r\n")
        elif verb == "QUIT":
            c.send("221 bye\r\n")
            return
        else:
            c.send("502 5.5.2 unknown\r\n")


def handle(sock, a, log):
    c = Conn(sock, log)
    c.send("220 sink.test ESMTP\r\n")
    cmd = c.line()
    log("got " + cmd)
    if a.scenario == "stall-ehlo":
        time.sleep(a.stall)
        return
    if a.scenario == "inject":
        c.send(ehlo_lines(["STARTTLS"]))
        cmd = c.line()
        log("got " + cmd)
        # CVE-2011-0411 style: replies sent in plaintext after the 220, to be read as TLS answers.
        c.send("220 2.0.0 ready\r\n250-sink.test\r\n250 AUTH PLAIN\r\n")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
        tls = ctx.wrap_socket(sock, server_side=True)
        c = Conn(tls, log)
        cmd = c.line()
        log("tls got " + cmd)
        c.send(ehlo_lines([]))
        return serve_transactions(c, a, False)
    advertise = a.pipelining or a.scenario in ("pipelining", "behind-dot", "nagle")
    if a.scenario == "nagle":
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    c.send(ehlo_lines(["PIPELINING", "SIZE 1000000"] if advertise else []))
    serve_transactions(c, a, a.scenario == "pipelining")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--stall", type=float, default=5)
    ap.add_argument("--pipelining", action="store_true")
    ap.add_argument("--lifetime", type=float, default=60)
    a = ap.parse_args()
    deadline = time.time() + a.lifetime

    def log(msg):
        with open(a.log, "a") as f:
            f.write(msg + "\n")

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", a.port))
    srv.listen(8)
    srv.settimeout(1)
    while time.time() < deadline:
        try:
            sock, _ = srv.accept()
        except socket.timeout:
            continue
        sock.settimeout(10)
        try:
            handle(sock, a, log)
        except (EOFError, OSError, ssl.SSLError) as e:
            log("connection ended: %s" % type(e).__name__)
        finally:
            sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
