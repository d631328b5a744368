#!/usr/bin/env python3
"""Build and query rates of posthorn's postmap beside Postfix's, on the same data.

Usage (from the workspace root, after `cargo build --release -p posthorn-postmap`):

    python3 crates/postmap/bench/compare.py [--keys 1000000] [--runs 3]

Each tool gets its own temp directory (both write FILE.db) and a config directory with an
empty main.cf (both insist on one). Measured, best and median of --runs:
  build    `postmap FILE` from a FILE of --keys lines `userN@exampleM.org mailbox/N/`
  query    `postmap -q - FILE` with every key, in random order, on stdin (one process)
  single   one `postmap -q KEY FILE` process (start-up + open + one lookup), mean of 50
  list     `postmap -s FILE` to /dev/null
  add      `postmap -i FILE` with 1,000 new entries on stdin (Postfix edits the file in
           place; posthorn rebuilds it from the old .db plus the new entries)
  delete   `postmap -d KEY FILE`
Prints a Markdown table. Nothing outside the temp directories is touched.
"""

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def timed(cmd, stdin_path=None, expect_lines=None):
    """Runs cmd; returns elapsed seconds. Checks exit status 0 and the output line count."""
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if stdin_path:
        stdin.close()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.decode()[:500]}")
    if expect_lines is not None:
        got = proc.stdout.count(b"\n")
        if got != expect_lines:
            sys.exit(f"{' '.join(cmd)}: {got} output lines, expected {expect_lines}")
    return elapsed


def best_median(samples):
    return min(samples), statistics.median(samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--posthorn", default=os.path.join(ROOT, "target/release/postmap"))
    ap.add_argument("--postfix", default="/usr/sbin/postmap")
    args = ap.parse_args()
    n = args.keys
    tools = [("posthorn", args.posthorn), ("Postfix", args.postfix)]
    for name, path in tools:
        if not os.access(path, os.X_OK):
            sys.exit(f"{name} postmap not found at {path}")

    work = tempfile.mkdtemp(prefix="postmap-bench.")
    try:
        conf = os.path.join(work, "conf")
        os.mkdir(conf)
        open(os.path.join(conf, "main.cf"), "w").close()
        source = os.path.join(work, "source")
        with open(source, "w") as f:
            for i in range(n):
                f.write(f"user{i}@example{i % 97}.org mailbox/{i}/\n")
        keys = [f"user{i}@example{i % 97}.org" for i in range(n)]
        random.Random(1).shuffle(keys)
        keyfile = os.path.join(work, "keys")
        with open(keyfile, "w") as f:
            f.write("\n".join(keys) + "\n")
        adds = os.path.join(work, "adds")
        with open(adds, "w") as f:
            for i in range(1000):
                f.write(f"new{i}@example.net added/{i}/\n")

        results = {}
        for name, binary in tools:
            d = os.path.join(work, name)
            os.mkdir(d)
            table = os.path.join(d, "big")
            shutil.copy(source, table)
            pm = [binary, "-c", conf]
            r = {}
            r["build"] = best_median([timed(pm + [table]) for _ in range(args.runs)])
            r["size"] = os.path.getsize(table + ".db")
            r["query"] = best_median(
                [timed(pm + ["-q", "-", table], keyfile, n) for _ in range(args.runs)]
            )
            single = [timed(pm + ["-q", keys[i], table], None, 1) for i in range(50)]
            r["single"] = (min(single), statistics.mean(single))
            r["list"] = best_median(
                [timed(pm + ["-s", table], None, n) for _ in range(args.runs)]
            )
            add_times, delete_times = [], []
            for _ in range(args.runs):
                add_times.append(timed(pm + ["-i", "-r", table], adds))
                delete_times.append(timed(pm + ["-d", "new0@example.net", table]))
            r["add"] = best_median(add_times)
            r["delete"] = best_median(delete_times)
            results[name] = r

        print(f"{n:,} keys, best / median of {args.runs} runs (single: best / mean of 50)\n")
        print("| step | " + " | ".join(name for name, _ in tools) + " |")
        print("|---|" + "---|" * len(tools))

        def rate(step):
            cells = []
            for name, _ in tools:
                best, med = results[name][step]
                cells.append(f"{best:.2f} s / {med:.2f} s ({n / best / 1e3:,.0f} k keys/s)")
            return cells

        print("| build | " + " | ".join(rate("build")) + " |")
        print("| query all (`-q -`) | " + " | ".join(rate("query")) + " |")
        print("| list (`-s`) | " + " | ".join(rate("list")) + " |")
        for step, label in [("single", "one `-q key` process"), ("add", "`-i` 1,000 entries"),
                            ("delete", "`-d` one key")]:
            cells = [f"{results[name][step][0] * 1e3:.1f} ms / {results[name][step][1] * 1e3:.1f} ms"
                     for name, _ in tools]
            print(f"| {label} | " + " | ".join(cells) + " |")
        print("| .db size | " + " | ".join(f"{results[name]['size'] / 2**20:.1f} MiB"
                                          for name, _ in tools) + " |")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
