#!/usr/bin/python3
"""bench/memcheck.py — a short end-to-end run of spoold under a dynamic checker, driven by
bench/memcheck.sh (issue 7). Not a CI test.

MEMCHECK_TOOL=valgrind (default): spoold runs under
  valgrind --leak-check=full --error-exitcode=1 --track-fds=yes
MEMCHECK_TOOL=tsan: spoold is a -fsanitize=thread build; reports go to MEMCHECK_DIR/tsan.PID.

Scenario, all on 127.0.0.0/8 (bench/memcheck.sh runs it in a private network namespace):
  * sink A (plain, static route) for static.test and the DSNs; sink B with STARTTLS reached by MX
    (dnsmasq on loopback: mx.test → mx1.mx.test → 127.0.0.3), so TLS and c-ares are exercised;
  * ~MEMCHECK_N (200) messages in 4 bursts: plain ones, two-recipient ones with a `later*` recipient
    (451 on its first try, accepted on the next: deferred, then delivered), `temp*` recipients (451
    always: deferred through the tiers 0/2s/4s, then expired → DSN), one `perm*` (550 → bounced →
    DSN), one NXDOMAIN domain (bounced), a 2 MB message, bare RFC 5322 drops with Bcc and CRLF,
    and three bad drop files;
  * while it runs: spoolctl status/list/show/flush/hold/release, a SIGHUP reload;
  * when the sinks have everything and the queue is empty: SIGTERM;
  * a second daemon gets 60 drops, 4 of them for a server that stalls at DATA
    (tests/reliability/hostile_smtp.py), and two SIGTERMs while sessions are busy (graceful stop,
    then abort); then 20 more drops and one `spoold --once`, all under the same tool.
Prints every checker error with its stack (valgrind: errors, definite/indirect leaks, fds open at
exit besides 0–2; tsan: every report) and exits 1 when there is one or the mail did not arrive.
"""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

from aiosmtpd.controller import Controller

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.environ.get("MEMCHECK_TOOL", "valgrind")
BUILD = os.path.abspath(os.environ.get("MEMCHECK_BUILD", os.path.join(ROOT, "build", "h-vg")))
SPOOLD = os.path.join(BUILD, "daemon", "spoold")
SPOOLCTL = os.path.join(BUILD, "ctl", "spoolctl")
WORK = os.environ.get("MEMCHECK_DIR", "/var/tmp/spoold-memcheck")
N = int(os.environ.get("MEMCHECK_N", 200))
TIMEOUT = int(os.environ.get("MEMCHECK_TIMEOUT", 900))
SENDER = "sender@static.test"
T0 = time.time()


def log(*a):
    print("[%6.1f] " % (time.time() - T0) + " ".join(str(x) for x in a), file=sys.stderr, flush=True)


def free_port(host="127.0.0.1"):
    s = socket.socket()
    s.bind((host, 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ---------------------------------------------------------------- sinks


class Handler:
    def __init__(self, name, rec):
        self.name, self.rec = name, rec

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        with self.rec["lock"]:
            tries = self.rec["tries"].get(address, 0)
            self.rec["tries"][address] = tries + 1
        if local.startswith("temp") or (local.startswith("later") and tries == 0):
            return "451 4.3.0 try later"
        if local.startswith("perm"):
            return "550 5.1.1 <%s>: no such user" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or envelope.content
        m = re.search(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", data, re.I | re.M)
        with self.rec["lock"]:
            self.rec["got"].append({"sink": self.name, "from": envelope.mail_from, "rcpts": list(envelope.rcpt_tos),
                                    "msgid": m.group(1).decode() if m else None, "size": len(data),
                                    "tls": session.ssl is not None, "dsn": b"report-type=delivery-status" in data})
        return "250 2.0.0 Ok"


def tls_context(d):
    cert, key = os.path.join(d, "sink.crt"), os.path.join(d, "sink.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=mx1.mx.test",
                    "-days", "2", "-keyout", key, "-out", cert], check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


# ---------------------------------------------------------------- drops


def body(i, size):
    line = "line %d of a memcheck message; some text to fill it up with ..........\n" % i
    text = (line * (size // len(line) + 1))[:size]
    return text.rsplit("\n", 1)[0] + "\n.\n..dot-stuffed\nend\n"


def drop(spool, name, data):
    tmp = os.path.join(spool, "tmp", "." + name)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(spool, "incoming", name))


def message(i, rcpts, size=800, bare=False, crlf=False):
    msgid = "<mc-%d@memcheck.test>" % i
    head = "From: <%s>\nSubject: memcheck %d\nMessage-ID: %s\nDate: Tue, 01 Dec 2026 00:00:00 +0000\n" % (
        SENDER, i, msgid)
    if bare:
        head += "To: <%s>\nBcc: <%s>\n" % (rcpts[0], ">, <".join(rcpts[1:] or rcpts))
        data = head + "\n" + body(i, size)
    else:
        head += "To: <%s>\n" % rcpts[0]
        env = "MAIL FROM:<%s>\n" % SENDER + "".join("RCPT TO:<%s>\n" % r for r in rcpts) + "\n"
        data = env + head + "\n" + body(i, size)
    if crlf:
        data = data.replace("\n", "\r\n")
    return msgid, data.encode()


def plan(n, base=0):
    """[(i, rcpts, expected deliveries, bounced rcpts, kw)]"""
    out = []
    for i in range(base, base + n):
        kw = {}
        if i == base + 5:
            r = ["perm%d@static.test" % i]
        elif i == base + 6:
            r = ["x%d@nx.test" % i]
        elif i % 50 == 11:
            r = ["temp%d@static.test" % i]
        elif i % 10 == 3:
            r = ["u%d@static.test" % i, "later%d@static.test" % i]
        elif i % 10 == 7:
            r = ["u%d@mx.test" % i]
        else:
            r = ["u%d@static.test" % i]
            if i % 25 == 9:
                r.append("v%d@static.test" % i)
                kw = {"bare": True, "crlf": i % 2 == 1}
        if i == base + 20:
            kw["size"] = 2 * 1024 * 1024
        good = [x for x in r if not x.startswith(("perm", "temp", "x"))]
        out.append((i, r, good, [x for x in r if x not in good], kw))
    return out


# ---------------------------------------------------------------- tool output


def tool_prefix(d):
    if TOOL == "valgrind":
        return ["valgrind", "--leak-check=full", "--error-exitcode=1", "--track-fds=yes", "--num-callers=40",
                "--log-file=" + os.path.join(d, "vg.%p.log")]
    return []


def tool_env(d):
    env = dict(os.environ)
    if TOOL == "tsan":
        env["TSAN_OPTIONS"] = "log_path=%s second_deadlock_stack=1 %s" % (
            os.path.join(d, "tsan"), os.environ.get("MEMCHECK_TSAN_OPTIONS", ""))
        shim = os.environ.get("MEMCHECK_TSAN_SHIM")
        if shim:
            env["LD_PRELOAD"] = shim
    return env


def valgrind_findings(path):
    """(summary lines, findings): every error block, definite/indirect leak block, fd left open."""
    text = open(path, errors="replace").read()
    lines = [re.sub(r"^==\d+== ?", "", l) for l in text.splitlines()]
    blocks, cur = [], []
    for l in lines:
        # a block ends at an empty line or where a new fd entry starts
        if (l.strip() == "" or l.startswith("Open ")) and cur:
            blocks.append(cur)
            cur = []
        if l.strip():
            cur.append(l)
    if cur:
        blocks.append(cur)
    own_log = os.path.basename(path)
    findings, summary = [], []
    for b in blocks:
        head = b[0]
        summary.extend(x for x in b if re.search(r"SUMMARY|FILE DESCRIPTORS|lost:|reachable:|suppressed:|"
                                                 r"in use at exit|total heap usage|All heap blocks", x))
        m = re.match(r"Open .*?descriptor (\d+)|Open \S+ socket (\d+)", head)
        if m:
            fd = int(m.group(1) or m.group(2))
            if fd > 2 and not head.endswith(own_log):  # 0-2 and valgrind's own --log-file are not ours
                inherited = any("inherited from parent" in x for x in b)
                findings.append(("fd open at exit, inherited (not counted)" if inherited else "fd open at exit", b))
        elif re.search(r"are definitely lost|are indirectly lost", head):
            findings.append(("leak", b))
        elif re.search(r"are possibly lost", head):
            findings.append(("possibly lost (not counted)", b))
        elif re.match(r"(Invalid |Conditional jump|Use of uninitialised|Syscall param|Mismatched|"
                      r"Source and destination overlap|Argument |Uninitialised|Process terminating)", head):
            findings.append(("error", b))
    return summary, findings


def tsan_findings(d):
    out = []
    for name in sorted(os.listdir(d)):
        if name.startswith("tsan."):
            text = open(os.path.join(d, name), errors="replace").read()
            for rep in re.findall(r"WARNING: ThreadSanitizer:.*?SUMMARY: ThreadSanitizer:[^\n]*", text, re.S):
                out.append((name, rep))
    return out


# ---------------------------------------------------------------- main


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    spool = os.path.join(WORK, "spool")
    for sub in ("incoming", "tmp"):
        os.makedirs(os.path.join(spool, sub), mode=0o700)
    os.chmod(WORK, 0o700)
    os.chmod(spool, 0o700)
    rec = {"lock": threading.Lock(), "tries": {}, "got": []}
    hosts = os.environ.get("MEMCHECK_HOSTS", "127.0.0.1,127.0.0.3,127.0.0.4").split(",")
    for h in hosts:
        if not h.startswith("127."):
            raise SystemExit("memcheck.py: loopback only")
    pa, pb = free_port(hosts[0]), free_port(hosts[1])
    sink_a = Controller(Handler("A", rec), hostname=hosts[0], port=pa, decode_data=False,
                        server_hostname="a.sink", data_size_limit=64 << 20)
    sink_b = Controller(Handler("B", rec), hostname=hosts[1], port=pb, decode_data=False,
                        server_hostname="mx1.mx.test", data_size_limit=64 << 20, tls_context=tls_context(WORK))
    sink_a.start()
    sink_b.start()
    ps = free_port(hosts[2])
    stall = subprocess.Popen(
        ["/usr/bin/python3", os.path.join(ROOT, "tests", "reliability", "hostile_smtp.py"), "--host", hosts[2],
         "--port", str(ps), "--mode", "stall:DATA", "--log", os.path.join(WORK, "stall.log"),
         "--ready", os.path.join(WORK, "stall.ready")])
    dns_port = free_port()
    dnsmasq = subprocess.Popen(
        ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=%d" % dns_port, "--listen-address=127.0.0.1",
         "--bind-interfaces", "--no-resolv", "--no-hosts", "--local=/test/", "--user=root",
         "--mx-host=mx.test,mx1.mx.test,10", "--host-record=mx1.mx.test,%s" % hosts[1],
         "--pid-file=" + os.path.join(WORK, "dnsmasq.pid")],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(WORK, "dnsmasq.log"), "w"))
    conf = os.path.join(WORK, "spoold.yaml")

    def write_conf(level):
        with open(conf, "w") as f:
            f.write(f"""hostname: memcheck.test
spool_dir: {spool}
control_socket: {WORK}/control.sock
queue:
  scan_interval: 1s
  lock_stale_after: 20s
  tiers:
    - {{ delay: 0, priority: 1 }}
    - {{ delay: 2s, priority: 1 }}
    - {{ delay: 4s, priority: 2 }}
  max_message_size: 10MB
delivery:
  port: {pb}
  tls: opportunistic
  idle_timeout: 2s
  max_messages_per_connection: 40
  timeouts: {{ data: 45s }}   # the stalled sessions end by this timeout (see the stop-bound note)
dns: {{ servers: ["127.0.0.1:{dns_port}"], timeout: 2s, tries: 2, address_preference: ipv4 }}
routes:
  - {{ match: ["static.test"], hosts: ["{hosts[0]}:{pa}"] }}
  - {{ match: ["stall.test"], hosts: ["{hosts[2]}:{ps}"] }}
  - {{ match: ["*.test"], mx: true }}   # a named route: its MX may be on loopback
logging: {{ level: {level}, format: text }}
""")
    write_conf("info")
    ctl_env = dict(os.environ)
    ctl_env.pop("LD_PRELOAD", None)

    def ctl(*args, wrap=False):
        cmd = ([*tool_prefix(WORK)] if wrap else []) + [SPOOLCTL, "--config", conf, *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=tool_env(WORK) if wrap else ctl_env)
        return r

    expected, bounced_rcpts, msgids = {}, set(), {}
    failures, notes = [], []
    proc = None
    try:
        log("tool %s, build %s, spool %s" % (TOOL, BUILD, spool))
        first = plan(N)
        bursts = [first[k::4] for k in range(4)]
        # The first burst waits in incoming/ before start (a backlog); the rest arrive while it runs.
        for i, r, good, bad, kw in bursts[0]:
            mid, data = message(i, r, **kw)
            drop(spool, "mc-%04d" % i, data)
            msgids[mid] = (good, bad)
        drop(spool, "bad-junk", b"\x00\x01garbage without any header\n")
        drop(spool, "bad-norcpt", b"From: <a@static.test>\nSubject: nobody\n\nno recipient\n")
        drop(spool, "bad-nul", b"MAIL FROM:<a@static.test>\nRCPT TO:<x\x00y@static.test>\n\nbody\n")
        logf = open(os.path.join(WORK, "spoold.log"), "wb")
        proc = subprocess.Popen(tool_prefix(WORK) + [SPOOLD, "--config", conf], stdout=logf,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=tool_env(WORK))
        end = time.time() + 120
        while not os.path.exists(os.path.join(WORK, "control.sock")):
            if proc.poll() is not None or time.time() > end:
                raise RuntimeError("spoold did not start (see spoold.log)")
            time.sleep(0.2)
        log("spoold pid %d up" % proc.pid)
        for k, burst in enumerate(bursts[1:], 1):
            time.sleep(3)
            for i, r, good, bad, kw in burst:
                mid, data = message(i, r, **kw)
                drop(spool, "mc-%04d" % i, data)
                msgids[mid] = (good, bad)
            log("burst %d dropped" % k)
            if k == 1:
                st = ctl("status", "--json")
                ls = ctl("list", "--json")
                log("status: exit %d; list: exit %d" % (st.returncode, ls.returncode))
                try:
                    entries = json.loads(ls.stdout or "[]")
                    entries = entries.get("entries", entries) if isinstance(entries, dict) else entries
                    qid = entries[0]["id"] if entries else None
                except (ValueError, KeyError, IndexError, TypeError):
                    qid = None
                if qid:
                    for args in (("show", qid), ("hold", qid), ("release", qid)):
                        r = ctl(*args)
                        log("spoolctl %s: exit %d %s" % (" ".join(args), r.returncode, r.stderr.strip()[:120]))
            if k == 2:
                write_conf("debug")
                os.kill(proc.pid, signal.SIGHUP)
                log("SIGHUP (reload with logging: debug)")
                r = ctl("flush")
                log("spoolctl flush: exit %d" % r.returncode)
        # Wait for everything: every good pair delivered, one DSN per message with a bounced pair.
        want_pairs = {(m, g) for m, (good, _) in msgids.items() for g in good}
        want_dsn = {m for m, (_, bad) in msgids.items() if bad}
        end = time.time() + TIMEOUT
        while time.time() < end:
            with rec["lock"]:
                got = {(x["msgid"], r.lower()) for x in rec["got"] if not x["dsn"] for r in x["rcpts"]}
                dsns = sum(1 for x in rec["got"] if x["dsn"])
            missing = want_pairs - got
            st = ctl("status", "--json")
            try:
                s = json.loads(st.stdout)
                queued = sum(t["messages"] for t in s["tiers"]) + s["incoming"] + s.get("in_flight", 0)
            except (ValueError, KeyError, TypeError):
                queued = -1
            if not missing and dsns >= len(want_dsn) and queued == 0:
                break
            log("waiting: %d of %d pairs, %d of %d DSNs, %d queued" % (len(want_pairs) - len(missing),
                                                                   len(want_pairs), dsns, len(want_dsn), queued))
            time.sleep(5)
        else:
            failures.append("timed out: %d pairs missing, %d of %d DSNs" % (len(missing), dsns, len(want_dsn)))
        r = ctl("status", "--json", wrap=True)  # spoolctl itself under the tool, once
        log("spoolctl status under %s: exit %d" % (TOOL, r.returncode))
        if r.returncode != 0:
            failures.append("spoolctl status under %s exited %d" % (TOOL, r.returncode))
        t = time.time()
        os.kill(proc.pid, signal.SIGTERM)
        try:
            rc = proc.wait(180)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
            failures.append("spoold did not stop within 180 s of SIGTERM")
        log("spoold SIGTERM: exit %d after %.1f s" % (rc, time.time() - t))
        if rc != 0:
            failures.append("spoold exited %d after SIGTERM" % rc)
        proc = None

        # Phase 2: SIGTERM while busy: sessions in flight, some stalled at DATA by a hostile server;
        # a second SIGTERM 5 s later aborts what is left (Daemon::stop → abort_all).
        logf3 = open(os.path.join(WORK, "spoold-busy.log"), "wb")
        for i, r, good, bad, kw in plan(60, base=20000):
            if i % 15 == 0:
                r = ["s%d@stall.test" % i]
            mid, data = message(i, r, **kw)
            drop(spool, "mc-%05d" % i, data)
        proc = subprocess.Popen(tool_prefix(WORK) + [SPOOLD, "--config", conf], stdout=logf3,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=tool_env(WORK))
        end = time.time() + 120
        while time.time() < end and proc.poll() is None:
            stalled = open(os.path.join(WORK, "stall.log")).read().count(" stall ") if os.path.exists(
                os.path.join(WORK, "stall.log")) else 0
            if stalled >= 2:
                break
            time.sleep(0.2)
        t = time.time()
        os.kill(proc.pid, signal.SIGTERM)
        time.sleep(5)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            rc = proc.wait(180)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
            failures.append("busy spoold did not stop within 180 s of two SIGTERMs")
        took = time.time() - t
        log("busy spoold: %d sessions stalled at DATA; SIGTERM, SIGTERM: exit %d after %.1f s" % (stalled, rc, took))
        if took > 40:
            notes.append("a busy spoold took %.0f s to stop after SIGTERM + SIGTERM: more than its 30 s stop grace "
                         "(stalled sessions end only by timeouts.data)" % took)
        if rc != 0:
            failures.append("busy spoold exited %d after SIGTERM" % rc)
        proc = None

        # Phase 3: --once on a few more drops (some deferred, left in the queue).
        for i, r, good, bad, kw in plan(20, base=10000):
            mid, data = message(i, r, **kw)
            drop(spool, "mc-%05d" % i, data)
        logf2 = open(os.path.join(WORK, "spoold-once.log"), "wb")
        t = time.time()
        r = subprocess.run(tool_prefix(WORK) + [SPOOLD, "--config", conf, "--once"], stdout=logf2,
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=tool_env(WORK), timeout=600)
        log("spoold --once: exit %d after %.1f s" % (r.returncode, time.time() - t))
        if r.returncode != 0:
            failures.append("spoold --once exited %d" % r.returncode)
    finally:
        if proc and proc.poll() is None:
            proc.kill()
        stall.terminate()
        stall.wait(10)
        dnsmasq.terminate()
        dnsmasq.wait(10)
        sink_a.stop()
        sink_b.stop()

    with rec["lock"]:
        got = list(rec["got"])
    print("")
    print("memcheck run: tool %s, %d messages (+60 stopped while busy, +20 for --once), build %s"
          % (TOOL, len(msgids), BUILD))
    print("sink: %d messages accepted (%d over TLS, %d DSNs); bad/: %d files" % (
        len(got), sum(1 for x in got if x["tls"]), sum(1 for x in got if x["dsn"]),
        len([n for n in os.listdir(os.path.join(spool, "bad")) if not n.endswith(".reason")])))
    for name in ("spoold.log", "spoold-busy.log", "spoold-once.log"):
        text = open(os.path.join(WORK, name), errors="replace").read()
        counts = {k: len(re.findall(r"status=%s\b" % k, text)) for k in ("sent", "deferred", "bounced", "expired")}
        print("%s: %s" % (name, ", ".join("%s %d" % kv for kv in counts.items())))
    n_findings = 0
    if TOOL == "valgrind":
        for name in sorted(os.listdir(WORK)):
            if not name.startswith("vg."):
                continue
            path = os.path.join(WORK, name)
            head = open(path, errors="replace").read(4000)
            cmd = re.search(r"Command: (.*)", head)
            summary, findings = valgrind_findings(path)
            print("")
            print("== %s: %s" % (name, cmd.group(1) if cmd else "?"))
            for s in summary:
                print("   " + s)
            for kind, b in findings:
                counted = "not counted" not in kind
                n_findings += counted
                print("-- %s%s:" % (kind, "" if counted else ""))
                for l in b[:45]:
                    print("   " + l)
            m = re.search(r"ERROR SUMMARY: (\d+) errors", open(path, errors="replace").read())
            if m and int(m.group(1)) > 0 and not any(k in ("error", "leak") for k, _ in findings):
                n_findings += 1
                print("-- ERROR SUMMARY reports %s errors that were not parsed: read %s" % (m.group(1), path))
    else:
        reps = tsan_findings(WORK)
        n_findings = len(reps)
        print("ThreadSanitizer: %d reports" % len(reps))
        for name, rep in reps:
            print("")
            print("== " + name)
            print(rep)
    print("")
    for f in notes:
        print("NOTE  " + f)
    for f in failures:
        print("FAIL  " + f)
    print("%s  %d checker findings" % ("PASS" if n_findings == 0 else "FAIL", n_findings))
    print("artefacts in " + WORK)
    sys.exit(0 if n_findings == 0 and not failures else 1)


if __name__ == "__main__":
    main()
