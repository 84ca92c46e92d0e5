"""Vault costs: bulk write, read, verify and master-key rotation at a given number of secrets.

Setup: a fresh hub database (SQLite in a temp folder, or ``--database-url``), a random master key,
``--secrets`` secrets across four tenants written in one ``set_many`` call. Then measured:
one ``get`` (cold and warm), ``get_many`` of everything, ``verify``, and ``rotate`` to a new key with
``--batch-size`` secrets per transaction. Every secret is checked to decrypt under the new key and
the old key to be refused.

    python benchmarks/vault_rotation.py [--secrets 1000] [--batch-size 100] [--database-url URL] [--json]

With ``--json`` the last line is ``{"secrets": N, "set_many_s": ..., "rotate_s": ..., ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="vault-bench-"))
    os.environ.setdefault("TONGBU_HOME", str(tmp))
    url = args.database_url or f"sqlite:///{tmp / 'hub.db'}"

    from tests.helpers.vault import new_key_source
    from tongbu.vault import MasterKeyRetiredError, Vault, rotate

    old, new = new_key_source(), new_key_source()
    vault = Vault.initialize(url, key_source=old, actor="benchmark")
    by_tenant: dict[str, dict[str, str]] = {}
    for i in range(args.secrets):
        by_tenant.setdefault(f"t{i % 4}", {})[f"conn{i // 20}.field{i % 20}"] = (
            f"value-{i}-{os.urandom(8).hex()}"
        )
    results: dict[str, float | int] = {"secrets": args.secrets, "batch_size": args.batch_size}

    t = time.perf_counter()
    for tenant, items in by_tenant.items():
        vault.set_many(items, tenant=tenant)
    results["set_many_s"] = round(time.perf_counter() - t, 3)

    reader = Vault(url, key_source=old)
    tenant, items = next(iter(by_tenant.items()))
    name = next(iter(items))
    t = time.perf_counter()
    reader.get(name, tenant=tenant)
    results["get_cold_ms"] = round((time.perf_counter() - t) * 1000, 2)
    t = time.perf_counter()
    reader.get(name, tenant=tenant)
    results["get_warm_ms"] = round((time.perf_counter() - t) * 1000, 2)

    t = time.perf_counter()
    for tenant, items in by_tenant.items():
        reader.get_many(list(items), tenant=tenant)
    results["get_all_s"] = round(time.perf_counter() - t, 3)

    t = time.perf_counter()
    report = reader.verify()
    results["verify_s"] = round(time.perf_counter() - t, 3)
    assert report.ok, report.problems

    t = time.perf_counter()
    status = rotate(vault, new, batch_size=args.batch_size)
    results["rotate_s"] = round(time.perf_counter() - t, 3)
    results["rotate_per_secret_ms"] = round(results["rotate_s"] * 1000 / max(args.secrets, 1), 3)
    assert status.status == "done"

    after = Vault(url, key_source=new)
    for tenant, items in by_tenant.items():
        got = after.get_many(list(items), tenant=tenant)
        assert all(got[k].get_secret_value() == v for k, v in items.items())
    try:
        Vault(url, key_source=old).get(name, tenant=tenant)
    except MasterKeyRetiredError:
        results["old_key_refused"] = 1
    else:  # pragma: no cover - would be a bug
        raise SystemExit("the old master key still opens the vault")

    if args.json:
        print(json.dumps(results))
    else:
        for key, value in results.items():
            print(f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
