#!/usr/bin/python3
"""tests/support/smtp_sink.py — a real SMTP server (aiosmtpd) for integration tests.

Every accepted message is written to OUTDIR as NNNNNN.eml (the data) plus NNNNNN.json (envelope,
peer, session number, connections open at the time). Recipients steer the replies, so one sink serves every scenario:
  temp*@…   → 451 4.3.0 at RCPT          perm*@… / reject*@… → 550 5.1.1 at RCPT
  greyN*@…  → 451 4.7.1 at RCPT for the first N RCPTs of that address, then 250 (N one digit)
  dotgreyN*@… → 250 at RCPT, but the first N transactions carrying it get 451 4.3.0 after the dot
  anything else → 250; DATA → 250 2.0.0
Each refusal of grey*/dotgrey* is appended to OUTDIR/refusals as "rcpt|dot ADDRESS SESSION TIME".
EHLO offers PIPELINING, as Postfix, Exim and the big providers do (aiosmtpd reads pipelined
commands in order but does not say so), so the daemon's tests see the pipelined protocol,
including transactions sent behind a final dot; --no-pipelining takes it away.
Runs until SIGTERM; writes OUTDIR/ready once listening. Loopback only.
"""
import argparse
import asyncio
import json
import os
import signal
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

lock = threading.Lock()
counter = {"msg": 0, "session": 0, "open": 0}  # open: connections open now
refused = {}  # address -> refusals so far (grey*, dotgrey*)


def refuse_again(outdir, kind, address, limit, session):
    """True (and logged) while `address` has been refused fewer than `limit` times."""
    import time
    with lock:
        n = refused.get((kind, address), 0)
        if n >= limit:
            return False
        refused[(kind, address)] = n + 1
        with open(os.path.join(outdir, "refusals"), "a") as f:
            f.write("{} {} {} {:.3f}\n".format(kind, address, getattr(session, "spoold_no", 0), time.time()))
    return True


class Handler:
    def __init__(self, outdir, pipelining, dot_delay=0.0):
        self.outdir = outdir
        self.pipelining = pipelining
        self.dot_delay = dot_delay

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        if not hasattr(session, "spoold_no"):
            with lock:
                counter["session"] += 1
                session.spoold_no = counter["session"]
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        session.host_name = hostname
        if not hasattr(session, "spoold_no"):
            with lock:
                counter["session"] += 1
                session.spoold_no = counter["session"]
        return "250 {}".format(server.hostname)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local.startswith("temp"):
            return "451 4.3.0 mailbox busy, try later"
        if local.startswith("perm") or local.startswith("reject"):
            return "550 5.1.1 <{}>: no such user".format(address)
        if local.startswith("grey") and local[4:5].isdigit():
            if refuse_again(self.outdir, "rcpt", address, int(local[4]), session):
                return "451 4.7.1 <{}>: greylisted, try again".format(address)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.dot_delay:
            await asyncio.sleep(self.dot_delay)
        for address in envelope.rcpt_tos:
            local = address.split("@")[0].lower()
            if local.startswith("dotgrey") and local[7:8].isdigit():
                if refuse_again(self.outdir, "dot", address, int(local[7]), session):
                    return "451 4.3.0 queue file write error, try again"
        with lock:
            counter["msg"] += 1
            n = counter["msg"]
        base = os.path.join(self.outdir, "{:06d}".format(n))
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(base + ".eml.tmp", base + ".eml")
        meta = {
            "from": envelope.mail_from,
            "rcpts": envelope.rcpt_tos,
            "peer": list(session.peer)[:2],
            "session": getattr(session, "spoold_no", 0),
            "open": counter["open"],
            "mail_options": envelope.mail_options,
        }
        with open(base + ".json.tmp", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".json.tmp", base + ".json")
        return "250 2.0.0 Ok: queued as {:06d}".format(n)


class CountingSMTP(SMTP):
    """Counts the connections open at once (the meta's "open": how many when a message came)."""

    def connection_made(self, transport):
        with lock:
            counter["open"] += 1
        super().connection_made(transport)

    def connection_lost(self, error):
        with lock:
            counter["open"] -= 1
        super().connection_lost(error)


class CountingController(Controller):
    def factory(self):
        return CountingSMTP(self.handler, **self.SMTP_kwargs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--tls-cert", help="offer STARTTLS with this certificate (PEM)")
    ap.add_argument("--tls-key")
    ap.add_argument("--auth", help="USER:PASSWORD required (over TLS) before MAIL")
    ap.add_argument("--no-pipelining", action="store_true", help="do not offer PIPELINING")
    ap.add_argument("--dot-delay", type=float, default=0.0, help="answer each final dot this many seconds late")
    ap.add_argument("--no-smtputf8", action="store_true", help="do not offer SMTPUTF8 (aiosmtpd's Controller does by default)")
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    handler = Handler(args.outdir, not args.no_pipelining, args.dot_delay)
    extra = {}
    if args.no_smtputf8:
        extra["enable_SMTPUTF8"] = False
    if args.tls_cert:
        import ssl
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        extra["tls_context"] = ctx
    if args.auth:
        from aiosmtpd.smtp import AuthResult, LoginPassword
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user
                  and auth_data.password.decode() == password)
            if ok:
                with open(os.path.join(args.outdir, "auth-ok"), "a") as f:
                    f.write(mechanism + "\n")
            return AuthResult(success=ok, handled=False)

        extra.update(authenticator=authenticator, auth_required=True, auth_require_tls=bool(args.tls_cert))
    ctl = CountingController(handler, hostname=args.host, port=args.port, decode_data=False,
                     server_hostname="sink.test", data_size_limit=64 * 1024 * 1024, **extra)
    ctl.start()
    with open(os.path.join(args.outdir, "ready"), "w") as f:
        f.write(str(os.getpid()))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    signal.signal(signal.SIGINT, lambda *a: done.set())
    done.wait(3600)  # bounded: a forgotten sink exits after an hour
    ctl.stop()


if __name__ == "__main__":
    main()
