#!/usr/bin/python3
"""tests/listener/smtp_client.py — SMTP clients for the listener tests, on loopback only.

  send  --port P [--source IP] --from A --to B [--to C…] [--count N] [--body TEXT] [--helo]
        [--starttls --cafile PEM] [--user U --password P [--mech PLAIN|LOGIN]]
        [--body-bytes N] [--mail-opt RET=HDRS …] [--rcpt-opt NOTIFY=NEVER …]
        smtplib: one session (STARTTLS, AUTH first when asked: {"auth": bool} is printed), then
        N messages; prints one JSON line per message:
        {"ok": true, "reply": "2.0.0 Ok: queued as ID"} or {"ok": false, "code": 554, "reply": …}
  raw   --port P [--source IP] --send HEX [--send HEX…] [--fill N] [--wait S]
        writes each chunk (hex) in turn, reading replies between them for up to --wait seconds,
        then (--fill) N octets of 998-octet text lines;
        prints {"replies": "…", "closed": bool}
  hold  --port P [--source IP] [--seconds S] [--trickle]
        connects and sends nothing (or one byte a second with --trickle); prints
        {"closed_after": seconds, "last": "…"} when the server closes or S pass.
  drip  --port P [--source IP] [--seconds S] --bytes N --every T
        EHLO, MAIL, RCPT, DATA, then N octets of message text every T seconds, never the dot;
        prints {"closed_after": seconds since the 354, "last": "…", "sent": octets} when the
        server closes or S pass.
Every socket operation has a timeout; nothing here talks beyond 127.0.0.0/8 and ::1.
"""
import argparse
import json
import smtplib
import socket
import sys
import time


def connect(host, port, source, timeout=20):
    s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect((host, port))
    return s


def cmd_send(a):
    src = (a.source, 0) if a.source else None
    out = []
    if a.ssl:  # implicit TLS (port 465 style)
        import ssl
        ctx = ssl.create_default_context(cafile=a.cafile)
        ctx.check_hostname = False
        conn = smtplib.SMTP_SSL(a.host, a.port, timeout=20, source_address=src, context=ctx)
    else:
        conn = smtplib.SMTP(a.host, a.port, timeout=20, source_address=src)
    with conn as c:
        if a.helo:
            c.helo('[127.0.0.1]')
        else:
            c.ehlo('client.test')
        if a.starttls:
            import ssl
            ctx = ssl.create_default_context(cafile=a.cafile)
            ctx.check_hostname = False
            c.starttls(context=ctx)
            c.ehlo('client.test')
        if a.user:
            try:
                if a.mech:
                    c.user, c.password = a.user, a.password
                    c.auth(a.mech, getattr(c, 'auth_' + a.mech.lower().replace('-', '_')))
                else:
                    c.login(a.user, a.password)
                print(json.dumps({'auth': True}))
            except smtplib.SMTPAuthenticationError as e:
                print(json.dumps({'auth': False, 'code': e.smtp_code}))
            except smtplib.SMTPNotSupportedError:
                print(json.dumps({'auth': False, 'code': 0, 'reply': 'AUTH not offered'}))
        for i in range(a.count):
            body = (a.body or 'Hello from smtplib.').replace('\\n', '\r\n')
            if a.body_bytes:  # N octets of 78-octet lines (too long for an argument)
                body = ('x' * 76 + '\r\n') * (a.body_bytes // 78)
            msg = (f'From: <{a.sender}>\r\nTo: <{a.to[0]}>\r\nSubject: listener test {i}\r\n'
                   f'Message-ID: <m{i}.{time.time()}@client.test>\r\n\r\n{body}\r\n')
            try:
                code, reply = c.mail(a.sender, a.mail_opt)
                if code != 250:
                    out.append({'ok': False, 'code': code, 'reply': reply.decode()})
                    c.rset()
                    continue
                refused = {}
                for r in a.to:
                    code, reply = c.rcpt(r, a.rcpt_opt)
                    if code not in (250, 251):
                        refused[r] = [code, reply.decode()]
                if len(refused) == len(a.to):
                    first = next(iter(refused.values()))
                    out.append({'ok': False, 'code': first[0], 'reply': first[1], 'refused': refused})
                    c.rset()
                    continue
                code, reply = c.data(msg.encode())
                out.append({'ok': code == 250, 'code': code, 'reply': reply.decode(), 'refused': refused})
            except smtplib.SMTPResponseException as e:
                out.append({'ok': False, 'code': e.smtp_code, 'reply': e.smtp_error.decode(errors='replace')})
                break
            except (smtplib.SMTPServerDisconnected, OSError) as e:
                out.append({'ok': False, 'code': 0, 'reply': str(e)})
                break
        try:
            c.quit()
        except (smtplib.SMTPServerDisconnected, OSError):
            pass
    for o in out:
        print(json.dumps(o))


def read_some(s, wait):
    data = b''
    end = time.time() + wait
    closed = False
    while time.time() < end:
        s.settimeout(max(0.05, end - time.time()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except OSError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
        end = min(end, time.time() + 0.3)  # more replies come right after the first
    return data, closed


def cmd_raw(a):
    s = connect(a.host, a.port, a.source)
    replies, closed = read_some(s, a.wait)
    for h in a.send:
        if closed:
            break
        try:
            s.sendall(bytes.fromhex(h))
        except OSError:
            closed = True
            break
        more, closed = read_some(s, a.wait)
        replies += more
    if a.fill and not closed:  # message text without its final dot, then wait to be cut
        line = b'x' * 998 + b'\r\n'
        s.sendall(line * (a.fill // len(line) + 1))
        more, closed = read_some(s, a.wait)
        replies += more
    s.close()
    print(json.dumps({'replies': replies.decode(errors='replace'), 'closed': closed}))


def cmd_hold(a):
    s = connect(a.host, a.port, a.source)
    start = time.time()
    last = b''
    s.settimeout(1.0)
    while time.time() - start < a.seconds:
        try:
            chunk = s.recv(4096)
            if not chunk:
                print(json.dumps({'closed_after': time.time() - start, 'last': last.decode(errors='replace')}))
                return
            last = chunk
        except socket.timeout:
            if a.trickle:
                try:
                    s.send(b'N')
                except OSError:
                    break
        except OSError:
            break
    print(json.dumps({'closed_after': time.time() - start, 'last': last.decode(errors='replace')}))


def cmd_drip(a):
    s = connect(a.host, a.port, a.source)
    replies, closed = read_some(s, a.wait)
    for c in (b'EHLO drip.test\r\n', b'MAIL FROM:<a@client.test>\r\n', b'RCPT TO:<x@example.test>\r\n',
              b'DATA\r\n'):
        s.sendall(c)
        more, closed = read_some(s, a.wait)
        replies += more
    if b'354' not in replies:
        print(json.dumps({'closed_after': 0, 'last': replies.decode(errors='replace'), 'sent': 0}))
        return
    start, sent, last = time.time(), 0, b''
    line = b'x' * 98 + b'\r\n'
    chunk = line * (a.bytes // len(line) + 1)
    while time.time() - start < a.seconds:
        try:
            s.sendall(chunk)
            sent += len(chunk)
        except OSError:
            break
        more, closed = read_some(s, a.every)
        if more:
            last = more
        if closed:
            break
    print(json.dumps({'closed_after': time.time() - start, 'last': last.decode(errors='replace'),
                      'sent': sent}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument('mode', choices=['send', 'raw', 'hold', 'drip'])
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--source')
    p.add_argument('--from', dest='sender', default='app@client.test')
    p.add_argument('--to', action='append', default=[])
    p.add_argument('--count', type=int, default=1)
    p.add_argument('--body')
    p.add_argument('--body-bytes', type=int, default=0)
    p.add_argument('--helo', action='store_true')
    p.add_argument('--user')
    p.add_argument('--password')
    p.add_argument('--mech')  # PLAIN or LOGIN; default: smtplib's choice
    p.add_argument('--starttls', action='store_true')
    p.add_argument('--ssl', action='store_true')
    p.add_argument('--cafile')
    p.add_argument('--send', action='append', default=[])
    p.add_argument('--wait', type=float, default=2.0)
    p.add_argument('--fill', type=int, default=0)
    p.add_argument('--seconds', type=float, default=10.0)
    p.add_argument('--trickle', action='store_true')
    p.add_argument('--bytes', type=int, default=8200)
    p.add_argument('--mail-opt', action='append', default=[])  # ESMTP parameters of MAIL FROM
    p.add_argument('--rcpt-opt', action='append', default=[])  # of every RCPT TO
    p.add_argument('--every', type=float, default=1.0)
    a = p.parse_args()
    {'send': cmd_send, 'raw': cmd_raw, 'hold': cmd_hold, 'drip': cmd_drip}[a.mode](a)


if __name__ == '__main__':
    sys.exit(main())
