#!/usr/bin/env python3
"""Reads the "KM ..." lines of scenario.sh runs (one log per kernel), judges
every case, prints the table (case x kernel, one block per source) and
compares it with the expected table: exit status 1 when a cell is worse than
expected (a regression), 0 otherwise. A cell better than expected is
reported so that the expected table can be tightened.

Usage: analyze.py --expected FILE [--markdown] [--cells] KERNEL=LOG...
  --cells  also print every cell as "cell KERNEL SOURCE CASE VALUE" (the
           form of the expected table)
"""
import json
import re
import sys

SOURCES = ["ebpf", "connector", "connector-unpriv", "auto"]
CASES = [
    ("source", "source that reported"),
    ("exit_code", "exit code (`exit 42`)"),
    ("signal", "signal (SIGTERM)"),
    ("core_dumped", "core dump (SIGSEGV)"),
    ("killer", "killer pid and name"),
    ("oom", "memcg OOM kill"),
    ("cgroup", "cgroup path"),
    ("cmdline_instant", "command line, instant exit"),
    ("cmdline_preexisting", "command line, pre-existing process"),
    ("cpu", "CPU time"),
    ("peak_rss", "peak RSS"),
    ("strict", "`watch --strict` status"),
]
KERNEL_CASES = [
    ("wait_code", "`wait`: exit code"),
    ("wait_signal", "`wait`: signal"),
    ("wait_timeout", "`wait --timeout`"),
    ("wait_unprivileged", "`wait` unprivileged"),
    ("ring_loss", "loss counted (one-page ring)"),
]
# How good a cell is: a cell is a regression when worse than expected.
GOOD = {"ok": 2}


def parse(path):
    runs = {s: {"cases": {}, "exits": {}, "stderr": [], "status": None} for s in SOURCES}
    kernel = {"wait": {}, "ring": None, "release": None, "booted": False, "ended": False}
    with open(path, errors="replace") as f:
        for raw in f:
            line = raw.rstrip("\r\n")
            at = line.find("KM ")
            if at < 0:
                continue
            parts = line[at + 3:].split(" ", 2)
            tag = parts[0]
            if tag == "KERNEL":
                kernel["release"] = line[at + 10:]
            elif tag == "BOOTED" or tag == "BTF":
                kernel["booted"] = True
            elif tag == "END":
                kernel["ended"] = True
            elif tag == "CASE" and len(parts) == 3:
                fields = parts[2].split()
                runs[parts[1]]["cases"][fields[0]] = [int(x) for x in fields[1:]]
            elif tag == "JSON" and len(parts) == 3:
                try:
                    rec = json.loads(parts[2])
                except ValueError:
                    continue
                if rec.get("type") == "exit":
                    runs[parts[1]]["exits"][rec["pid"]] = rec
            elif tag == "STDERR" and len(parts) == 3:
                if parts[1] in runs:
                    runs[parts[1]]["stderr"].append(parts[2])
            elif tag == "STATUS" and len(parts) == 3:
                runs[parts[1]]["status"] = parts[2].split()
            elif tag == "WAIT" and len(parts) == 3:
                kernel["wait"][parts[1]] = int(parts[2])
            elif tag == "RING" and len(parts) >= 2:
                kernel["ring"] = int(parts[1])
    return runs, kernel


def judge(run):
    """case -> cell for one source's run."""
    cells = {}
    status = run["status"]
    if status is None:
        return {c: "no-run" for c, _ in CASES}
    if status[1] == "refused":
        return {c: "refused" for c, _ in CASES}
    exits = run["exits"]

    def rec(case):
        pids = run["cases"].get(case)
        if not pids:
            return None, None
        return exits.get(pids[0]), pids

    def cell(case, check):
        r, pids = rec(case)
        if r is None:
            return "missing"
        return check(r, pids)

    sources = sorted({r["source"] for r in exits.values()})
    cells["source"] = "+".join(s.replace("linux-", "") for s in sources) or "missing"
    cells["exit_code"] = cell("instant", lambda r, _: "ok" if r["exit_code"] == 42 and r["signal"] is None else "wrong")
    cells["signal"] = cell("signal", lambda r, _: "ok" if r["signal"] == 15 and r["exit_code"] is None else "wrong")
    cells["core_dumped"] = cell("core", lambda r, _: "ok" if r["signal"] == 11 and r["core_dumped"] else "wrong")

    def killer(r, pids):
        if r["signal"] != 9:
            return "wrong"
        if r["killer_pid"] is None:
            return "null"
        return "ok" if r["killer_pid"] == pids[1] and r["killer_name"] else "wrong"

    cells["killer"] = cell("killer", killer)

    def oom(r, _):
        if r["signal"] != 9:
            return "wrong"
        if r["oom_killed"] is None:
            return "null"
        return "ok" if r["oom_killed"] else "wrong"

    cells["oom"] = cell("oom", oom) if "oom" in run["cases"] else "no-cgroup"
    cells["cgroup"] = (
        cell("cgroup", lambda r, _: "ok" if r["cgroup"] == "/kmtest" else ("null" if r["cgroup"] is None else "wrong"))
        if "cgroup" in run["cases"]
        else "no-cgroup"
    )

    def cmdline(expected):
        def check(r, _):
            if r["command_line"] is None:
                return "null"
            return "ok" if r["command_line"] == expected else "wrong"

        return check

    cells["cmdline_instant"] = cell("instant", cmdline("sh -c exit 42"))
    cells["cmdline_preexisting"] = cell("preexisting", lambda r, p: "wrong" if r["exit_code"] != 7 else None)
    if cells["cmdline_preexisting"] is None:
        r, _ = rec("preexisting")
        c = r["command_line"]
        cells["cmdline_preexisting"] = "null" if c is None else ("ok" if c.startswith("sh -c read x <") else "wrong")

    def cpu(r, _):
        if r["cpu_user_ms"] is None or r["cpu_system_ms"] is None:
            return "null"
        return "ok" if r["cpu_user_ms"] + r["cpu_system_ms"] > 0 else "zero"

    cells["cpu"] = cell("cpu", cpu)

    def rss(r, _):
        if r["peak_rss_bytes"] is None:
            return "null"
        return "ok" if r["peak_rss_bytes"] >= 20_000_000 else "low"

    cells["peak_rss"] = cell("rss", rss)
    cells["strict"] = {"0": "ok", "3": "loss"}.get(status[0], "status-" + status[0])
    return cells


def judge_kernel(kernel):
    w = kernel["wait"]

    def code(name, want):
        if name not in w:
            return "no-run"
        if w[name] == want:
            return "ok"
        # 3: the process ended, its status is unknown (no connector for
        # this user, and no status on its pidfd before Linux 6.15).
        return {2: "refused", 3: "no-status"}.get(w[name], "status-%d" % w[name])

    cells = {
        "wait_code": code("code", 5),
        "wait_signal": code("signal", 143),
        "wait_timeout": code("timeout", 124),
        "wait_unprivileged": code("unprivileged", 6),
    }
    ring = kernel["ring"]
    cells["ring_loss"] = "no-run" if ring is None else ("ok" if ring == 0 else "failed")
    return cells


def load_expected(path):
    expected = {}
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].split()
            if len(line) == 4:
                expected[tuple(line[:3])] = line[3].split("|")
    return expected


def main(argv):
    expected_path, md, cells_out, logs = None, False, False, []
    args = iter(argv)
    for a in args:
        if a == "--expected":
            expected_path = next(args)
        elif a == "--markdown":
            md = True
        elif a == "--cells":
            cells_out = True
        else:
            logs.append(a.split("=", 1))
    results, releases, notes = {}, {}, {}
    for k, path in logs:
        runs, kernel = parse(path)
        releases[k] = kernel["release"] or "?"
        if not kernel["ended"]:
            notes[k] = "the scenario did not finish (see %s)" % path
        for s in SOURCES:
            for c, cell in judge(runs[s]).items():
                results[(k, s, c)] = cell
            # The start line names what this kernel cannot give.
            starts = [l for l in runs[s]["stderr"] if l.startswith("procexit: source") or "procexit: note" in l]
            notes.setdefault((k, s), starts)
        for c, cell in judge_kernel(kernel).items():
            results[(k, "-", c)] = cell
    kernels = [k for k, _ in logs]
    width = max(len(d) for _, d in CASES + KERNEL_CASES)
    colw = 14
    for s in SOURCES + ["-"]:
        title = "all sources (as root unless named)" if s == "-" else "source: " + s
        print("\n%s" % title)
        print("  %-*s %s" % (width, "case", " ".join("%-*s" % (colw, k + " " + releases[k][:8]) for k in kernels)))
        for c, desc in CASES if s != "-" else KERNEL_CASES:
            print("  %-*s %s" % (width, desc, " ".join("%-*s" % (colw, results[(k, s, c)]) for k in kernels)))
    for k in kernels:
        for s in SOURCES:
            for l in notes.get((k, s), []):
                print("  [%s %s] %s" % (k, s, l))
        if k in notes:
            print("  [%s] %s" % (k, notes[k]))

    failed = []
    better = []
    # Where the kernel lets this user listen to the connector, unprivileged
    # wait has the full status; where it refuses, wait still ends (with the
    # status where pidfds keep it), never refused.
    for k in kernels:
        watch = results[(k, "connector-unpriv", "source")]
        wait = results[(k, "-", "wait_unprivileged")]
        if wait not in (["ok", "no-status"] if watch == "refused" else ["ok"]):
            failed.append("%s: unprivileged watch %s but unprivileged wait %s" % (k, watch, wait))
    if cells_out:
        for key, cell in sorted(results.items()):
            print("cell %s %s %s %s" % (key + (cell,)))
    if expected_path:
        expected = load_expected(expected_path)
        for key, cell in sorted(results.items()):
            want = expected.get(key)
            if want is None:
                failed.append("%s %s %s: %s, and no expected value" % (key + (cell,)))
            elif cell not in want:
                if "ok" in want or cell != "ok":
                    failed.append("%s %s %s: %s, expected %s" % (key + (cell, "|".join(want))))
                else:
                    better.append("%s %s %s: %s, expected %s" % (key + (cell, "|".join(want))))
    if md:
        print("\n| source | case | " + " | ".join("%s (`%s`)" % (k, releases[k]) for k in kernels) + " |")
        print("|---|---|" + "---|" * len(kernels))
        for s in SOURCES + ["-"]:
            for c, desc in CASES if s != "-" else KERNEL_CASES:
                print("| %s | %s | %s |" % (s if s != "-" else "any", desc, " | ".join(results[(k, s, c)] for k in kernels)))
    for b in better:
        print("kernel-matrix: better than expected (tighten expected.txt): " + b)
    for f in failed:
        print("kernel-matrix: REGRESSION " + f)
    print("kernel-matrix: %s (%d cells, %d regressions)" % ("FAILED" if failed else "passed", len(results), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
