"""``tongbu iot demo``: a fault becomes one case and one WeCom alert, with nothing but tongbu running."""

from __future__ import annotations

from tongbu.demo_iot import run_iot_demo


def test_the_iot_demo_shows_a_fault_becoming_a_case_and_an_alert() -> None:
    lines: list[str] = []
    result = run_iot_demo(6, out=lines.append)
    assert result["account"] == "DEMO-C1" and result["occurrences"] == 3 and result["closed"] == 1
    assert len(result["touser"]) == 1
    assert any("WeCom app message" in line for line in lines)
