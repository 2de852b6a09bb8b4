#!/usr/bin/python3
"""Benchmark helpers for tools/bench.sh (Debian python3, stdlib only).

  benchlib.py wrk FILE
      parse one wrk --latency output; print "rps p50_us p99_us requests errors non2xx"
  benchlib.py report RAW TXT JSON [--pair A/B ...] [--ref nginx]
      RAW holds one JSON object per measured run; print the per-scenario
      tables (medians over rounds, ratios taken within each round, then the
      median of those) to stdout and TXT, and the same figures to JSON.
"""
import json
import re
import statistics
import sys

UNITS = {"us": 1.0, "ms": 1000.0, "s": 1e6, "m": 60e6, "h": 3600e6}


def to_us(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_wrk(text):
    out = {"rps": 0.0, "p50_us": float("nan"), "p99_us": float("nan"),
           "requests": 0, "errors": 0, "non2xx": 0}
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    if m:
        out["rps"] = float(m.group(1))
    m = re.search(r"^\s*50(?:\.000)?%\s+(\S+)", text, re.M)
    if m:
        out["p50_us"] = to_us(m.group(1))
    m = re.search(r"^\s*99(?:\.000)?%\s+(\S+)", text, re.M)
    if m:
        out["p99_us"] = to_us(m.group(1))
    m = re.search(r"^\s*(\d+) requests in", text, re.M)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["errors"] = sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    return out


def cmd_wrk(path):
    with open(path) as f:
        r = parse_wrk(f.read())
    print("%.2f %.1f %.1f %d %d %d" % (r["rps"], r["p50_us"], r["p99_us"],
                                       r["requests"], r["errors"], r["non2xx"]))


def med(xs):
    xs = [x for x in xs if x == x]  # drop NaN
    return statistics.median(xs) if xs else float("nan")


def fmt_lat(us):
    if us != us:
        return "-"
    if us >= 1000:
        return "%.2fms" % (us / 1000)
    return "%.0fus" % us


def fmt_ratio(x):
    return "-" if x != x else "%.2fx" % x


def ratio_within_rounds(runs, a, b, key):
    """Median over rounds of a/b, each ratio taken inside one round."""
    ra = {r["round"]: r[key] for r in runs if r["proxy"] == a}
    rb = {r["round"]: r[key] for r in runs if r["proxy"] == b}
    vals = [ra[k] / rb[k] for k in ra if k in rb and rb[k] and ra[k] == ra[k] and rb[k] == rb[k]]
    return med(vals)


def cmd_report(raw, txt, js, pairs, ref):
    runs = []
    with open(raw) as f:
        for line in f:
            line = line.strip()
            if line:
                runs.append(json.loads(line))
    for r in runs:
        # CPU per request in microseconds; NaN when the proxy did nothing
        r["cpu_us"] = (r["cpu_ticks"] * 1e6 / r["hz"] / r["requests"]) if r["requests"] else float("nan")
    scenarios = []
    for r in runs:
        if r["scenario"] not in scenarios:
            scenarios.append(r["scenario"])
    lines = []
    result = {"scenarios": {}}
    for sc in scenarios:
        sr = [r for r in runs if r["scenario"] == sc]
        proxies = []
        for r in sr:
            if r["proxy"] not in proxies:
                proxies.append(r["proxy"])
        nrounds = len({r["round"] for r in sr})
        desc = sr[0].get("desc", "")
        lines.append("")
        lines.append("== %s: %s (%d rounds)" % (sc, desc, nrounds))
        hdr = "%-20s %10s %9s %9s %10s %9s %9s %7s" % (
            "proxy", "req/s", "p50", "p99", "cpu us/req", "req/s:" + ref, "cpu:" + ref, "errors")
        lines.append(hdr)
        lines.append("-" * len(hdr))
        scres = {"desc": desc, "rounds": nrounds, "proxies": {}, "pairs": {}}
        for p in proxies:
            pr = [r for r in sr if r["proxy"] == p]
            row = {
                "rps": med([r["rps"] for r in pr]),
                "p50_us": med([r["p50_us"] for r in pr]),
                "p99_us": med([r["p99_us"] for r in pr]),
                "cpu_us_per_req": med([r["cpu_us"] for r in pr]),
                "errors": sum(r["errors"] + r["non2xx"] for r in pr),
                "rps_ratio_" + ref: ratio_within_rounds(sr, p, ref, "rps"),
                "cpu_ratio_" + ref: ratio_within_rounds(sr, p, ref, "cpu_us"),
                "runs": [{k: r[k] for k in ("round", "rps", "p50_us", "p99_us", "requests",
                                            "cpu_us", "errors", "non2xx")} for r in pr],
            }
            scres["proxies"][p] = row
            lines.append("%-20s %10.0f %9s %9s %10.1f %9s %9s %7d" % (
                p, row["rps"], fmt_lat(row["p50_us"]), fmt_lat(row["p99_us"]),
                row["cpu_us_per_req"], fmt_ratio(row["rps_ratio_" + ref]),
                fmt_ratio(row["cpu_ratio_" + ref]), row["errors"]))
        # store write transactions per request, where a portico reported them
        for p in proxies:
            wr = [r["store_writes"] / r["requests"] for r in sr
                  if r["proxy"] == p and r.get("store_writes") is not None and r["requests"]]
            if wr:
                scres["proxies"][p]["store_writes_per_req"] = med(wr)
                lines.append("%-20s store write txns/request %.4f" % (p, med(wr)))
        for pair in pairs:
            a, b = pair.split("/", 1)
            if a in proxies and b in proxies:
                rr = ratio_within_rounds(sr, a, b, "rps")
                cr = ratio_within_rounds(sr, a, b, "cpu_us")
                pr99 = ratio_within_rounds(sr, a, b, "p99_us")
                scres["pairs"][pair] = {"rps": rr, "cpu_us_per_req": cr, "p99": pr99}
                lines.append("%-20s req/s %s   cpu/req %s   p99 %s" % (
                    pair, fmt_ratio(rr), fmt_ratio(cr), fmt_ratio(pr99)))
        result["scenarios"][sc] = scres
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    with open(txt, "a") as f:
        f.write(text)
    # NaN is not JSON; write null instead
    def clean(o):
        if isinstance(o, float) and o != o:
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o
    try:
        with open(js) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        meta = {}
    meta.update(clean(result))
    with open(js, "w") as f:
        json.dump(meta, f, indent=1, sort_keys=False)
        f.write("\n")


def main(argv):
    if len(argv) >= 3 and argv[1] == "wrk":
        cmd_wrk(argv[2])
        return 0
    if len(argv) >= 5 and argv[1] == "report":
        pairs, ref = [], "nginx"
        rest = argv[5:]
        i = 0
        while i < len(rest):
            if rest[i] == "--pair" and i + 1 < len(rest):
                pairs.append(rest[i + 1])
                i += 2
            elif rest[i] == "--ref" and i + 1 < len(rest):
                ref = rest[i + 1]
                i += 2
            else:
                sys.stderr.write("benchlib: unknown argument %s\n" % rest[i])
                return 2
        cmd_report(argv[2], argv[3], argv[4], pairs, ref)
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
