"""What the Python benchmark drivers share: logging, CPU accounting of the
server, the load generator and everything else, and waiting for a quiet
machine. The machine is shared, so every driver records how much CPU other
processes took during each measurement and marks measurements they
disturbed."""

import os
import platform
import resource
import subprocess
import sys
import time

QUIET_CORES = 0.25  # "quiet": the machine uses less than this much CPU
DISTURBED_CORES = 0.15  # other processes using more spoil a measurement
TICK = os.sysconf("SC_CLK_TCK")


def log(msg):
    name = os.path.basename(sys.argv[0])
    print(f"[{name} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr,
          flush=True)


def machine_ticks():
    """(task, irq, steal) clock ticks of all CPUs since boot: time spent in
    processes and kernel threads, in interrupts, and taken by the host."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
    return user + nice + system, irq + softirq, steal


def _stat_fields(path):
    with open(path) as f:
        return f.read().rsplit(")", 1)[1].split()


def process_ticks(pid):
    """utime + stime of a process, all its threads, in clock ticks."""
    try:
        fields = _stat_fields(f"/proc/{pid}/stat")
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def thread_ticks(pid):
    """{tid: utime + stime} of every thread of a process, in clock ticks."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            fields = _stat_fields(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue
        out[int(tid)] = int(fields[11]) + int(fields[12])
    return out


def process_table():
    """{pid: (ppid, is_kernel_thread, own ticks, ticks of reaped
    children)} of every process, read from /proc/PID/stat."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            f = _stat_fields(f"/proc/{pid}/stat")
        except OSError:
            continue
        out[int(pid)] = (int(f[1]), bool(int(f[6]) & 0x00200000),
                         int(f[11]) + int(f[12]), int(f[13]) + int(f[14]))
    return out


def descendants(table, root):
    """root and every process below it."""
    kids = {}
    for pid, row in table.items():
        kids.setdefault(row[0], []).append(pid)
    out, todo = set(), [root]
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo.extend(kids.get(p, ()))
    return out


class Snapshot:
    """CPU ticks of kernel threads and of processes outside this process's
    own tree (the benchmark, its servers and its load generators).

    Other processes are counted exactly, from their own times plus the
    times of children they reaped (cutime, cstime), so a compiler that
    starts and ends between two snapshots is counted when its parent
    reaps it. The machine-wide columns of /proc/stat are not used for
    this: they are sampled at clock ticks and on this VM differ from the
    sum of the processes' exact times by up to 0.4 cores under a load with
    many short wake-ups."""

    def __init__(self):
        table = process_table()
        ours = descendants(table, os.getpid())
        self.kernel = sum(r[2] for r in table.values() if r[1])
        self.others = {pid: r[2] + r[3] for pid, r in table.items()
                       if not r[1] and pid not in ours}
        # bytes other processes had sent to storage, reaped children
        # included like the CPU times (their fsyncs slow down ours)
        self.others_io = {pid: process_write_bytes(pid)
                          for pid in self.others}
        self.ours = ours

    def since(self, before):
        """(kernel ticks, other processes' ticks) since `before`. A
        process that started in between counts whole. One that ended in
        between shows up in its parent's reaped-children time with its
        whole life, so what it had used by `before` is taken off again."""
        other = 0
        for pid, t in self.others.items():
            if pid in before.ours:
                continue  # a pid of ours reused: ignore
            other += max(0, t - before.others.get(pid, 0))
        for pid, t in before.others.items():
            if pid not in self.others:
                other -= t
        return self.kernel - before.kernel, max(0, other)

    def io_since(self, before):
        """Bytes other processes wrote to storage since `before`, counted
        like since() counts CPU time."""
        total = 0
        for pid, b in self.others_io.items():
            if pid not in before.ours:
                total += max(0, b - before.others_io.get(pid, 0))
        for pid, b in before.others_io.items():
            if pid not in self.others_io:
                total -= b
        return max(0, total)


def kernel_thread_ticks():
    """CPU ticks of all kernel threads (writeback, journal, softirq...)."""
    return Snapshot().kernel


def process_write_bytes(pid):
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def disk_device(path):
    """The block device (e.g. "vda") holding path, or None."""
    src = first_line("findmnt", "-n", "-o", "SOURCE", "-T", path)
    name = os.path.basename(src) if src.startswith("/dev/") else None
    return name if name and os.path.exists(f"/sys/class/block/{name}") \
        else None


def disk_written_bytes(dev):
    """Bytes written to a block device since boot, by everyone."""
    try:
        with open(f"/sys/class/block/{dev}/stat") as f:
            return int(f.read().split()[6]) * 512
    except (OSError, IndexError, TypeError):
        return 0


def own_cpu_s():
    """CPU seconds of this process and its waited-for children."""
    s, c = (resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN))
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class CpuMeter:
    """CPU used during one phase, in cores: by the server (and each of its
    threads), by the load generator (this process and the children it has
    waited for, such as wrk), by helper processes named in `helpers`
    ({name: pid}, counted while they run), by kernel threads and interrupts
    (much of it the loopback network and disk writeback the load causes),
    and by other processes: someone else's work, which disturbs the
    figures (see Snapshot)."""

    def __init__(self, server_pid, helpers=None, disk=None):
        self.pid = server_pid
        self.disk = disk  # block device whose writes to report, or None
        self.d0 = disk_written_bytes(disk) if disk else 0
        self.helpers = dict(helpers or {})
        self.t0 = time.monotonic()
        self.m0 = machine_ticks()
        self.s0 = Snapshot()
        self.srv0 = process_ticks(server_pid)
        self.thr0 = thread_ticks(server_pid)
        self.h0 = {n: process_ticks(p) for n, p in self.helpers.items()}
        self.gen0 = own_cpu_s()
        self.wb0 = process_write_bytes(server_pid)

    def read(self):
        wall = time.monotonic() - self.t0
        _task, irq, steal = (b - a for a, b in
                             zip(self.m0, machine_ticks()))
        s1 = Snapshot()
        kern, others = s1.since(self.s0)
        others_io = s1.io_since(self.s0)
        srv = (process_ticks(self.pid) - self.srv0) / TICK
        thr = thread_ticks(self.pid)
        gen = own_cpu_s() - self.gen0
        out = {"server": round(srv / wall, 2),
               # in order of creation: the loop thread first
               "server_threads": [
                   round((thr[t] - self.thr0.get(t, 0)) / TICK / wall, 2)
                   for t in sorted(thr)],
               "generator": round(gen / wall, 2),
               "kernel": round((kern + irq) / TICK / wall, 2),
               "others": round(others / TICK / wall, 2),
               "others_write_mb_s": round(others_io / 1e6 / wall, 2),
               "steal": round(steal / TICK / wall, 2),
               "server_write_bytes":
                   process_write_bytes(self.pid) - self.wb0}
        for n, p in self.helpers.items():
            out[n] = round((process_ticks(p) - self.h0[n]) / TICK / wall, 2)
        if self.disk:
            # everyone's writes to the device, journal included
            out["disk_write_mb_s"] = round(
                (disk_written_bytes(self.disk) - self.d0) / 1e6 / wall, 1)
        out["server_write_mb_s"] = round(
            out["server_write_bytes"] / 1e6 / wall, 1)
        return out


def wait_quiet(limit_s):
    """Waits until other processes and kernel threads use less than
    QUIET_CORES over a second (writeback left over from the previous
    measurement counts), at most limit_s; returns (seconds waited, last
    load)."""
    start = time.monotonic()
    for tries in range(1 << 30):
        s0 = Snapshot()
        time.sleep(1.0)
        kern, others = Snapshot().since(s0)
        load = (kern + others) / TICK
        waited = time.monotonic() - start
        if load < QUIET_CORES or waited >= limit_s:
            return round(waited, 1), round(load, 2)
        if tries % 20 == 0:
            log(f"others use {load:.2f} cores; waiting for a quiet machine")


def fsync_probe(directory, n=400):
    """p50 / p99 / max milliseconds of writing 4 KiB and fdatasync, n
    times, in a file in `directory`: how fast the disk makes a commit
    durable, for the record."""
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    block, times = b"x" * 4096, []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            os.pwrite(fd, block, (i % 64) * 4096)
            os.fdatasync(fd)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return (f"p50 {times[n // 2]:.2f} / p99 {times[n * 99 // 100]:.2f} / "
            f"max {times[-1]:.2f}")


def first_line(*argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    except (OSError, IndexError):
        return "?"


def environment(scratch_dir=None):
    """The machine, for the record."""
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    env = {
        "cpus": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    if scratch_dir:
        env["data filesystem"] = " ".join(first_line(
            "findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T",
            scratch_dir).split())
    return env
