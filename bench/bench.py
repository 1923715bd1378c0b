#!/usr/bin/python3
# bench/bench.py — the spoold vs Postfix benchmark driver (issue 8), run by bench/run.sh inside a
# private network namespace (or on 127.0.0.1 when namespaces are unavailable).
# Rule: both systems get the same workload in the same run, every process talks to loopback only,
# every wait is bounded, and each system's CPU is measured as the cpuacct cgroup delta over exactly
# the timed window (start of the workload -> the sink has counted every message).
import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("BENCH_BUILD", os.path.join(ROOT, "build", "bench"))
SPOOLD = os.path.join(BUILD, "daemon", "spoold")
SENDMAIL = os.path.join(BUILD, "ctl", "sendmail")
WORK = os.environ.get("BENCH_DIR", "/var/tmp/spoold-bench")
QUICK = os.environ.get("BENCH_QUICK", "0") == "1"


def env_int(name, full, quick):
    return int(os.environ.get(name, quick if QUICK else full))


N = env_int("BENCH_N", 10000, 1000)              # W1, W2, W3 messages
REPS = env_int("BENCH_REPS", 3, 1)
N_W2B = env_int("BENCH_N_W2B", 2000, 200)        # sendmail once per message
N_W4 = env_int("BENCH_N_W4", 1000, 100)          # 100 KiB messages
# More keys for spoold's delivery mapping, e.g. "max_sessions_per_destination: 20" (default: none).
DELIVERY_EXTRA = (", " + os.environ["BENCH_SPOOLD_DELIVERY"]) if os.environ.get("BENCH_SPOOLD_DELIVERY") else ""
W5_ENTRIES = env_int("BENCH_W5_ENTRIES", 1000000, 20000)
W5_DUE = env_int("BENCH_W5_DUE", 1000, 200)
W5_REPS = env_int("BENCH_W5_REPS", 1, 1)         # populating a million files is slow
W5_IDLE = env_int("BENCH_W5_IDLE", 60, 20)       # seconds of idle CPU measurement
# Seconds between workloads. ext4 without a journal (this VM) skips inodes freed in the last 30 s
# when it allocates one (recently_deleted), reading inode tables to find them: a workload creating
# files right after one that deleted 20,000 pays for its predecessor (W2b 3.27x alone, 3.00x right
# after W2), whichever system it measures.
SETTLE = env_int("BENCH_SETTLE", 35, 0)
N_W6 = env_int("BENCH_N_W6", 200, 50)
DOMAINS = env_int("BENCH_DOMAINS", 500, 100)
SINK_IPS = ["127.0.0.%d" % i for i in range(2, 2 + env_int("BENCH_SINKS", 4, 4))]
SESSIONS = env_int("BENCH_SESSIONS", 20, 20)     # smtp-source sessions (limit, Postfix inject)
CG_MOUNT = "/sys/fs/cgroup/cpuacct"
CG_ROOT = CG_MOUNT + "/spoold-bench"


def mount_cpuacct():
    """`ip netns exec` remounts /sys without the cgroup file systems: mount the cpuacct hierarchy
    again, inside that private mount namespace only."""
    global CG_MOUNT, CG_ROOT
    if os.path.isdir(CG_MOUNT):
        return
    CG_MOUNT = os.path.join(WORK, "cgroup-cpuacct")
    CG_ROOT = CG_MOUNT + "/spoold-bench"
    os.makedirs(CG_MOUNT, exist_ok=True)
    if not os.path.exists(os.path.join(CG_MOUNT, "cpuacct.usage")):
        subprocess.run(["mount", "-t", "cgroup", "-o", "cpuacct", "spoold-bench-cpuacct", CG_MOUNT],
                       check=True)
SIZE_1K = 1024
SIZE_100K = 100 * 1024


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- measurement helpers


class CpuGroup:
    """A cpuacct cgroup (v1) that a system's processes are started in; usage() in seconds."""

    def __init__(self, name):
        self.path = os.path.join(CG_ROOT, name)
        os.makedirs(self.path, exist_ok=True)

    def join_fn(self):
        procs = os.path.join(self.path, "cgroup.procs")

        def fn():
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        return fn

    def usage(self):
        with open(os.path.join(self.path, "cpuacct.usage")) as f:
            return int(f.read()) / 1e9

    def pids(self):
        with open(os.path.join(self.path, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]

    def rss_mb(self):
        total = 0
        for pid in self.pids():
            try:  # PSS: shared pages (libraries, shared memory) split between the processes
                with open("/proc/%d/smaps_rollup" % pid) as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def kill_all(self):
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


class RssSampler:
    """Samples the summed RSS of a cgroup's processes every 0.2 s; peak in MB."""

    def __init__(self, group):
        self.group, self.peak, self.stop_ev = group, 0.0, threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop_ev.wait(0.2):
            self.peak = max(self.peak, self.group.rss_mb())

    def stop(self):
        self.peak = max(self.peak, self.group.rss_mb())
        self.stop_ev.set()
        self.t.join()
        return self.peak


def vm_hwm_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(host, port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection((host, port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on %s:%d" % (host, port))


class Sink:
    """Postfix's smtp-sink with -c; a reader thread parses its running message counter and keeps
    the time each message was accepted (after the final '.')."""

    def __init__(self, host, port, group=None):
        self.count, self.times = 0, []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            ["smtp-sink", "-c", "-u", "nobody", "%s:%d" % (host, port), "1024"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            preexec_fn=group.join_fn() if group else None)
        self.t = threading.Thread(target=self.read, daemon=True)
        self.t.start()
        wait_port(host, port)

    def read(self):
        # The counter only grows, so the last complete record of what was read says it all. The
        # short sleep lets records gather: this thread shares the two cores with the system being
        # measured, and waking once per message (thousands per second) would take a share of
        # them that a CPU-bound drain feels more than the protocol limit's idle client does.
        # Times are late by at most the sleep (1 ms) plus one read.
        buf = b""
        while True:
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                return
            buf += chunk
            *recs, buf = buf.split(b"\r")
            now = time.time()
            for r in recs[-1:]:
                m = re.search(rb"mesg=(\d+)", r)
                if m:
                    n = int(m.group(1))
                    with self.cond:
                        while self.count < n:
                            self.count += 1
                            self.times.append(now)
                        self.cond.notify_all()
            time.sleep(0.001)

    def wait_for(self, n, timeout, sender=None):
        """Time at which the counter reached n; raises on timeout, or at once when the `sender`
        process (a Popen) has exited."""
        end = time.time() + timeout
        with self.cond:
            while self.count < n:
                left = end - time.time()
                if left <= 0:
                    raise TimeoutError("sink got %d of %d in %.0f s" % (self.count, n, timeout))
                if sender is not None and sender.poll() is not None:
                    raise RuntimeError("the sender exited (status %s) with %d of %d delivered"
                                       % (sender.returncode, self.count, n))
                self.cond.wait(min(left, 1.0))
            return self.times[n - 1]

    def cpu(self):
        """CPU seconds (user + system) smtp-sink has used so far."""
        try:
            with open("/proc/%d/stat" % self.proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Sinks:
    """Several sinks counted together (fan-out workload)."""

    def __init__(self, addrs):
        self.sinks = [Sink(h, p) for h, p in addrs]

    @property
    def count(self):
        return sum(s.count for s in self.sinks)

    def cpu(self):
        return sum(s.cpu() for s in self.sinks)

    def wait_for(self, n, timeout, sender=None):
        end = time.time() + timeout
        while self.count < n:
            if time.time() > end:
                raise TimeoutError("sinks got %d of %d in %.0f s" % (self.count, n, timeout))
            if sender is not None and sender.poll() is not None:
                raise RuntimeError("the sender exited (status %s) with %d of %d delivered"
                                   % (sender.returncode, self.count, n))
            time.sleep(0.01)
        return max((s.times[-1] for s in self.sinks if s.times), default=time.time())

    def stop(self):
        for s in self.sinks:
            s.stop()


TIMEOUT_CAP = env_int("BENCH_TIMEOUT", 300, 120)  # one run never waits longer than this


W3_TIMEOUT = env_int("BENCH_W3_TIMEOUT", 0, 0) or None


def timeout_for(n, size=SIZE_1K):
    return min(TIMEOUT_CAP, 60 + n * max(size, 4096) / 4096 / 20.0)


# ---------------------------------------------------------------- messages


def message(i, rcpt, size):
    head = ("From: <bench@sender.test>\nTo: <%s>\nSubject: bench %d\n"
            "Message-ID: <%d.%d@sender.test>\nDate: Sun, 22 Nov 2026 00:00:00 +0000\n\n"
            % (rcpt, i, i, os.getpid()))
    line = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopq\n"
    need = max(0, size - len(head))
    body = (line * (need // len(line) + 1))[:need]
    if body:
        body = body[:-1] + "\n"
    return (head + body).encode()


def drop_bytes(i, rcpt, size):
    return ("MAIL FROM:<bench@sender.test>\nRCPT TO:<%s>\n\n" % rcpt).encode() + message(i, rcpt, size)


def rcpt_for(i, domains=None):
    if domains:
        return "u%d@d%d.bench" % (i, i % domains)
    return "u%d@dest.test" % i


def write_drop(spool, name, data, durable):
    tmp = os.path.join(spool, "tmp", "." + name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(spool, "incoming", name))


# ---------------------------------------------------------------- spoold


class Spoold:
    def __init__(self, tag, route, wrap=None, extra=""):
        self.dir = os.path.join(WORK, "spoold-" + tag)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.spool = os.path.join(self.dir, "spool")
        # A spool that has been in use (docs/spool-format.md), so a drain does not time the first
        # start's layout creation (two fsyncs for VERSION).
        for d in ["incoming", "tmp", "data", "hold", "failed", "bad"] + ["queue/%d" % t for t in range(7)]:
            os.makedirs(os.path.join(self.spool, d), mode=0o700, exist_ok=True)
        with open(os.path.join(self.spool, "VERSION"), "w") as f:
            f.write("spoold-spool 1\n")
        os.chmod(os.path.join(self.spool, "VERSION"), 0o600)
        os.chmod(self.spool, 0o700)
        os.chmod(self.dir, 0o700)
        self.conf = os.path.join(self.dir, "spoold.yaml")
        self.wrap = wrap or []
        if route == "mx":
            # The MX hosts are on 127/8, which spoold refuses for a domain no route names.
            routing = ("dns: { servers: [\"127.0.0.1:53\"], address_preference: ipv4 }\n"
                       "routes:\n  - { match: [\"*.bench\"], mx: true }\n")
        else:
            routing = "routes:\n  - { match: [\"*\"], hosts: [\"127.0.0.1:%d\"] }\n" % route
        with open(self.conf, "w") as f:
            f.write("hostname: spoold-bench.test\nspool_dir: %s\ncontrol_socket: %s/control.sock\n"
                    "delivery: { tls: none%s }\nlogging: { level: info, format: text }\n%s%s"
                    % (self.spool, self.dir, DELIVERY_EXTRA, routing, extra))
        self.group = CpuGroup("spoold-" + tag)
        self.proc = None

    def start(self, gated=False):
        """Starts the daemon in its cgroup. gated: the process is created and joined to the cgroup
        first, waiting in a shell's `read`; go() then execs spoold. Joining a v1 cgroup waits for
        an RCU grace period (~15 ms here), which a drain's timed window must not contain: Postfix's
        daemons are already running when its drain starts."""
        self.logf = open(os.path.join(self.dir, "spoold.log"), "wb")
        cmd = self.wrap + [SPOOLD, "--config", self.conf]
        if gated:
            cmd = ["/bin/sh", "-c", 'read go; exec "$@"', "sh"] + cmd
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.PIPE if gated else None,
                                     preexec_fn=self.group.join_fn())

    def go(self):
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.close()

    def pid(self):
        # with a wrapper (perf/strace) the daemon is a child of the wrapper
        if not self.wrap:
            return self.proc.pid
        for p in self.group.pids():
            try:
                if os.readlink("/proc/%d/exe" % p).endswith("/spoold"):
                    return p
            except OSError:
                pass
        return self.proc.pid

    def wait_ready(self, timeout=20):
        sock = os.path.join(self.dir, "control.sock")
        end = time.time() + timeout
        while not os.path.exists(sock):
            if self.proc.poll() is not None or time.time() > end:
                raise RuntimeError("spoold did not start, see %s/spoold.log" % self.dir)
            time.sleep(0.02)
        time.sleep(0.3)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.pid(), signal.SIGTERM)  # the daemon itself, not a perf/strace wrapper
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.logf.close()

    def cleanup(self):
        self.group.kill_all()
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- Postfix (private instance)

MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
127.0.0.1:{hold} inet n - n - - smtpd -o {{ smtpd_client_restrictions = check_client_access static:HOLD }}
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class Postfix:
    def __init__(self, tag, route):
        self.dir = os.path.join(WORK, "postfix-" + tag)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        os.makedirs(self.etc)
        os.makedirs(self.queue)
        data = os.path.join(self.dir, "data")
        os.makedirs(data)
        shutil.chown(data, "postfix", "postfix")
        self.port, self.hold = free_port(), free_port()
        relay = "" if route == "mx" else "relayhost = [127.0.0.1]:%d\n" % route
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(f"""compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {data}
myhostname = postfix-bench.test
mydomain = postfix-bench.test
myorigin = $myhostname
mydestination =
local_transport = error:local delivery disabled
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
alias_maps =
alias_database =
smtputf8_enable = no
biff = no
maillog_file = {self.dir}/maillog
{relay}""")
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(port=self.port, hold=self.hold))
        self.group = CpuGroup("postfix-" + tag)

    def cmd(self, *args, **kw):
        return subprocess.run(list(args), check=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, **kw)

    def start(self):
        r = subprocess.run(["postfix", "-c", self.etc, "start"], capture_output=True,
                           preexec_fn=self.group.join_fn())
        if r.returncode != 0:
            raise RuntimeError("postfix start: " + r.stderr.decode(errors="replace"))
        wait_port("127.0.0.1", self.port)
        wait_port("127.0.0.1", self.hold)

    def count(self, sub):
        n = 0
        for _, _, files in os.walk(os.path.join(self.queue, sub)):
            n += len(files)
        return n

    def wait_held(self, n, timeout):
        end = time.time() + timeout
        while self.count("hold") < n or self.count("incoming") or self.count("active"):
            if time.time() > end:
                raise TimeoutError("postfix hold queue has %d of %d" % (self.count("hold"), n))
            time.sleep(0.1)

    def release(self):
        self.cmd("postsuper", "-c", self.etc, "-H", "ALL")
        self.cmd("postqueue", "-c", self.etc, "-f")

    def master_pid(self):
        with open(os.path.join(self.queue, "pid", "master.pid")) as f:
            return int(f.read().strip())

    def stop(self):
        subprocess.run(["postfix", "-c", self.etc, "stop"], capture_output=True)
        end = time.time() + 20
        while self.group.pids() and time.time() < end:
            time.sleep(0.1)
        self.group.kill_all()

    def cleanup(self):
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- injectors


def smtp_source(port, n, size, sessions, hold_port=None, keep_conn=False, rcpt="u@dest.test"):
    args = ["smtp-source", "-s", str(sessions), "-m", str(n), "-l", str(size),
            "-f", "bench@sender.test", "-t", rcpt]
    if keep_conn:
        args.append("-d")
    args.append("127.0.0.1:%d" % (hold_port or port))
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=timeout_for(n, size))


def smtp_inject(port, n, size, domains, threads=4):
    """SMTP injection with per-message recipients (smtp-source has one -t only)."""
    errors = []

    def worker(k):
        try:
            c = smtplib.SMTP("127.0.0.1", port, local_hostname="inject.test", timeout=60)
            for i in range(k, n, threads):
                r = rcpt_for(i, domains)
                c.sendmail("bench@sender.test", [r], message(i, r, size))
            c.quit()
        except Exception as e:  # reported after join
            errors.append(e)
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


def durable_writers(spool, n, size, writers, domains=None):
    def worker(k):
        for i in range(k, n, writers):
            write_drop(spool, "w%07d" % i, drop_bytes(i, rcpt_for(i, domains), size), True)
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(writers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


# ---------------------------------------------------------------- one measurement


def result(n, t0, t1, cpu, rss, **kw):
    el = t1 - t0
    d = {"n": n, "secs": el, "msgs": n / el if el > 0 else 0.0, "cpu": cpu,
         "cpu_us": cpu / n * 1e6, "rss": rss}
    d.update(kw)
    return d


def stalled_watcher(control_socket, timeout=5.0):
    """A `spoolctl watch` client that subscribes to every record and then never reads."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(control_socket)
            c.sendall(b'{"cmd":"watch"}\n')
            return c
        except OSError:
            c.close()
            time.sleep(0.005)
    raise RuntimeError("no control socket at %s" % control_socket)


def drain_spoold(tag, n, size, route, predrop, sinks, wrap=None, extra="", timeout=None, watch=False):
    """W1/W3/W4: n drops in incoming/ before the daemon starts; start → the sinks have all.
    watch: a stalled watch client is connected as the drain starts (W1w)."""
    s = Spoold(tag, route, wrap, extra)
    watcher = None
    try:
        for i in range(n):
            write_drop(s.spool, "p%07d" % i, drop_bytes(i, predrop(i), size), False)
        os.sync()
        s.start(gated=True)
        time.sleep(0.05)  # the shell is waiting in `read` (its start-up is not spoold's CPU)
        c0, k0, t0 = s.group.usage(), sinks.cpu(), time.time()
        s.go()
        if watch:
            watcher = stalled_watcher(os.path.join(s.dir, "control.sock"))
        rs = RssSampler(s.group)
        t1 = sinks.wait_for(n, timeout or timeout_for(n, size), s.proc)
        cpu = s.group.usage() - c0
        sink_us = (sinks.cpu() - k0) / n * 1e6
        hwm = vm_hwm_mb(s.pid())
        rs.stop()
        return result(n, t0, t1, cpu, hwm, sink_cpu_us=sink_us)
    finally:
        if watcher:
            watcher.close()
        s.stop()
        s.cleanup()


def drain_postfix(tag, n, size, route, sinks, domains=None, timeout=None):
    p = Postfix(tag, route)
    try:
        p.start()
        if domains:
            smtp_inject(p.hold, n, size, domains)
        else:
            smtp_source(p.port, n, size, SESSIONS, hold_port=p.hold)
        p.wait_held(n, timeout_for(n, size))
        os.sync()
        time.sleep(0.5)
        rs = RssSampler(p.group)
        c0, k0, t0 = p.group.usage(), sinks.cpu(), time.time()
        p.release()
        t1 = sinks.wait_for(n, timeout or timeout_for(n, size))
        cpu = p.group.usage() - c0
        sink_us = (sinks.cpu() - k0) / n * 1e6
        return result(n, t0, t1, cpu, rs.stop(), sink_cpu_us=sink_us)
    finally:
        p.stop()
        p.cleanup()


def limit(n, size):
    port = free_port()
    sink = Sink("127.0.0.1", port)
    try:
        k0, t0 = sink.cpu(), time.time()
        smtp_source(port, n, size, SESSIONS, keep_conn=True)
        t1 = sink.wait_for(n, 60)
        return result(n, t0, t1, 0.0, 0.0, sink_cpu_us=(sink.cpu() - k0) / n * 1e6)
    finally:
        sink.stop()


def disk_ceiling(n, size, writers):
    """bench/disk_ceiling.cpp: the durable receipts per second this disk allows with no SMTP (the
    file-system work behind every durable 250 of the listener), measured in the same run."""
    d = tempfile.mkdtemp(prefix="disk-", dir=WORK)
    try:
        os.sync()
        out = subprocess.run([os.path.join(BUILD, "disk_ceiling"), d, str(n), str(size), str(writers)],
                             check=True, capture_output=True, text=True, timeout=timeout_for(n))
        return float(out.stdout)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def with_sink(fn):
    port = free_port()
    sink = Sink("127.0.0.1", port)
    try:
        return fn(port, sink)
    finally:
        sink.stop()


def w1(system, rep, size=SIZE_1K, n=None, wrap=None):
    n = n or N
    tag = "w%s-%d" % ("4" if size > SIZE_1K else "1", rep)
    if system == "limit":
        return limit(n, size)
    if system == "spoold":
        return with_sink(lambda port, sink: drain_spoold(tag, n, size, port, rcpt_for, sink, wrap))
    return with_sink(lambda port, sink: drain_postfix(tag, n, size, port, sink))


# W1 with hooks.on_outcome selecting every status (/bin/true as the program), and W1 with a
# watch client that never reads: issue 17's "costs delivery nothing" claims, spoold only.
HOOK_EVERY = ('hooks:\n  on_outcome: { exec: "/bin/true", statuses: [sent, deferred, bounced, expired], '
              'max_running: 4, timeout: 10s }\n')


def w1h(system, rep):
    if system != "spoold":
        return None
    return with_sink(lambda port, sink: drain_spoold("w1h-%d" % rep, N, SIZE_1K, port, rcpt_for, sink,
                                                     extra=HOOK_EVERY))


def w1w(system, rep):
    if system != "spoold":
        return None
    return with_sink(lambda port, sink: drain_spoold("w1w-%d" % rep, N, SIZE_1K, port, rcpt_for, sink,
                                                     watch=True))


def w2(system, rep):
    n = N

    def spoold(port, sink):
        s = Spoold("w2-%d" % rep, port)
        try:
            s.start()
            s.wait_ready()
            c0, t0 = s.group.usage(), time.time()
            durable_writers(s.spool, n, SIZE_1K, 4)
            t1 = sink.wait_for(n, timeout_for(n), s.proc)
            return result(n, t0, t1, s.group.usage() - c0, vm_hwm_mb(s.pid()))
        finally:
            s.stop()
            s.cleanup()

    def postfix(port, sink):
        p = Postfix("w2-%d" % rep, port)
        try:
            p.start()
            rs = RssSampler(p.group)
            c0, t0 = p.group.usage(), time.time()
            smtp_source(p.port, n, SIZE_1K, SESSIONS)
            t1 = sink.wait_for(n, timeout_for(n))
            return result(n, t0, t1, p.group.usage() - c0, rs.stop())
        finally:
            p.stop()
            p.cleanup()
    if system == "limit":
        return limit(n, SIZE_1K)
    return with_sink(spoold if system == "spoold" else postfix)


def through_listener(tag, port, sink, n, ingest_only):
    """smtp-source -s SESSIONS into a spoold listener; timed until the sink has all, or (ingest
    only) until smtp-source's last 250 — then the sink must still get everything."""
    lport = free_port()
    s = Spoold(tag, port, extra='listen:\n  - { address: "127.0.0.1:%d", max_sessions: 200 }\n' % lport)
    try:
        s.start()
        s.wait_ready()
        c0, t0 = s.group.usage(), time.time()
        smtp_source(lport, n, SIZE_1K, SESSIONS)
        t1 = time.time() if ingest_only else sink.wait_for(n, timeout_for(n), s.proc)
        r = result(n, t0, t1, s.group.usage() - c0, vm_hwm_mb(s.pid()))
        sink.wait_for(n, timeout_for(n), s.proc)  # everything acknowledged was stored
        return r
    finally:
        s.stop()
        s.cleanup()


def w7(system, rep):
    """SMTP in -> SMTP out: smtp-source -s SESSIONS into the listener (spoold) or smtpd (Postfix),
    every 250 durable, until the sink has all."""
    if system == "limit":
        r = limit(N, SIZE_1K)
        r["disk_msgs"] = disk_ceiling(N, SIZE_1K, SESSIONS)
        return r
    if system == "spoold":
        return with_sink(lambda port, sink: through_listener("w7-%d" % rep, port, sink, N, False))
    return w2(system, rep)  # Postfix's W2 is exactly this: smtp-source -s SESSIONS -> smtpd -> smtp


def w8(system, rep):
    """Ingest only: smtp-source -s SESSIONS until its last 250 (spoold: the listener, delivery to
    a sink running meanwhile; Postfix: smtpd into its hold queue, nothing delivered)."""
    n = N

    def postfix(port, sink):
        p = Postfix("w8-%d" % rep, port)
        try:
            p.start()
            rs = RssSampler(p.group)
            c0, t0 = p.group.usage(), time.time()
            smtp_source(p.port, n, SIZE_1K, SESSIONS, hold_port=p.hold)
            t1 = time.time()
            p.wait_held(n, timeout_for(n))
            return result(n, t0, t1, p.group.usage() - c0, rs.stop())
        finally:
            p.stop()
            p.cleanup()
    if system == "limit":
        return {"disk_msgs": disk_ceiling(n, SIZE_1K, SESSIONS)}
    if system == "spoold":
        return with_sink(lambda port, sink: through_listener("w8-%d" % rep, port, sink, n, True))
    return with_sink(postfix)


def sendmail_loop(argv_for, group, n, sink):
    """One sendmail process per message, one after another; returns (t0, t1).

    The messages are written to files first; one small shell loop (joined to the system's cgroup
    once) then runs `sendmail rcpt < file` for each, as a cron job or a script would. Starting each
    process from Python instead (subprocess.run with preexec_fn and a timeout) forked the whole
    interpreter and polled for the child's exit at 1, 3, 7, 15 ms, adding ~2.5 ms per message to
    both systems alike."""
    d = tempfile.mkdtemp(prefix="w2b-", dir=WORK)
    try:
        lines = []
        for i in range(n):
            r = rcpt_for(i)
            path = os.path.join(d, "m%06d" % i)
            with open(path, "wb") as f:
                f.write(message(i, r, SIZE_1K))
            lines.append("%s %s\n" % (r, path))
        listing = os.path.join(d, "list")
        with open(listing, "w") as f:
            f.writelines(lines)
        argv = argv_for("$r")
        script = ('while read -r r f; do %s < "$f" >/dev/null 2>&1 || exit 1; done < %s'
                  % (" ".join(a if a == "$r" else shlex.quote(a) for a in argv).replace("$r", '"$r"'),
                     shlex.quote(listing)))
        t0 = time.time()
        subprocess.run(["/bin/sh", "-c", script], check=True, preexec_fn=group.join_fn(),
                       timeout=max(60, n * 0.5))
        return t0, sink.wait_for(n, timeout_for(n))
    finally:
        shutil.rmtree(d, ignore_errors=True)


def w2b(system, rep):
    n = N_W2B

    def spoold(port, sink):
        s = Spoold("w2b-%d" % rep, port)
        try:
            s.start()
            s.wait_ready()
            c0 = s.group.usage()
            t0, t1 = sendmail_loop(lambda r: [SENDMAIL, "-C", s.conf, r], s.group, n, sink)
            return result(n, t0, t1, s.group.usage() - c0, vm_hwm_mb(s.pid()))
        finally:
            s.stop()
            s.cleanup()

    def postfix(port, sink):
        p = Postfix("w2b-%d" % rep, port)
        try:
            p.start()
            rs = RssSampler(p.group)
            c0 = p.group.usage()
            t0, t1 = sendmail_loop(lambda r: ["/usr/sbin/sendmail", "-C", p.etc, r], p.group, n,
                                   sink)
            return result(n, t0, t1, p.group.usage() - c0, rs.stop())
        finally:
            p.stop()
            p.cleanup()
    if system == "limit":
        return None
    return with_sink(spoold if system == "spoold" else postfix)


class Dnsmasq:
    """MX for d0.bench … dN.bench, each pointing at its own host name on one of the sink IPs."""

    def __init__(self, domains):
        self.dir = os.path.join(WORK, "dnsmasq")
        os.makedirs(self.dir, exist_ok=True)
        conf = os.path.join(self.dir, "dnsmasq.conf")
        with open(conf, "w") as f:
            f.write("no-resolv\nno-hosts\nno-poll\nport=53\nlisten-address=127.0.0.1\n"
                    "bind-interfaces\nno-negcache\n")
            for d in range(domains):
                f.write("mx-host=d%d.bench,mx%d.bench,10\n" % (d, d))
                f.write("host-record=mx%d.bench,%s\n" % (d, SINK_IPS[d % len(SINK_IPS)]))
        self.proc = subprocess.Popen(["dnsmasq", "-k", "-C", conf, "--user=root",
                                      "--pid-file=" + os.path.join(self.dir, "pid")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        if self.proc.poll() is not None:
            raise RuntimeError("dnsmasq did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def w3(system, rep):
    n = N
    if system == "limit":
        return None
    dns = Dnsmasq(DOMAINS)
    sinks = Sinks([(ip, 25) for ip in SINK_IPS])
    try:
        if system == "spoold":
            return drain_spoold("w3-%d" % rep, n, SIZE_1K, "mx",
                                lambda i: rcpt_for(i, DOMAINS), sinks, timeout=W3_TIMEOUT)
        return drain_postfix("w3-%d" % rep, n, SIZE_1K, "mx", sinks, domains=DOMAINS,
                             timeout=W3_TIMEOUT)
    finally:
        sinks.stop()
        dns.stop()


def w4(system, rep, wrap=None):
    return w1(system, rep, size=SIZE_100K, n=N_W4, wrap=wrap)


# ---------------------------------------------------------------- W5: a million waiting


def make_id(i, now):
    # docs/spool-format.md: 9 hex arrival s, 5 hex µs, 6 hex host hash, 6 hex pid, 4 hex counter
    return "%09X%05X%06X%06X%04X" % (now - 86400, i % 1000000, 0xBE4C11, 0xB00000 + i // 1000000,
                                     i % 65536)


def entry_text(eid, arrived, rcpt, offset, size, tier):
    return ("spoold-entry 1\nid %s\narrived %d\nlast-attempt %d\nattempts %d\n"
            "body-offset %d\nbody-size %d\nflags -\nfrom <bench@sender.test>\n"
            "rcpt pending %d <%s> %s\nend\n"
            % (eid, arrived, arrived if tier else 0, tier, offset, size, tier, rcpt,
               "451 4.3.0 try later" if tier else "")).encode()


def populate_w5(spool, entries, due, now):
    tiers = 7
    for d in ["incoming", "tmp", "data", "hold", "failed", "bad", "queue"] + \
            ["queue/%d" % k for k in range(tiers)]:
        os.makedirs(os.path.join(spool, d), mode=0o700, exist_ok=True)
    with open(os.path.join(spool, "VERSION"), "w") as f:
        f.write("spoold-spool 1\n")
    data = os.path.join(spool, "data")
    # shared bodies for the waiting entries (hard links, never opened while not due); ext4 allows
    # 65,000 links per inode, so a new shared file every 50,000 entries
    shared = os.path.join(WORK, "w5-shared-body")
    body = drop_bytes(0, "u@dest.test", SIZE_1K)
    off = body.index(b"\n\n") + 2
    t = time.time()
    for i in range(entries):
        if i % 50000 == 0:
            if os.path.exists(shared):
                os.unlink(shared)
            with open(shared, "wb") as f:
                f.write(body)
        tier = 1 + i % 6
        eid = make_id(i, now)
        with open(os.path.join(spool, "queue", str(tier), "%010d-%s" % (now + 3600 * tier, eid)),
                  "wb") as f:
            f.write(entry_text(eid, now - 86400, "u%d@dest.test" % i, off, len(body) - off, tier))
        os.link(shared, os.path.join(data, eid))
        if i and i % 100000 == 0:
            log("  W5: %d entries written (%.0f/s)" % (i, i / (time.time() - t)))
    for j in range(due):
        i = entries + j
        eid = make_id(i, now)
        r = rcpt_for(i)
        b = drop_bytes(i, r, SIZE_1K)
        o = b.index(b"\n\n") + 2
        with open(os.path.join(data, eid), "wb") as f:
            f.write(b)
        with open(os.path.join(spool, "queue", "0", "%010d-%s" % (now - 10, eid)), "wb") as f:
            f.write(entry_text(eid, now - 10, r, o, len(b) - o, 0))
    os.sync()


def w5(system, rep):
    if system != "spoold":
        return None

    def run(port, sink):
        s = Spoold("w5-%d" % rep, port)
        try:
            now = int(time.time())
            t = time.time()
            populate_w5(s.spool, W5_ENTRIES, W5_DUE, now)
            log("  W5: populated %d + %d in %.0f s" % (W5_ENTRIES, W5_DUE, time.time() - t))
            c0, t0 = s.group.usage(), time.time()
            s.start()
            t1 = sink.wait_for(W5_DUE, timeout_for(W5_DUE) + 120)
            cpu = s.group.usage() - c0
            # idle: let the start-up scans finish, then measure a quiet window
            time.sleep(5)
            i0, it0 = s.group.usage(), time.time()
            time.sleep(W5_IDLE)
            idle = (s.group.usage() - i0) / (time.time() - it0)
            r = result(W5_DUE, t0, t1, cpu, vm_hwm_mb(s.pid()), idle_pct=idle * 100,
                       waiting=W5_ENTRIES)
            return r
        finally:
            s.stop()
            t = time.time()
            s.cleanup()
            log("  W5: cleanup %.0f s" % (time.time() - t))
    return with_sink(run)


# ---------------------------------------------------------------- W6: latency


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def w6(system, rep):
    n = N_W6

    def lat(send, sink):
        lats = []
        for i in range(n):
            t = time.time()
            send(i)
            lats.append(sink.wait_for(i + 1, 30) - t)
            time.sleep(0.02)
        return lats

    def spoold(port, sink):
        s = Spoold("w6-%d" % rep, port)
        try:
            s.start()
            s.wait_ready()
            c0, t0 = s.group.usage(), time.time()
            lats = lat(lambda i: write_drop(s.spool, "l%07d" % i, drop_bytes(i, rcpt_for(i),
                                                                             SIZE_1K), True), sink)
            return result(n, t0, time.time(), s.group.usage() - c0, vm_hwm_mb(s.pid()),
                          p50=pct(lats, 50) * 1e3, p99=pct(lats, 99) * 1e3,
                          max=max(lats) * 1e3, over_1s=sum(1 for x in lats if x > 1))
        finally:
            s.stop()
            s.cleanup()

    def postfix(port, sink):
        p = Postfix("w6-%d" % rep, port)
        try:
            p.start()
            rs = RssSampler(p.group)
            c0, t0 = p.group.usage(), time.time()

            def send(i):
                r = rcpt_for(i)
                subprocess.run(["/usr/sbin/sendmail", "-C", p.etc, r],
                               input=message(i, r, SIZE_1K), check=True, timeout=30,
                               preexec_fn=p.group.join_fn())
            lats = lat(send, sink)
            return result(n, t0, time.time(), p.group.usage() - c0, rs.stop(),
                          p50=pct(lats, 50) * 1e3, p99=pct(lats, 99) * 1e3,
                          max=max(lats) * 1e3, over_1s=sum(1 for x in lats if x > 1))
        finally:
            p.stop()
            p.cleanup()
    if system == "limit":
        return None
    return with_sink(spoold if system == "spoold" else postfix)


WORKLOADS = {
    "W1": ("drain %s x 1 KiB, static next hop" % "{N}", w1),
    "W1h": ("W1 with hooks.on_outcome (/bin/true) for every status (spoold only)", w1h),
    "W1w": ("W1 with a spoolctl watch client that never reads (spoold only)", w1w),
    "W2": ("end to end %s x 1 KiB (spoold: 4 durable writers; Postfix: smtp-source -s %d)"
           % ("{N}", SESSIONS), w2),
    "W2b": ("sendmail once per message, %d x 1 KiB" % N_W2B, w2b),
    "W3": ("fan-out {N} x 1 KiB to %d domains by MX (dnsmasq), %d sinks" % (DOMAINS, len(SINK_IPS)),
           w3),
    "W4": ("drain %d x 100 KiB, static next hop" % N_W4, w4),
    "W5": ("%d waiting in tiers 1-6 + %d due (spoold only)" % (W5_ENTRIES, W5_DUE), w5),
    "W6": ("latency, %d single drops (spoold: durable drop file; Postfix: sendmail)" % N_W6, w6),
    "W7": ("SMTP in -> SMTP out %s x 1 KiB, smtp-source -s %d (spoold: listener; Postfix: smtpd)"
           % ("{N}", SESSIONS), w7),
    "W8": ("SMTP ingest %s x 1 KiB, smtp-source -s %d until the last 250 (Postfix: into hold)"
           % ("{N}", SESSIONS), w8),
}


def med(rs, key):
    vals = [r[key] for r in rs if r and key in r]
    return statistics.median(vals) if vals else None


def fmt(v, f="%.0f"):
    return "—" if v is None else f % v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="W1,W2,W2b,W3,W4,W5,W6")
    ap.add_argument("--systems", default="spoold,postfix,limit")
    ap.add_argument("--wrap", default="", help="command prefix for spoold (perf, strace)")
    ap.add_argument("--json", default=os.path.join(WORK, "results.json"))
    ap.add_argument("--table", help="only print the table of a results JSON file")
    a = ap.parse_args()
    if a.table:
        with open(a.table) as f:
            print_table(json.load(f))
        return
    os.makedirs(WORK, exist_ok=True)
    mount_cpuacct()
    os.makedirs(CG_ROOT, exist_ok=True)
    wrap = a.wrap.split() if a.wrap else None
    systems = a.systems.split(",")
    all_res = {}
    for k, w in enumerate(a.only.split(",")):
        desc, fn = WORKLOADS[w]
        if k > 0 and SETTLE > 0:
            os.sync()
            time.sleep(SETTLE)
        res = {s: [] for s in systems}
        for rep in range(W5_REPS if w == "W5" else REPS):
            for s in systems:
                try:
                    if wrap and s == "spoold" and w in ("W1", "W4"):
                        r = w1(s, rep, wrap=wrap) if w == "W1" else w4(s, rep, wrap=wrap)
                    else:
                        r = fn(s, rep)
                except Exception as e:  # one failed run must not lose the others
                    log("%s %s rep %d FAILED: %s" % (w, s, rep, e))
                    r = {"error": str(e)}
                if r is not None:
                    res[s].append(r)
                    log("%s %s rep %d: %s" % (w, s, rep, json.dumps(r)))
        all_res[w] = res
        with open(a.json, "w") as f:
            json.dump(all_res, f, indent=1)
    print_table(all_res)
    remove_cgroups()


def remove_cgroups():
    """The per-run cpuacct groups are empty once every process has gone: remove them."""
    for d in os.listdir(CG_ROOT):
        if os.path.isdir(os.path.join(CG_ROOT, d)):
            try:
                os.rmdir(os.path.join(CG_ROOT, d))
            except OSError:
                pass
    try:
        os.rmdir(CG_ROOT)
    except OSError:
        pass


def print_table(all_res):
    print("\nspoold vs Postfix — medians of %d repetition(s); network: %s" %
          (REPS, os.environ.get("BENCH_NET", "?")))
    print("| workload | spoold msg/s | Postfix msg/s | spoold/Postfix | protocol limit msg/s | "
          "spoold CPU s | Postfix CPU s | spoold CPU µs/msg | Postfix CPU µs/msg | "
          "spoold peak RSS MB | Postfix peak PSS MB (sum of processes) | extra |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for w, res in all_res.items():
        sp, pf, lim = res.get("spoold", []), res.get("postfix", []), res.get("limit", [])
        a, b = med(sp, "msgs"), med(pf, "msgs")
        if med(sp, "p50") is not None:  # latency runs pace their drops: msg/s means nothing
            a = b = None
        ratio = "%.2f×" % (a / b) if a and b else "—"
        extra = []
        for name, rs in (("spoold", sp), ("Postfix", pf)):
            if med(rs, "p50") is not None:
                ok = [r for r in rs if "p99" in r]
                extra.append("%s p50 %.1f ms, p99 %.1f ms (worst rep %.1f ms), max %s ms, %d drop(s) > 1 s"
                             % (name, med(rs, "p50"), med(rs, "p99"), max(r["p99"] for r in ok),
                                fmt(max((r.get("max", 0) for r in ok), default=None)),
                                sum(r.get("over_1s", 0) for r in ok)))
        if med(sp, "idle_pct") is not None:
            extra.append("%d waiting; %d due delivered in %.1f s; idle CPU %.2f%% of a core"
                         % (sp[0]["waiting"], sp[0]["n"], med(sp, "secs"), med(sp, "idle_pct")))
        if med(lim, "disk_msgs") is not None:
            extra.append("disk ceiling (%d writers: create, write, fdatasync; shared rename + directory "
                         "fsync) %.0f msg/s" % (SESSIONS, med(lim, "disk_msgs")))
        sink = [(name, med(rs, "sink_cpu_us")) for name, rs in (("spoold", sp), ("Postfix", pf), ("limit", lim))]
        sink = ["%s %.0f" % (name, us) for name, us in sink if us is not None]
        if sink:  # the peer's share of the two cores: a sink that works harder leaves less for us
            extra.append("sink CPU µs/msg: " + ", ".join(sink))
        for name, rs in (("spoold", sp), ("Postfix", pf), ("limit", lim)):
            errs = [r["error"] for r in rs if "error" in r]
            if errs:
                extra.append("%s: %d run(s) failed (%s)" % (name, len(errs), errs[0]))
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            w, fmt(a), fmt(b), ratio, fmt(med(lim, "msgs")), fmt(med(sp, "cpu"), "%.2f"),
            fmt(med(pf, "cpu"), "%.2f"), fmt(med(sp, "cpu_us")), fmt(med(pf, "cpu_us")),
            fmt(med(sp, "rss"), "%.1f"), fmt(med(pf, "rss"), "%.1f"), "; ".join(extra)))
    print("\nWorkloads:")
    for w in all_res:
        print("- %s: %s" % (w, WORKLOADS[w][0].replace("{N}", str(N))))


if __name__ == "__main__":
    main()
