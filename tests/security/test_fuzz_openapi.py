"""Bad input is never a 500: schemathesis generates requests for every operation of
``/openapi.json`` (schema-conforming and not), sent to a real server with app credentials
and with the admin token; no response may be a 5xx.

Bounded and repeatable: ``FUZZ_EXAMPLES`` examples per operation and credential set,
``derandomize`` (the same requests every run), no example database. The counts are
printed (``-s``) for the record; CI reads them from the assertion message on failure.
"""

from __future__ import annotations

import base64
import os
import time
from collections import Counter
from typing import Any

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from security.served import served

FUZZ_EXAMPLES = int(os.environ.get("ORDERCAST_FUZZ_EXAMPLES", "4"))


def test_openapi_operations_never_answer_5xx(tmp_path: Any) -> None:
    with served(f"sqlite:///{tmp_path}/fuzz.db") as s:
        document = httpx.get(f"{s.http}/openapi.json").json()
        schema = schemathesis.openapi.from_dict(document)
        app_auth = (
            "Basic " + base64.b64encode(f"{s.app['key']}:{s.app['secret']}".encode()).decode()
        )
        credentials = {"app": {"Authorization": app_auth}, "admin": s.admin}
        counts: Counter[str] = Counter()
        failures: list[str] = []
        started = time.monotonic()
        with requests.Session() as session:
            real = {
                "order_id": s.order_id,
                "app_id": s.app["id"],
                "location_id": s.app["location_id"],
            }

            def attack(case: Any, who: str, headers: dict[str, str]) -> None:
                # Now and then the real ids, so requests reach past "not found".
                if case.path_parameters and counts["requests"] % 3 == 0:
                    for name, value in real.items():
                        if name in case.path_parameters:
                            case.path_parameters[name] = value
                response = case.call(base_url=s.http, session=session, headers=headers, timeout=10)
                counts["requests"] += 1
                counts[f"{who} requests"] += 1
                if response.status_code >= 500:
                    counts["server errors"] += 1
                    failures.append(
                        f"{who}: {case.method} {case.formatted_path} -> "
                        f"{response.status_code} {response.text[:200]}"
                    )

            def bound(who: str, headers: dict[str, str]) -> Any:
                def one(case: Any) -> None:
                    attack(case, who, headers)

                return one

            for result in schema.get_all_operations():
                operation = result.ok()
                for who, headers in credentials.items():
                    run = settings(
                        max_examples=FUZZ_EXAMPLES,
                        derandomize=True,
                        database=None,
                        deadline=None,
                        phases=[Phase.explicit, Phase.generate],
                        suppress_health_check=list(HealthCheck),
                    )(given(case=operation.as_strategy())(bound(who, headers)))
                    run()
        elapsed = time.monotonic() - started
        print(f"\nschemathesis: {dict(counts)} in {elapsed:.1f} s")
        assert counts["requests"] > 200, counts
        assert not failures, f"{len(failures)} server errors in {dict(counts)}: {failures[:10]}"
