"""The benchmarks' capacity mode (tools/bench/lib.sh): bench_cpu_budget
puts a front's master and its workers into a cgroup of their own with the
asked CPU quota, and bench_cleanup removes it; bench_budget_used reports
the share of the budget a round used and flags one that was not
front-bound. Behaviour only: no timing is checked."""
import os
import subprocess
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def lib(script, timeout=30):
    """Runs SCRIPT in bash after sourcing lib.sh; its stdout."""
    r = subprocess.run(["bash", "-c", ". tools/bench/lib.sh\n" + script],
                       cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_budget_used_is_reported_and_a_short_round_flagged():
    # 250 ticks at 100 Hz over 5 s: 0.50 cores
    assert lib('bench_budget_used 250 100 5 0.5') == \
        ", front used 0.50 of 0.5 cores"
    # 0.40 of 0.5 is under 90%: the round did not measure the front
    assert lib('bench_budget_used 200 100 5 0.5') == \
        ", front used 0.40 of 0.5 cores (NOT front-bound)"
    # no budget: nothing to say
    assert lib('bench_budget_used 200 100 5 ""') == ""


def writable_cgroup():
    v1 = "/sys/fs/cgroup/cpu"
    if os.access(v1, os.W_OK) and os.path.exists(v1 + "/cpu.cfs_quota_us"):
        return True
    try:
        with open("/sys/fs/cgroup/cgroup.controllers") as f:
            return "cpu" in f.read().split() and \
                os.access("/sys/fs/cgroup", os.W_OK)
    except OSError:
        return False


@pytest.mark.skipif(not writable_cgroup(),
                    reason="no writable cgroup cpu controller here")
def test_budget_holds_a_master_and_its_workers_and_is_removed():
    # A "master" (sleep in a subshell) with two "workers"; bench_cpu_budget
    # must move all three; bench_cleanup stops them and removes the group.
    out = lib(textwrap.dedent('''
        bench_setup
        bash -c 'trap "kill \\$(jobs -p); exit" TERM; sleep 30 & sleep 30 & wait' &
        master=$!
        bench_track "$master"
        for i in $(seq 50); do
            [ "$(bench_children "$master" | wc -l)" = 2 ] && break
            sleep 0.1
        done
        bench_cpu_budget "$master" test 0.25 || { echo NOBUDGET; exit 0; }
        dir=${BENCH_CGROUPS[0]}
        echo "dir $dir"
        if [ -e "$dir/cpu.cfs_quota_us" ]; then
            echo "quota $(cat "$dir/cpu.cfs_quota_us") $(cat "$dir/cpu.cfs_period_us")"
        else
            echo "quota $(cat "$dir/cpu.max")"
        fi
        echo "procs $(sort -n "$dir/cgroup.procs" | tr '\\n' ' ')"
        echo "want $(printf '%s\\n' "$master" $(bench_children "$master") | sort -n | tr '\\n' ' ')"
        bench_cleanup
        [ -d "$dir" ] && echo "left" || echo "removed"
    '''))
    assert "NOBUDGET" not in out, out
    lines = dict(l.split(" ", 1) for l in out.strip().splitlines()
                 if " " in l)
    assert "portico-bench-" in lines["dir"]
    assert lines["quota"] == "25000 100000"
    assert lines["procs"].split() == lines["want"].split()
    assert len(lines["want"].split()) == 3
    assert out.strip().endswith("removed"), out
