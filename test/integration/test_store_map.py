"""The shared store's map size (issue 8, item 13): set when the store is
created, grown on purpose by a master configured larger, never shrunk by a
process configured smaller. After a binary upgrade to a larger max_mb, the
old master reaps its drained workers without reopening the store, so
data.mdb keeps the new size and the new workers keep their limits."""

import os
import shutil
import subprocess
import time

from conftest import GWCTL, PORTICO, http, route, stop_pid, write_config

TIERS = {"slow": {"rate": 1, "per_s": 3600, "burst": 3}}
MB = 1 << 20


def data_mdb(tmp):
    return os.path.getsize(os.path.join(tmp, "state", "data.mdb"))


def test_upgrade_to_larger_map_is_not_shrunk_by_old_master(gateway, demo,
                                                           tmp):
    users = demo("users")
    r = route("keyed", "users", prefix="/users")
    r["rate_limit"] = {"by": "header:X-Key", "tier": "slow"}
    services = {"users": {"instances": [users.addr]}}
    state = {"path": os.path.join(tmp, "state"), "max_mb": 8}
    g = gateway(services, [r], workers=2, server={"state": state},
                extra={"tiers": TIERS})
    assert data_mdb(tmp) == 8 * MB
    key = [("X-Key", "held")]
    for _ in range(3):
        assert http(g.port, "GET", "/users/1", headers=key).status == 200
    assert http(g.port, "GET", "/users/1", headers=key).status == 429

    # The new binary's configuration asks for a larger map.
    state["max_mb"] = 24
    write_config(tmp, services, [r], port=g.port, workers=2,
                 server={"state": state}, extra={"tiers": TIERS})
    bin2 = os.path.join(tmp, "portico-copy")
    shutil.copy(PORTICO, bin2)
    sock = os.path.join(tmp, "portico.sock")
    p = subprocess.run([GWCTL, "-s", sock, "upgrade", "--binary", bin2],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    # The old master drains and reaps its workers, then exits.
    g.proc.wait(timeout=15)
    with open(os.path.join(tmp, "portico.pid")) as f:
        new_pid = int(f.read().strip())
    try:
        assert data_mdb(tmp) == 24 * MB, data_mdb(tmp)
        assert "grown from 8 to 24 MB" in g.error_log(), g.error_log()
        # Still limited, and new keys still admitted.
        assert http(g.port, "GET", "/users/1", headers=key).status == 429
        assert http(g.port, "GET", "/users/1",
                    headers=[("X-Key", "fresh")]).status == 200
        # A restart configured smaller keeps the store's size.
        state["max_mb"] = 4
        write_config(tmp, services, [r], port=g.port, workers=2,
                     server={"state": state}, extra={"tiers": TIERS})
        stop_pid(new_pid)
        deadline = time.monotonic() + 10
        while os.path.exists(os.path.join(tmp, "portico.pid")) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        g.start()
        assert data_mdb(tmp) == 24 * MB
        assert http(g.port, "GET", "/users/1", headers=key).status == 429
    finally:
        stop_pid(new_pid)
