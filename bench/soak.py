#!/usr/bin/python3
"""bench/soak.py — the soak driver behind bench/soak.sh (issue 7). A benchmark-style run, not a CI test.

What it does, all on 127.0.0.0/8 (bench/soak.sh runs it in a private network namespace with only lo):
  * two SMTP sinks (aiosmtpd, in this process) that answer RCPT and DATA with random temporary
    (451) and permanent (550/554) failures at configurable rates; DSNs (null sender, to the bounce
    sender) get the temporary failures only, so they are retried, never refused for good;
  * a writer that drops messages into incoming/ at a steady rate (tmp/ → fsync → rename), 1–3
    recipients each, envelope-first and bare RFC 5322 drops, lines starting with '.', LF and CRLF;
    every message carries X-Soak-Sum (sha256 of its body) so the sink can tell a damaged body;
  * spoold (the binary given in SOAK_BUILD) with short tiers (0, 5s, 10s, 20s), restarted every
    few minutes with SIGTERM or, sometimes, SIGKILL;
  * a sampler: VmRSS / VmHWM / threads / open fds of spoold every SOAK_SAMPLE seconds;
  * after the drop phase: failures off, `spoolctl flush` until the spool is empty (bounded), SIGTERM.
At the end it prints per-minute RSS and fd figures and the accounting:
  lost = dropped − (delivered ∪ bounced ∪ still queued)      (per recipient and per message)
and exits 1 if anything was lost, damaged or left queued, or if RSS / fds grew.

Parameters (environment): SOAK_MINUTES (30) SOAK_RATE (10 msg/s) SOAK_RESTART_EVERY (180 s; at most
a quarter of the run) SOAK_KILL_FRACTION (0.33) SOAK_SAMPLE (3 s) SOAK_RCPT_TEMP (0.20)
SOAK_RCPT_PERM (0.03) SOAK_DATA_TEMP (0.05) SOAK_DATA_PERM (0.01) SOAK_DRAIN_TIMEOUT (600 s)
SOAK_SEED SOAK_DIR (/var/tmp/spoold-soak) SOAK_BUILD (build/h-soak) SOAK_SINKS ("127.0.0.1:2525,127.0.0.2:2525";
"free" = two free ports on 127.0.0.1).
"""
import email.utils
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

from aiosmtpd.controller import Controller

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env_num(name, default, kind=float):
    return kind(os.environ.get(name, default))


MINUTES = env_num("SOAK_MINUTES", 30)
RATE = env_num("SOAK_RATE", 10)
RESTART_EVERY = min(env_num("SOAK_RESTART_EVERY", 180), MINUTES * 60 / 4)
KILL_FRACTION = env_num("SOAK_KILL_FRACTION", 0.33)
SAMPLE = env_num("SOAK_SAMPLE", 3)
RCPT_TEMP = env_num("SOAK_RCPT_TEMP", 0.20)
RCPT_PERM = env_num("SOAK_RCPT_PERM", 0.03)
DATA_TEMP = env_num("SOAK_DATA_TEMP", 0.05)
DATA_PERM = env_num("SOAK_DATA_PERM", 0.01)
DRAIN_TIMEOUT = env_num("SOAK_DRAIN_TIMEOUT", 600)
SEED = env_num("SOAK_SEED", int(time.time()), int)
WORK = os.environ.get("SOAK_DIR", "/var/tmp/spoold-soak")
BUILD = os.path.abspath(os.environ.get("SOAK_BUILD", os.path.join(ROOT, "build", "h-soak")))
SPOOLD = os.path.join(BUILD, "daemon", "spoold")
SPOOLCTL = os.path.join(BUILD, "ctl", "spoolctl")
SINKS = os.environ.get("SOAK_SINKS", "127.0.0.1:2525,127.0.0.2:2525")
WARMUP = min(30, RESTART_EVERY / 4)  # seconds after a start that are not judged for growth
STOP_WAIT = 60          # seconds a SIGTERM may take before it counts as a hang (then SIGKILL)
BOUNCE_SENDER = "soak-sender@bounce.soak"
DOMAINS = ["d%d.soak" % i for i in range(6)]
RUN_ID = "%x" % SEED

T0 = time.time()


def log(*a):
    print("[%7.1f] " % (time.time() - T0) + " ".join(str(x) for x in a), file=sys.stderr, flush=True)


# ---------------------------------------------------------------- DSN / message parsing

MSGID_RE = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.I | re.M)
SOAK_ID_RE = re.compile(rb"<soak-\d+\.[0-9a-f]+@soak\.test>")


def split_message(data):
    """(header bytes, body bytes) of an RFC 5322 message with LF or CRLF line ends."""
    m = re.search(rb"\r?\n\r?\n", data)
    if not m:
        return data, b""
    return data[:m.start() + 1], data[m.end():]


def body_sum(body):
    return hashlib.sha256(body.replace(b"\r\n", b"\n")).hexdigest()


def parse_dsn(data):
    """For a DSN: (original Message-ID, [(final recipient, action, status)]); None otherwise."""
    if b"report-type=delivery-status" not in data:
        return None
    ds = data.find(b"Content-Type: message/delivery-status")
    hd = data.find(b"Content-Type: text/rfc822-headers")
    orig = SOAK_ID_RE.search(data, hd if hd >= 0 else 0)
    rcpts = []
    if ds >= 0:
        part = data[ds:hd if hd > ds else len(data)].replace(b"\r\n", b"\n")
        for block in part.split(b"\n\n"):
            f = {}
            for line in block.split(b"\n"):
                k, _, v = line.partition(b":")
                f[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
            if "final-recipient" in f:
                addr = f["final-recipient"].split(";", 1)[-1].strip().strip("<>").lower()
                rcpts.append((addr, f.get("action", ""), f.get("status", "")))
    return (orig.group(0).decode() if orig else None, rcpts)


# ---------------------------------------------------------------- the sinks


class Record:
    """What the sinks saw; every field is guarded by `lock`."""

    def __init__(self):
        self.lock = threading.Lock()
        self.failures_on = True
        self.delivered = {}      # (msgid, rcpt) -> copies accepted
        self.dsn = {}            # (msgid, rcpt) -> [status, ...] (Action: failed)
        self.dsn_messages = 0
        self.dsn_unparsed = 0
        self.damaged = []        # msgids whose body did not match X-Soak-Sum
        self.unknown = 0         # accepted messages with no soak Message-ID
        self.replies = {}        # reply kind -> count
        self.transactions = 0

    def count(self, kind):
        self.replies[kind] = self.replies.get(kind, 0) + 1


class SinkHandler:
    def __init__(self, rec, rng, journal):
        self.rec, self.rng, self.journal = rec, rng, journal

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        dsn = envelope.mail_from in ("", "<>")
        with self.rec.lock:
            on = self.rec.failures_on
            r = self.rng.random()
            if on and r < RCPT_TEMP:
                self.rec.count("rcpt 451")
                return "451 4.3.0 soak: mailbox busy, try later"
            if on and not dsn and r < RCPT_TEMP + RCPT_PERM:
                self.rec.count("rcpt 550")
                return "550 5.1.1 soak: no such user <%s>" % address
            self.rec.count("rcpt 250")
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        dsn = envelope.mail_from in ("", "<>")
        with self.rec.lock:
            on = self.rec.failures_on
            r = self.rng.random()
            self.rec.transactions += 1
            if on and r < DATA_TEMP:
                self.rec.count("data 451")
                return "451 4.3.0 soak: local error in processing"
            if on and not dsn and r < DATA_TEMP + DATA_PERM:
                self.rec.count("data 554")
                return "554 5.6.0 soak: message refused"
            self.rec.count("data 250")
        data = envelope.original_content or envelope.content
        rcpts = [a.lower() for a in envelope.rcpt_tos]
        head, body = split_message(data)
        m = MSGID_RE.search(head)
        msgid = m.group(1).decode("latin-1") if m else None
        entry = {"t": round(time.time() - T0, 2), "from": envelope.mail_from, "rcpts": rcpts, "msgid": msgid}
        with self.rec.lock:
            if dsn:
                self.rec.dsn_messages += 1
                parsed = parse_dsn(data)
                if not parsed or not parsed[0]:
                    self.rec.dsn_unparsed += 1
                else:
                    entry["dsn_for"] = parsed[0]
                    entry["dsn_rcpts"] = parsed[1]
                    for addr, action, status in parsed[1]:
                        if action == "failed":
                            self.rec.dsn.setdefault((parsed[0], addr), []).append(status)
            elif msgid and msgid.startswith("<soak-"):
                sm = re.search(rb"^X-Soak-Sum:[ \t]*([0-9a-f]+)", head, re.M)
                if not sm or sm.group(1).decode() != body_sum(body):
                    self.rec.damaged.append(msgid)
                    entry["damaged"] = True
                for a in rcpts:
                    self.rec.delivered[(msgid, a)] = self.rec.delivered.get((msgid, a), 0) + 1
            else:
                self.rec.unknown += 1
            self.journal.write(json.dumps(entry) + "\n")
        return "250 2.0.0 Ok: queued"


def start_sinks(rec, rng, journal):
    addrs = []
    if SINKS == "free":
        for _ in range(2):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            addrs.append(("127.0.0.1", s.getsockname()[1]))
            s.close()
    else:
        for a in SINKS.split(","):
            h, p = a.rsplit(":", 1)
            addrs.append((h, int(p)))
    for h, _ in addrs:
        if not h.startswith("127."):
            raise SystemExit("soak.py: sinks must be on 127.0.0.0/8, not " + h)
    ctls = []
    for h, p in addrs:
        c = Controller(SinkHandler(rec, rng, journal), hostname=h, port=p, decode_data=False,
                       server_hostname="sink.soak", data_size_limit=64 * 1024 * 1024, ready_timeout=10)
        c.start()
        ctls.append(c)
    return addrs, ctls


# ---------------------------------------------------------------- the drop writer

LINE_CHARS = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:-_=+"


class Dropped:
    def __init__(self):
        self.lock = threading.Lock()
        self.msgs = {}   # msgid -> [rcpts]
        self.names = {}  # drop file name -> msgid
        self.count = 0


def make_message(i, rng):
    nr = rng.choice((1, 1, 1, 2, 3))
    rcpts = ["u%d-%d@%s" % (i, k, DOMAINS[(i + k) % len(DOMAINS)]) for k in range(nr)]
    msgid = "<soak-%07d.%s@soak.test>" % (i, RUN_ID)
    size = rng.choice((600, 1500, 4000, 12000)) if rng.random() > 0.01 else 300000
    lines = []
    n = 0
    while n < size:
        r = rng.random()
        if r < 0.04:
            line = "."            # a lone dot: must be dot-stuffed, never end the DATA
        elif r < 0.08:
            line = ".." + "".join(rng.choice(LINE_CHARS) for _ in range(rng.randint(0, 40)))
        else:
            line = "".join(rng.choice(LINE_CHARS) for _ in range(rng.randint(0, 120)))
        lines.append(line)
        n += len(line) + 1
    body = ("\n".join(lines) + "\n").encode()
    head = ("From: Soak <%s>\nSubject: soak %d\nMessage-ID: %s\nDate: %s\nX-Soak-Sum: %s\n"
            % (BOUNCE_SENDER, i, msgid, email.utils.formatdate(), body_sum(body)))
    bare = rng.random() < 0.2
    if bare:   # envelope from the headers (sendmail -t); the last recipient as Cc
        head += "To: <%s>\n" % ">, <".join(rcpts[:max(1, nr - 1)])
        if nr > 1:
            head += "Cc: <%s>\n" % rcpts[-1]
        data = (head + "\n").encode() + body
    else:
        head += "To: <%s>\n" % rcpts[0]
        env = "MAIL FROM:<%s>\n" % BOUNCE_SENDER + "".join("RCPT TO:<%s>\n" % r for r in rcpts) + "\n"
        data = env.encode() + (head + "\n").encode() + body
    if rng.random() < 0.2:
        data = data.replace(b"\n", b"\r\n")
    return msgid, [r.lower() for r in rcpts], data


def writer(spool, dropped, stop_ev, rng, total):
    t_start = time.time()
    for i in range(total):  # bounded by count; the time bound is stop_ev
        due = t_start + i / RATE
        while True:
            left = due - time.time()
            if stop_ev.is_set():
                return
            if left <= 0:
                break
            time.sleep(min(left, 0.5))
        msgid, rcpts, data = make_message(i, rng)
        name = "soak-%07d" % i
        with dropped.lock:
            dropped.msgs[msgid] = rcpts
            dropped.names[name] = msgid
        tmp = os.path.join(spool, "tmp", ".drop-" + name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(spool, "incoming", name))
        with dropped.lock:
            dropped.count += 1


# ---------------------------------------------------------------- spoold


def write_config(d, spool, addrs):
    a, b = addrs
    with open(os.path.join(d, "spoold.yaml"), "w") as f:
        f.write(f"""hostname: spoold-soak.test
spool_dir: {spool}
control_socket: {d}/control.sock
queue:
  scan_interval: 1s
  lock_stale_after: 30s
  tiers:
    - {{ delay: 0, priority: 1 }}
    - {{ delay: 5s, priority: 1 }}
    - {{ delay: 10s, priority: 2 }}
    - {{ delay: 20s, priority: 4 }}
delivery:
  tls: none
  idle_timeout: 2s
  timeouts: {{ connect: 5s, greeting: 20s, ehlo: 20s, mail: 20s, rcpt: 20s, data: 20s, dot: 30s }}
routes:
  - {{ match: ["d0.soak", "d1.soak", "d2.soak"], hosts: ["{a[0]}:{a[1]}"] }}
  - {{ match: ["*"], hosts: ["{b[0]}:{b[1]}"] }}
logging: {{ level: info, format: text }}
""")
    return os.path.join(d, "spoold.yaml")


class Daemon:
    def __init__(self, d, conf):
        self.dir, self.conf = d, conf
        self.proc, self.n, self.events = None, 0, []
        self.lock = threading.Lock()

    def ctl(self, *args, timeout=30):
        return subprocess.run([SPOOLCTL, "--config", self.conf, *args], capture_output=True, text=True,
                              timeout=timeout)

    def status(self):
        try:
            r = self.ctl("status", "--json", timeout=20)
            return json.loads(r.stdout) if r.returncode == 0 else None
        except (subprocess.TimeoutExpired, ValueError):
            return None

    def start(self):
        self.n += 1
        logf = open(os.path.join(self.dir, "spoold-%02d.log" % self.n), "wb")
        t = time.time()
        with self.lock:
            self.proc = subprocess.Popen([SPOOLD, "--config", self.conf], stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        end = t + 30
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("spoold exited %s at start, see %s" % (self.proc.returncode, logf.name))
            st = self.status()
            if st and st.get("daemon", {}).get("running") and st["daemon"].get("pid") == self.proc.pid:
                log("spoold #%d started, pid %d, ready in %.1f s" % (self.n, self.proc.pid, time.time() - t))
                return
            time.sleep(0.2)
        raise RuntimeError("spoold #%d did not answer on its control socket in 30 s" % self.n)

    def stop(self, sig):
        p = self.proc
        t = time.time()
        os.kill(p.pid, sig)
        hung = False
        try:
            p.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            hung = True
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)
        ev = {"t": t - T0, "instance": self.n, "pid": p.pid, "signal": signal.Signals(sig).name,
              "secs": time.time() - t, "rc": p.returncode, "hung": hung}
        self.events.append(ev)
        log("spoold #%d %s: exit %s after %.2f s%s" % (self.n, ev["signal"], p.returncode, ev["secs"],
                                                       " (HUNG: SIGKILLed)" if hung else ""))
        with self.lock:
            self.proc = None

    def pid(self):
        with self.lock:
            return self.proc.pid if self.proc and self.proc.poll() is None else None


# ---------------------------------------------------------------- sampling


def proc_sample(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM"):
                    out[k] = int(v.split()[0]) / 1024
                elif k == "Threads":
                    out[k] = int(v)
        out["fds"] = len(os.listdir("/proc/%d/fd" % pid))
    except (OSError, ValueError):
        return None
    return out if "VmRSS" in out else None


def count_queue(spool, tiers=4):
    n = 0
    for t in range(tiers):
        try:
            n += sum(1 for x in os.listdir(os.path.join(spool, "queue", str(t))) if x[:1].isdigit())
        except OSError:
            pass
    try:
        inc = sum(1 for x in os.listdir(os.path.join(spool, "incoming")) if not x.startswith("."))
    except OSError:
        inc = 0
    return n, inc


def sampler(daemon, spool, rec, samples, stop_ev, phase):
    while not stop_ev.wait(SAMPLE):
        pid = daemon.pid()
        s = proc_sample(pid) if pid else None
        q, inc = count_queue(spool)
        with rec.lock:
            delivered = len(rec.delivered)
        samples.append({"t": time.time() - T0, "instance": daemon.n if pid else None, "phase": phase[0],
                        "queued": q, "incoming": inc, "delivered": delivered, **(s or {})})


# ---------------------------------------------------------------- end-of-run accounting


def read_envelope(path):
    env = {"rcpts": [], "from": None}
    with open(path, "rb") as f:
        for raw in f.read().decode("latin-1").split("\n"):
            parts = raw.split(" ")
            if parts[0] == "id":
                env["id"] = parts[1]
            elif parts[0] == "from":
                env["from"] = parts[1].strip("<>")
            elif parts[0] == "body-offset":
                env["offset"] = int(parts[1])
            elif parts[0] == "rcpt":
                addr = re.sub(r"%([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), parts[3])
                env["rcpts"].append((parts[1], addr.strip("<>").lower()))
    return env


def spool_contents(spool, tiers=4):
    """Every entry still in the spool: (place, envelope, message bytes)."""
    out = []
    places = [("queue/%d" % t) for t in range(tiers)] + ["hold", "failed"]
    for place in places:
        d = os.path.join(spool, place)
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            if not name[:1].isdigit() or ".lock" in name:
                continue
            try:
                env = read_envelope(os.path.join(d, name))
                body_file = os.path.join(spool, "data", env["id"])
                if not os.path.exists(body_file):
                    body_file += ".new"
                with open(body_file, "rb") as f:
                    f.seek(env.get("offset", 0))
                    msg = f.read(1 << 20)
            except (OSError, KeyError, IndexError, ValueError) as e:
                out.append((place, {"error": "%s: %s" % (name, e)}, b""))
                continue
            out.append((place, env, msg))
    return out


def leftovers(spool):
    """Files that a drained, stopped spool should not hold."""
    odd = []
    for sub in ("incoming", "tmp", "data", "bad", "hold") + tuple("queue/%d" % t for t in range(4)):
        d = os.path.join(spool, sub)
        for name in os.listdir(d) if os.path.isdir(d) else []:
            if sub == "data" and re.fullmatch(r"[0-9A-F]+", name):
                continue  # bodies of failed/ entries
            odd.append(os.path.join(sub, name))
    return odd


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0


def report(samples, daemon, rec, dropped, spool, drain, logs_dir):
    lines = []
    p = lines.append
    p("")
    p("spoold soak: %d min of drops at %.1f msg/s, seed %d, build %s" % (MINUTES, RATE, SEED, BUILD))
    p("sink failure rates: RCPT 4xx %.0f%% 5xx %.0f%%, DATA 4xx %.0f%% 5xx %.0f%% (DSNs: 4xx only); "
      "tiers 0/5s/10s/20s" % (RCPT_TEMP * 100, RCPT_PERM * 100, DATA_TEMP * 100, DATA_PERM * 100))
    p("")
    p("Resources per minute (spoold samples every %gs)" % SAMPLE)
    p("| min | phase | instances | RSS MB min / median / max | VmHWM MB max | fds min / median / max | threads max | queued (queue/+incoming/) max | delivered pairs (cum.) |")
    p("|---|---|---|---|---|---|---|---|---|")
    by_min = {}
    for s in samples:
        by_min.setdefault(int(s["t"] // 60), []).append(s)
    for m in sorted(by_min):
        ss = by_min[m]
        live = [s for s in ss if "VmRSS" in s]
        inst = sorted({s["instance"] for s in live})
        rss = [s["VmRSS"] for s in live]
        fds = [s["fds"] for s in live]
        if live:
            p("| %d | %s | %s | %.1f / %.1f / %.1f | %.1f | %d / %d / %d | %d | %d | %d |" % (
                m, ss[-1]["phase"], ",".join("#%d" % i for i in inst), min(rss), statistics.median(rss),
                max(rss), max(s["VmHWM"] for s in live), min(fds), statistics.median(fds), max(fds),
                max(s["Threads"] for s in live), max(s["queued"] + s["incoming"] for s in ss),
                ss[-1]["delivered"]))
        else:
            p("| %d | %s | (down) | — | — | — | — | %d | %d |" % (m, ss[-1]["phase"],
              max(s["queued"] + s["incoming"] for s in ss), ss[-1]["delivered"]))

    # Growth: compare the steady part of the run (each instance's samples after its warm-up).
    verdicts = []
    steady = []
    starts = {}
    for s in samples:
        if "VmRSS" in s:
            starts.setdefault(s["instance"], s["t"])
            if s["t"] - starts[s["instance"]] >= WARMUP and s["phase"] == "drops":
                steady.append(s)
    if len(steady) < 6:
        verdicts.append(("RSS and fds flat: too few steady samples (%d) to judge" % len(steady), False))
    else:
        third = max(1, len(steady) // 3)
        first, last = steady[:third], steady[-third:]
        r1, r3 = max(x["VmRSS"] for x in first), max(x["VmRSS"] for x in last)
        f1, f3 = max(x["fds"] for x in first), max(x["fds"] for x in last)
        rss_ok = r3 <= r1 * 1.25 + 4
        fd_ok = f3 <= f1 + 10
        verdicts.append(("RSS flat (max of last third %.1f MB <= 1.25 x first third %.1f MB + 4)" % (r3, r1), rss_ok))
        verdicts.append(("fds flat (max of last third %d <= first third %d + 10)" % (f3, f1), fd_ok))
        p("")
        p("Per instance (steady samples, >= %g s after start): RSS MB first -> last, fds first -> last" % WARMUP)
        for i in sorted({s["instance"] for s in steady}):
            xs = [s for s in steady if s["instance"] == i]
            p("  #%d: %.1f -> %.1f MB (max %.1f), fds %d -> %d (max %d), %d samples over %.0f s" % (
                i, xs[0]["VmRSS"], xs[-1]["VmRSS"], max(x["VmRSS"] for x in xs), xs[0]["fds"], xs[-1]["fds"],
                max(x["fds"] for x in xs), len(xs), xs[-1]["t"] - xs[0]["t"]))

    p("")
    p("Restarts")
    p("| at s | instance | signal | stop took s | exit |")
    p("|---|---|---|---|---|")
    for ev in daemon.events:
        p("| %.0f | #%d | %s | %.2f | %s%s |" % (ev["t"], ev["instance"], ev["signal"], ev["secs"], ev["rc"],
                                                 " HUNG" if ev["hung"] else ""))
    hung = [ev for ev in daemon.events if ev["hung"]]
    bad_exit = [ev for ev in daemon.events if ev["signal"] == "SIGTERM" and ev["rc"] != 0]
    verdicts.append(("every SIGTERM stopped spoold within %d s with exit 0" % STOP_WAIT, not hung and not bad_exit))

    # ---- accounting, per (message, recipient) pair
    with dropped.lock, rec.lock:
        msgs = dict(dropped.msgs)
        names = dict(dropped.names)
        delivered = dict(rec.delivered)
        dsn = {k: list(v) for k, v in rec.dsn.items()}
        damaged = list(rec.damaged)
        replies = dict(rec.replies)
        dsn_messages, dsn_unparsed, unknown = rec.dsn_messages, rec.dsn_unparsed, rec.unknown
    pairs = {(m, r) for m, rs in msgs.items() for r in rs}
    D = {k for k in delivered if k in pairs}
    B = {k for k in dsn if k in pairs}
    Q, F = set(), set()
    failed_entries = queued_entries = queued_dsns = 0
    entry_errors = []
    for place, env, msg in spool_contents(spool):
        if "error" in env:
            entry_errors.append(env["error"])
            continue
        head, _ = split_message(msg)
        if env["from"] == "":  # a DSN in the spool: the original's pairs it reports are accounted for
            parsed = parse_dsn(msg)
            if parsed and parsed[0]:
                for addr, action, _ in parsed[1]:
                    if action == "failed":
                        (F if place == "failed" else Q).add((parsed[0], addr))
            if place != "failed":
                queued_dsns += 1
            continue
        m = MSGID_RE.search(head)
        msgid = m.group(1).decode() if m else None
        if place == "failed":
            failed_entries += 1
            continue
        queued_entries += 1
        for state, addr in env["rcpts"]:
            if state == "pending":
                Q.add((msgid, addr))
    inc_dir = os.path.join(spool, "incoming")
    for name in os.listdir(inc_dir):
        if name in names:
            Q.update((names[name], r) for r in msgs[names[name]])
    for name in os.listdir(os.path.join(spool, "data")):
        if name.endswith(".new"):  # a claim nobody finished: recover() returns it to incoming/
            with open(os.path.join(spool, "data", name), "rb") as f:
                m = SOAK_ID_RE.search(f.read(1 << 16))
            if m and m.group(0).decode() in msgs:
                Q.update((m.group(0).decode(), r) for r in msgs[m.group(0).decode()])
    lost = pairs - (D | B | Q | F)
    lost_msgs = {m for m, _ in lost}
    expired = {k for k, sts in dsn.items() if any(s == "4.4.7" for s in sts)}
    dup_deliv = sum(1 for k, c in delivered.items() if c > 1)
    dup_dsn = sum(1 for k, v in dsn.items() if len(v) > 1)
    both = len(D & B)

    def msg_count(s):
        return len({m for m, _ in s})

    p("")
    p("Final counts (recipients = message × recipient pairs)")
    p("| what | messages | recipients |")
    p("|---|---|---|")
    p("| dropped | %d | %d |" % (len(msgs), len(pairs)))
    p("| delivered (unique Message-IDs at the sink) | %d | %d |" % (msg_count(D), len(D)))
    p("| bounced (DSN received at the sink for %s) | %d | %d |" % (BOUNCE_SENDER, msg_count(B), len(B)))
    p("| of which expired (DSN status 4.4.7) | %d | %d |" % (msg_count(expired), len(expired)))
    p("| still queued (queue/, hold/, incoming/, unfinished claims, DSNs not yet delivered) | %d | %d |"
      % (msg_count(Q - D - B), len(Q - D - B)))
    p("| bounce itself undeliverable (null-sender DSN in failed/) | %d | %d |" % (msg_count(F - D - B), len(F - D - B)))
    p("| **lost = dropped − (delivered ∪ bounced ∪ still queued)** | **%d** | **%d** |" % (len(lost_msgs), len(lost)))
    p("")
    p("Also: %d DSN messages received (%d unparsed), %d duplicate deliveries (pairs accepted more than once), "
      "%d duplicate DSN reports, %d pairs both delivered and bounced (a redelivery after a kill that was "
      "refused the 2nd time), %d damaged bodies, %d unknown messages at the sink"
      % (dsn_messages, dsn_unparsed, dup_deliv, dup_dsn, both, len(damaged), unknown))
    p("Spool at the end: %d entries in failed/ (originals), %d entries still queued, %d DSNs still queued, "
      "%d unreadable entries" % (failed_entries, queued_entries, queued_dsns, len(entry_errors)))
    p("Sink replies: " + ", ".join("%s %d" % kv for kv in sorted(replies.items())))
    p("Drain: %s" % drain["text"])
    odd = leftovers(spool)
    if odd:
        p("Files left in the spool (should be none): %d, e.g. %s" % (len(odd), ", ".join(odd[:8])))
    if lost:
        p("LOST (first 20): " + ", ".join("%s %s" % k for k in sorted(lost)[:20]))
    if damaged:
        p("DAMAGED (first 10): " + ", ".join(damaged[:10]))
    for e in entry_errors[:5]:
        p("unreadable entry: " + e)

    # ---- what spoold logged
    counts = {"sent": 0, "deferred": 0, "bounced": 0, "expired": 0}
    kinds = {}
    for name in sorted(os.listdir(logs_dir)):
        if not name.startswith("spoold-") or not name.endswith(".log"):
            continue
        with open(os.path.join(logs_dir, name), errors="replace") as f:
            for line in f:
                m = re.search(r"status=(\w+)", line)
                if m and m.group(1) in counts:
                    counts[m.group(1)] += 1
                if " error: " in line or " warning: " in line or line.startswith(("error:", "warning:")):
                    k = re.sub(r"[0-9A-F]{20,}|\d+", "N", line.split("Z ", 1)[-1].strip())[:140]
                    kinds[k] = kinds.get(k, 0) + 1
    p("spoold logged: " + ", ".join("status=%s %d" % kv for kv in counts.items()))
    if kinds:
        p("spoold warnings/errors (by kind, numbers as N):")
        for k, c in sorted(kinds.items(), key=lambda kv: -kv[1])[:12]:
            p("  %6d  %s" % (c, k))

    verdicts.insert(0, ("nothing lost (lost = 0)", not lost))
    verdicts.insert(1, ("no damaged body", not damaged))
    verdicts.insert(2, ("spool drained (nothing queued at the end)", drain["ok"] and not (Q - D - B)))
    p("")
    for text, ok in verdicts:
        p("%s  %s" % ("PASS" if ok else "FAIL", text))
    return "\n".join(lines), all(ok for _, ok in verdicts)


# ---------------------------------------------------------------- main


def drain_spool(daemon, spool, rec):
    """Failures off, then `spoolctl flush` until queue/, incoming/ and in-flight are empty (bounded)."""
    with rec.lock:
        rec.failures_on = False
    t = time.time()
    end = t + DRAIN_TIMEOUT
    quiet = 0
    flushes = 0
    while time.time() < end:
        if daemon.pid() is None:
            daemon.start()
        r = daemon.ctl("flush", timeout=60)
        flushes += 1
        if r.returncode != 0:
            log("spoolctl flush: exit %d %s" % (r.returncode, (r.stderr or r.stdout).strip()[:200]))
        time.sleep(3)
        q, inc = count_queue(spool)
        st = daemon.status() or {}
        inflight = st.get("in_flight", -1)
        if q == 0 and inc == 0 and inflight == 0:
            quiet += 1
            if quiet >= 2:
                return {"ok": True, "text": "empty %.0f s after the drops ended (%d flushes)" % (time.time() - t, flushes)}
        else:
            quiet = 0
            log("drain: %d queued, %d incoming, %s in flight" % (q, inc, inflight))
    q, inc = count_queue(spool)
    return {"ok": False, "text": "NOT empty after %.0f s: %d queued, %d incoming" % (DRAIN_TIMEOUT, q, inc)}


def main():
    for b in (SPOOLD, SPOOLCTL):
        if not os.access(b, os.X_OK):
            raise SystemExit("soak.py: %s missing (bench/soak.sh builds it)" % b)
    shutil.rmtree(WORK, ignore_errors=True)
    spool = os.path.join(WORK, "spool")
    for d in ("incoming", "tmp"):
        os.makedirs(os.path.join(spool, d), mode=0o700, exist_ok=True)
    os.chmod(WORK, 0o700)
    os.chmod(spool, 0o700)
    rng = random.Random(SEED)
    rec, dropped = Record(), Dropped()
    journal = open(os.path.join(WORK, "sink.jsonl"), "w", buffering=1)
    addrs, ctls = start_sinks(rec, random.Random(SEED + 1), journal)
    conf = write_config(WORK, spool, addrs)
    check = subprocess.run([SPOOLD, "--config", conf, "--check-config"], capture_output=True, text=True)
    if check.returncode != 0:
        raise SystemExit("soak.py: config refused: " + check.stdout + check.stderr)
    log("soak: %g min at %g msg/s, sinks %s, spool %s, seed %d" % (MINUTES, RATE, addrs, spool, SEED))

    daemon = Daemon(WORK, conf)
    daemon.start()
    samples, phase = [], ["drops"]
    stop_sampling, stop_writing = threading.Event(), threading.Event()
    smp = threading.Thread(target=sampler, args=(daemon, spool, rec, samples, stop_sampling, phase), daemon=True)
    smp.start()
    total = int(MINUTES * 60 * RATE)
    wr = threading.Thread(target=writer, args=(spool, dropped, stop_writing, random.Random(SEED + 2), total),
                          daemon=True)
    wr.start()

    drop_end = time.time() + MINUTES * 60
    restarts = 0
    ok = False
    try:
        next_restart = time.time() + RESTART_EVERY * rng.uniform(0.7, 1.3)
        while time.time() < drop_end and restarts < 1000:
            time.sleep(min(1.0, max(0.0, drop_end - time.time())))
            if daemon.proc is not None and daemon.proc.poll() is not None:
                log("spoold #%d DIED on its own: exit %s" % (daemon.n, daemon.proc.returncode))
                daemon.events.append({"t": time.time() - T0, "instance": daemon.n, "pid": daemon.proc.pid,
                                      "signal": "none (died)", "secs": 0, "rc": daemon.proc.returncode,
                                      "hung": True})
                daemon.proc = None
                daemon.start()
            if time.time() >= next_restart and drop_end - time.time() > 20:
                restarts += 1
                kill = restarts == 2 or (restarts > 2 and rng.random() < KILL_FRACTION)
                daemon.stop(signal.SIGKILL if kill else signal.SIGTERM)
                time.sleep(rng.uniform(0.2, 3.0))  # drops pile up in incoming/ meanwhile
                daemon.start()
                next_restart = time.time() + RESTART_EVERY * rng.uniform(0.7, 1.3)
        stop_writing.set()
        wr.join(30)
        log("drops done: %d written; draining" % dropped.count)
        phase[0] = "drain"
        drain = drain_spool(daemon, spool, rec)
        log("drain: " + drain["text"])
        time.sleep(2)
        stop_sampling.set()
        smp.join(10)
        if daemon.pid():
            daemon.stop(signal.SIGTERM)
        text, ok = report(samples, daemon, rec, dropped, spool, drain, WORK)
        print(text, flush=True)
        with open(os.path.join(WORK, "report.md"), "w") as f:
            f.write(text + "\n")
        with open(os.path.join(WORK, "samples.json"), "w") as f:
            json.dump(samples, f)
    finally:
        stop_writing.set()
        stop_sampling.set()
        if daemon.pid():
            os.kill(daemon.pid(), signal.SIGKILL)
        for c in ctls:
            c.stop()
        journal.close()
    log("artefacts (logs, sink journal, samples, report) in " + WORK)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
