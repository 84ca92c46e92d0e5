"""Full sync of a large WeCom corp through the simulator: records/s and API calls against the minimum.

The simulator runs in its own process (``python -m connectors.wecom.simulator``) so it does not share
this process's interpreter lock. Measured:

1. the full rescan into an empty SQLite hub (scan ``batch/get_by_user`` → merge relations → map →
   upsert contacts and accounts → deletion check): records/s and API calls by endpoint;
2. the same rescan again over an unchanged corp (what the periodic rescan costs): rows written must be 0;
3. the group chats stream (``groupchat/list`` + one ``groupchat/get`` per chat).

The minimum number of calls the page sizes allow: 1 ``gettoken`` + 1 ``get_follow_user_list`` + 1
``get_corp_tag_list`` + ⌈relations / 100⌉ ``batch/get_by_user`` (100 relations per page is the API's
maximum; a contact followed by k employees is k relations), and ⌈chats / 1000⌉ + chats for group
chats. The naive approach — ``list`` per employee then ``get`` per contact — is shown for scale.

    python benchmarks/wecom_full_sync.py [--records 100000] [--json]

With ``--json`` the last line is ``{"records": N, "records_per_second": ..., "api_calls": ..., "min_api_calls": ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000, help="external contacts in the simulated corp")
    ap.add_argument("--skip-chats", action="store_true", help="do not sync group chats")
    ap.add_argument("--json", action="store_true", help="print the result as JSON on the last line")
    args = ap.parse_args(argv)
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print

    home = Path(tempfile.mkdtemp(prefix="tongbu-wecom-fullsync-"))
    os.environ["TONGBU_HOME"] = str(home)
    os.environ.pop("TONGBU_DATABASE_URL", None)
    from connectors.wecom.client import WeComClient
    from connectors.wecom.hub import WeComHubWriter
    from connectors.wecom.rescan import rescan_external_contacts
    from connectors.wecom.scan import ScanReport, scan_group_chats
    from tongbu.db import get_engine

    proc = subprocess.Popen(
        [sys.executable, "-m", "connectors.wecom.simulator", "--records", str(args.records)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        base = info["base_url"]
        state = httpx.get(base + "/_sim/state", timeout=30).json()
        relations, chats, contacts = state["follow_pairs"], state["group_chats"], state["contacts"]
        engine = get_engine()
        writer = WeComHubWriter(engine)

        def client() -> WeComClient:
            return WeComClient(info["corp_id"], info["corp_secret"], base_url=base)

        say(f"simulated corp: {contacts:,} contacts, {relations:,} follow relations, {chats:,} group chats")
        c1 = client()
        first = rescan_external_contacts(c1, writer)
        say(
            f"full sync:   {first.contacts_seen:,} contacts in {first.duration_s:.1f}s = "
            f"{first.records_per_second:,.0f} records/s; written {first.written:,}, accounts {first.accounts_written:,}"
        )
        c2 = client()
        second = rescan_external_contacts(c2, writer)
        say(
            f"rescan:      {second.contacts_seen:,} contacts in {second.duration_s:.1f}s = "
            f"{second.records_per_second:,.0f} records/s; written {second.written} (unchanged {second.unchanged:,})"
        )
        chat_result: dict = {}
        if not args.skip_chats:
            c3 = client()
            report = ScanReport("group_chats")
            t0 = time.perf_counter()
            n = sum(1 for _ in scan_group_chats(c3, report))
            took = time.perf_counter() - t0
            chat_calls = sum(v for k, v in c3.calls.items() if k.startswith("externalcontact/groupchat"))
            chat_result = {
                "group_chats": n,
                "group_chats_per_second": round(n / took, 1),
                "group_chat_calls": chat_calls,
                "group_chat_min_calls": -(-chats // 1000) + chats,
            }
            say(
                f"group chats: {n:,} in {took:.1f}s = {n / took:,.0f}/s; calls {chat_calls:,} "
                f"(minimum {chat_result['group_chat_min_calls']:,})"
            )
    finally:
        proc.terminate()
        proc.wait(30)

    calls = sum(first.api_calls.values())
    min_calls = 3 + -(-relations // 100)
    naive = first.follow_users + contacts + 1
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    say(
        f"API calls:   {calls:,} (minimum the page sizes allow: {min_calls:,}; "
        f"list-then-get per contact: {naive:,}); by endpoint {first.api_calls}"
    )
    say(f"peak RSS of the syncing process: {peak_mb:.0f} MB")
    result = {
        "records": first.contacts_seen,
        "relations": relations,
        "records_per_second": round(first.records_per_second, 1),
        "duration_s": round(first.duration_s, 2),
        "rescan_records_per_second": round(second.records_per_second, 1),
        "rescan_written": second.written,
        "api_calls": calls,
        "min_api_calls": min_calls,
        "naive_api_calls": naive,
        "api_calls_by_endpoint": first.api_calls,
        "peak_rss_mb": round(peak_mb, 1),
        **chat_result,
    }
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
