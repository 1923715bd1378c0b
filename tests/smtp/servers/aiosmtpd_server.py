#!/usr/bin/python3
# tests/smtp/servers/aiosmtpd_server.py — a real SMTP server for the session integration tests:
# aiosmtpd (Debian python3-aiosmtpd) on 127.0.0.1 with optional STARTTLS or implicit TLS, AUTH
# PLAIN/LOGIN, SIZE. Every accepted message is written to OUTDIR/N.eml as
# "MAIL FROM:<..>\nRCPT TO:<..>...\n\n" + the exact content bytes the server received.
# Rule: bounded — exits by itself after --lifetime seconds even if nobody kills it.
import argparse
import asyncio
import hmac
import os
import ssl
import sys

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--outdir", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--implicit", action="store_true")
    ap.add_argument("--auth", help="user:password; AUTH required when given")
    ap.add_argument("--auth-plaintext", action="store_true", help="offer AUTH without TLS")
    ap.add_argument("--size", type=int, default=33554432)
    ap.add_argument("--lifetime", type=float, default=60)
    a = ap.parse_args()

    ctx = None
    if a.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)

    counter = {"n": 0}

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            counter["n"] += 1
            head = "MAIL FROM:<%s>\n" % envelope.mail_from
            for r in envelope.rcpt_tos:
                head += "RCPT TO:<%s>\n" % r
            head += "PEER:%s TLS:%s AUTH:%s OPTS:%s\n\n" % (
                session.peer[0],
                "yes" if (session.ssl or server.transport.get_extra_info("ssl_object")) else "no",
                "yes" if session.authenticated else "no",
                " ".join(envelope.mail_options),
            )
            tmp = os.path.join(a.outdir, ".%d.tmp" % counter["n"])
            with open(tmp, "wb") as f:
                f.write(head.encode() + envelope.original_content)
            os.rename(tmp, os.path.join(a.outdir, "%d.eml" % counter["n"]))
            return "250 2.0.0 OK queued as %d" % counter["n"]

        async def auth_CRAM__MD5(self, server, args):  # RFC 2195, not built into aiosmtpd
            user, pw = a.auth.split(":", 1)
            challenge = b"<%d.%d@sink.test>" % (os.getpid(), counter["n"])
            resp = await server.challenge_auth(challenge)
            if resp is MISSING:
                return AuthResult(success=False, handled=True)
            expected = user.encode() + b" " + hmac.new(pw.encode(), challenge, "md5").hexdigest().encode()
            return AuthResult(success=hmac.compare_digest(resp, expected), handled=False)

    def authenticator(server, session, envelope, mechanism, auth_data):
        user, pw = a.auth.split(":", 1)
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == user.encode() \
            and auth_data.password == pw.encode()
        return AuthResult(success=ok, handled=False)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def factory():
        return SMTP(Handler(), hostname="sink.test", data_size_limit=a.size,
                    tls_context=None if a.implicit else ctx,
                    authenticator=authenticator if a.auth else None,
                    auth_required=bool(a.auth), auth_require_tls=not a.auth_plaintext,
                    enable_SMTPUTF8=True, loop=loop)

    server = loop.run_until_complete(
        loop.create_server(factory, host=a.host, port=a.port, ssl=ctx if a.implicit else None))
    loop.call_later(a.lifetime, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
