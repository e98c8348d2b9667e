"""Times one Python .etl decoder on one file, in process (import excluded).

    python replay_bench.py dissect|etlparser FILE REPEATS

Prints "<best seconds> <records seen>". dissect.etl: every record's header
is parsed (provider, time stamp) and kernel Process payloads are decoded,
the same work as procexit's etl_scan. etl-parser: its parser visits every
record it can reach (it stops early on compressed and some older files;
the record count shows it).
"""
import sys
import time
import uuid

PROCESS = uuid.UUID("3d6fa8d0-fe05-11d0-9dda-00c04fd7ba7c")


def run_dissect(path):
    from dissect.etl.etl import ETL

    n = 0
    with open(path, "rb") as fh:
        etl = ETL(fh)
        for record in etl:
            header = record.header
            n += 1
            try:
                provider = header.provider_id
                header.timestamp
            except Exception:
                continue
            if provider == PROCESS:
                try:
                    record.event
                except Exception:
                    pass
    return n


def run_etlparser(path):
    from etl.etl import IEtlFileObserver, build_from_stream

    class Count(IEtlFileObserver):
        def __init__(self):
            self.n = 0

        def on_event_record(self, event):
            self.n += 1

        def on_trace_record(self, event):
            self.n += 1

        def on_perfinfo_trace(self, obj):
            self.n += 1

        def on_system_trace(self, obj):
            self.n += 1

        def on_win_trace(self, obj):
            self.n += 1

    with open(path, "rb") as fh:
        data = fh.read()
    counter = Count()
    try:
        build_from_stream(data).parse(counter)
    except Exception:
        pass
    return counter.n


def main():
    tool, path, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fn = {"dissect": run_dissect, "etlparser": run_etlparser}[tool]
    fn(path)  # warm-up: imports, file cache
    best, n = None, 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn(path)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    print(f"{best:.6f} {n}")


if __name__ == "__main__":
    main()
