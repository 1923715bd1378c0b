#!/usr/bin/python3
"""What Symfony Mailer's SendmailTransport does with `sendmail -bs`, over pipes (tests/ctl/cli_test.cpp).

usage: symfony_sendmail_bs.py SENDMAIL CONFIG [COUNT]

Symfony (Transport/SendmailTransport + Smtp/SmtpTransport + Smtp/Stream/ProcessStream) starts the
command with proc_open, fails when anything is on its stderr right after the start, reads the 220,
says "HELO [127.0.0.1]", and per message sends MAIL FROM, RCPT TO (250/251/252 accepted), DATA,
the message with CRLF line endings and "\r\n." dot-stuffed, then "\r\n.\r\n", and takes the id
from the "250 ... queued as ID" reply; it pings with NOOP after a pause, sends RSET after an error,
and ends with QUIT (221). On success this prints one JSON object on stdout:
  {"ok": true, "messages": [{"id", "from", "to", "message"}, ...]}
with each message as the server must store it (dot-stuffing undone, the CRLF before "." kept). Anything unexpected: a line on
stderr and exit 1.
"""
import json
import os
import re
import select
import subprocess
import sys
import time

QUEUED = re.compile(r"^250 (?:\d\.\d\.\d )?Ok:? queued as (\S+)$")  # Symfony's SmtpTransport
REPLY_TIMEOUT = 10.0


class Failure(Exception):
    pass


class Client:
    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, bufsize=0)
        self.buf = b""

    def check_stderr_silent(self, seconds):
        ready, _, _ = select.select([self.p.stderr], [], [], seconds)
        if ready:
            err = os.read(self.p.stderr.fileno(), 4096)
            if err:
                raise Failure("Process could not be started: stderr said %r" % err)

    def send(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def line(self):
        deadline = time.monotonic() + REPLY_TIMEOUT
        while b"\r\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("no reply within %ss (have %r)" % (REPLY_TIMEOUT, self.buf))
            ready, _, _ = select.select([self.p.stdout], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                raise Failure("sendmail closed stdout (have %r)" % self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("ascii")

    def reply(self):
        lines = [self.line()]
        while len(lines[-1]) >= 4 and lines[-1][3] == "-":
            lines.append(self.line())
        return lines

    def command(self, text, codes):
        self.send(text.encode("ascii") + b"\r\n")
        return self.expect(codes, text)

    def expect(self, codes, what):
        lines = self.reply()
        code = int(lines[-1][:3])
        if code not in codes:
            raise Failure("%r: expected %s, got %r" % (what, codes, lines))
        return lines


def message_for(i):
    # CRLF line endings, lines with leading dots (one is a lone dot), a long line, 8-bit-free.
    return ("From: App <app@example.com>\r\n"
            "To: user%d@example.org\r\n"
            "Subject: message %d\r\n"
            "Message-ID: <m%d@example.com>\r\n"
            "\r\n"
            "Hello %d,\r\n"
            ".leading dot\r\n"
            "..two dots\r\n"
            ".\r\n"
            "%s\r\n"
            "last line") % (i, i, i, i, "x" * (200 + i))  # Symfony's bodies end without CRLF


def stuffed(message):
    # Symfony's SmtpTransport: AbstractStream::replace("\r\n.", "\r\n..") over the message.
    return message.replace("\r\n.", "\r\n..")


def main():
    sendmail, config = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 100
    c = Client([sendmail, "-bs", "-C", config])
    out = []
    try:
        c.check_stderr_silent(0.5)
        c.expect([220], "banner")
        c.command("HELO [127.0.0.1]", [250])
        for i in range(count):
            sender, rcpt = "app@example.com", "user%d@example.org" % i
            c.command("MAIL FROM:<%s>" % sender, [250])
            c.command("RCPT TO:<%s>" % rcpt, [250, 251, 252])
            c.command("DATA", [354])
            msg = message_for(i)
            c.send(stuffed(msg).encode("ascii"))
            lines = c.command("\r\n.", [250])  # Symfony: executeCommand("\r\n.\r\n", [250])
            m = QUEUED.match(lines[-1])
            if not m:
                raise Failure("no queue id in %r" % lines)
            # What the server keeps: the message and the CRLF before the final dot.
            out.append({"id": m.group(1), "from": sender, "to": [rcpt], "message": msg + "\r\n"})
            if i % 25 == 24:
                time.sleep(0.2)  # Symfony pings a transport it has not used for a while
            c.command("NOOP", [250])
            if i == count // 2:  # a rejected recipient, then RSET, as Symfony does after an error
                c.command("MAIL FROM:<%s>" % sender, [250])
                c.command("RCPT TO:<not an address>", range(500, 600))
                c.command("RSET", [250])
        c.command("QUIT", [221])
        c.p.stdin.close()
        rc = c.p.wait(10)
        if rc != 0:
            raise Failure("sendmail -bs exited %d after QUIT" % rc)
        err = c.p.stderr.read()
        if err:
            raise Failure("stderr: %r" % err)
    except Failure as e:
        print("symfony_sendmail_bs: %s" % e, file=sys.stderr)
        c.p.kill()
        return 1
    print(json.dumps({"ok": True, "messages": out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
