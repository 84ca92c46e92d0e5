"""Property tests for mapping-file loading: any text yields mappings or ``MappingSpecError``, fast."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.spec import MAX_MAPPING_NODES, MappingSpecError, parse_mappings
from tests.fuzz.conftest import examples

LIBRARY = sorted((Path(__file__).resolve().parents[2] / "mappings" / "library").glob("*.yaml"))
SAMPLE = LIBRARY[0].read_text(encoding="utf-8") if LIBRARY else "name: x\n"
LINES = SAMPLE.splitlines()

YAMLISH = st.lists(
    st.sampled_from(
        [
            "a: &a [x, x, x, x, x, x, x, x, x]",
            "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]",
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]",
            "d: [*c, *c, *c, *c, *c, *c, *c, *c, *c]",
            "e: &e {k: *e}",
            "<<: *a",
            "---",
            "mappings:",
            "  - name: m",
            "    fields:",
            "name: m",
            "source: {stream: s}",
            "target: {object: contacts}",
            "fields:",
            "  x: {from: y, transform: [int]}",
            "!!python/object/apply:os.system ['true']",
            "[" * 50,
            "]" * 50,
            "- " * 40,
            "key: 'unterminated",
            "\t- tab",
            "? complex\n: key",
            "%YAML 1.2",
            "&x",
            "*undefined",
        ]
        + LINES
    ),
    max_size=40,
).map("\n".join)


@given(st.one_of(st.text(max_size=2000), YAMLISH))
def test_any_text_loads_or_raises_a_mapping_spec_error(text: str) -> None:
    try:
        specs = parse_mappings(text, "fuzz.yaml")
    except MappingSpecError as exc:
        assert str(exc)
        return
    assert isinstance(specs, list)


@given(st.integers(0, len(LINES)), st.sampled_from(["", "  ", "&a ", "*a", ": ", "- ", "{", "'", "0x", "~"]))
@settings(max_examples=examples(0.2))
def test_edits_of_a_library_mapping_load_or_raise_a_mapping_spec_error(line: int, edit: str) -> None:
    lines = list(LINES)
    lines.insert(line, edit + (lines[line] if line < len(lines) else ""))
    with contextlib.suppress(MappingSpecError):
        parse_mappings("\n".join(lines), "edited.yaml")


@given(st.integers(2, 40), st.integers(2, 12))
@settings(max_examples=examples(0.02))
def test_alias_bombs_are_refused_by_their_expanded_size(levels: int, fan: int) -> None:
    lines = [f"l0: &l0 [{', '.join(['x'] * fan)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fan)}]" for i in range(1, levels)]
    expanded = sum(fan**i for i in range(1, levels + 1))
    try:
        parse_mappings("\n".join(lines), "bomb.yaml")
    except MappingSpecError as exc:
        if expanded > MAX_MAPPING_NODES:
            assert "expand" in str(exc)
    else:
        assert expanded <= MAX_MAPPING_NODES


def test_a_585_character_alias_bomb_in_a_valid_mapping_is_refused() -> None:
    # Six nested anchors under null_if's values expand to a million strings: the old loader built
    # and validated them all (10 s here), the bounded one refuses the file before constructing it.
    seq = "&l0 ['', '', '', '', '', '', '', '', '', '']"
    for i in range(1, 7):
        seq = f"&l{i} [{seq}, " + ", ".join([f"*l{i - 1}"] * 9) + "]"
    text = (
        "version: 1\nname: bomb\nsource: {system: kingdee, stream: customers}\ntarget: {object: accounts}\n"
        "fields:\n  - {target: source_id, source: FCUSTID, transform: [str]}\n"
        "  - {target: number, source: FNumber, transform: [{null_if: {values: " + seq + "}}]}\n"
    )
    import pytest

    with pytest.raises(MappingSpecError, match="expand to more than"):
        parse_mappings(text, "bomb.yaml")
