"""The honest held-out mapping pairs and the tools that keep them honest.

* every held-out field name is neither a glossary entry nor a dev-pair field name (check_heldout.py),
  and the checker does catch such names;
* the committed pair files are exactly what build_heldout.py makes from the specs;
* ``Glossary.without`` (leave-one-system-out without the system's glossary entries) and the sibling
  context of stage 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mappings.suggest.glossary import default_glossary, surface_forms
from mappings.suggest.model import CONTEXT_NAMES, context_features, table_groups

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
sys.path.insert(0, str(DATA))

import build_heldout  # noqa: E402
import check_heldout  # noqa: E402

SPLITS = [DATA / "heldout_pairs", DATA / "heldout_final"]
needs_dev = pytest.mark.skipif(not check_heldout.DEV_PAIRS.is_dir(), reason="shared mapping-bench not found")


@needs_dev
def test_heldout_names_are_neither_glossary_entries_nor_dev_names() -> None:
    assert all(any(f.glob("hx_*.json")) for f in SPLITS)
    assert check_heldout.violations(SPLITS) == []


@needs_dev
def test_checker_flags_glossary_entries_and_dev_names(tmp_path: Path) -> None:
    gloss = check_heldout.glossary_forms()
    dev = check_heldout.dev_forms()
    assert "unified social credit code" in gloss and "fnumber" in dev
    pair = json.loads(next(SPLITS[0].glob("hx_*.json")).read_text(encoding="utf-8"))
    extra = [
        {"name": "Unified_Social_Credit_Code", "type": "string", "label": None, "samples": []},  # glossary
        {"name": "F_Number", "type": "string", "label": None, "samples": []},  # dev name FNumber
        {"name": "billing.City", "type": "string", "label": None, "samples": []},  # dev BillingCity
        {"name": "zq_frobnicate_level9", "type": "string", "label": None, "samples": []},  # clean
    ]
    pair["source"]["fields"] += extra
    (tmp_path / "p.json").write_text(json.dumps(pair, ensure_ascii=False), encoding="utf-8")
    bad = check_heldout.violations([tmp_path], gloss, dev)
    assert any("Unified_Social_Credit_Code" in b and "glossary entry" in b for b in bad)
    assert any("'F_Number'" in b and "dev-pair" in b for b in bad)
    assert any("'billing.City'" in b for b in bad)
    assert not any("zq_frobnicate" in b for b in bad)
    proc = subprocess.run(
        [sys.executable, str(DATA / "check_heldout.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1 and "Unified_Social_Credit_Code" in proc.stdout


@needs_dev
def test_committed_pairs_are_what_the_builder_makes() -> None:
    built = build_heldout.build_all()
    assert len(built) == len(list(DATA.glob("heldout_*/hx_*.json")))
    for path, text, pair, _dropped in built:
        assert path.read_text(encoding="utf-8") == text, f"{path.name} differs from its spec: rebuild"
        gt = pair["ground_truth"]
        assert len({s for s, _ in gt}) == len(gt) == len({t for _, t in gt})  # 1:1
        n_src = len(pair["source"]["fields"])
        assert 0.15 <= 1 - len(gt) / n_src <= 0.5  # fields with no counterpart on the source side


@needs_dev
def test_heldout_pairs_pass_the_shared_validator() -> None:
    for folder in SPLITS:
        proc = subprocess.run(
            [sys.executable, str(check_heldout.DEV_PAIRS.parent / "validate.py"), str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout


def test_glossary_without_forgets_only_the_given_entries() -> None:
    g = default_glossary()
    assert g.terms_from_words(["unified", "social", "credit", "code"]) == ["uscc"]
    h = g.without(surface_forms("unified_social_credit_code") | surface_forms("name"))
    assert h.terms_from_words(["unified", "social", "credit", "code"]) != ["uscc"]
    # 'name' is a term id: once its forms are removed the word reads as an unknown word, not as the term
    assert h.terms_from_words(["name"]) == ["~name"] and h.kinds("~name") == frozenset()
    assert h.terms_from_words(["customer"]) == ["customer"]  # the rest reads as before
    assert g.terms_from_words(["unified", "social", "credit", "code"]) == ["uscc"]  # original untouched
    assert g.terms_from_words(["name"]) == ["name"]


def test_table_groups_are_path_parents_or_shared_prefixes() -> None:
    assert table_groups(["billing.city", "billing.street", "shipping.city", "total"]) == [
        "billing",
        "billing",
        None,
        None,
    ]
    assert table_groups(["shipto_city", "shipto_line1", "billto_city", "billto_line1", "name"]) == [
        "shipto",
        "shipto",
        "billto",
        "billto",
        None,
    ]
    # a prefix on most fields is a vendor prefix, not a group
    assert table_groups(["hs_a", "hs_b", "hs_c", "hs_d", "name"]) == [None] * 5


def test_sibling_context_prefers_the_group_the_siblings_chose() -> None:
    src = ["billing.street", "billing.city", "shipping.street", "shipping.city"]
    tgt = ["shipto_line1", "shipto_city", "billto_line1", "billto_city"]
    p1 = np.full((4, 4), 0.05)
    p1[0, 2] = 0.9  # billing.street → billto_line1 is clear
    p1[2, 0] = 0.9  # shipping.street → shipto_line1 is clear
    p1[1, 1] = p1[1, 3] = 0.5  # the cities are ambiguous by themselves
    p1[3, 1] = p1[3, 3] = 0.5
    ctx = context_features(p1, table_groups(src), table_groups(tgt))
    k = CONTEXT_NAMES.index("group_support")
    lead = CONTEXT_NAMES.index("group_lead")
    assert ctx[1, 3, k] > ctx[1, 1, k] and ctx[1, 3, lead] > 0 > ctx[1, 1, lead]  # billing.city → billto_city
    assert ctx[3, 1, k] > ctx[3, 3, k]  # shipping.city → shipto_city
    assert ctx[1, 3, CONTEXT_NAMES.index("has_groups")] == 1.0
    # without group information the columns stay zero (and the shapes agree)
    bare = context_features(p1)
    assert bare.shape == ctx.shape and not bare[..., k].any()


def test_in_process_metrics_count_false_accepts_like_the_scorer() -> None:
    from mappings.suggest.engine import Candidate, MappingLine, Suggestion, SuggestResult
    from mappings.suggest.profiles import FieldProfile, TableProfile
    from mappings.suggest.training import PairData, score_results

    src = TableProfile("s", "o", [FieldProfile(n, "string") for n in ("a", "b", "c", "d")])
    tgt = TableProfile("t", "o", [FieldProfile(n, "string") for n in ("x", "y", "z")])
    pair = PairData("p", "crm_to_crm", {}, src, tgt, [("a", "x")], np.zeros((4, 3, 1)), np.zeros((4, 3)))
    res = SuggestResult(
        [Suggestion(s, [Candidate(t, 0.9, 0.9, "")]) for s, t in (("a", "x"), ("b", "y"), ("c", "z"))],
        [MappingLine("a", "x", 0.9, ""), MappingLine("b", "y", 0.9, "")],
        0.8,
    )
    out = score_results([pair], [res])
    assert out["false_accept_rate"] == 1 / 3  # b accepted without a counterpart; b, c, d are unmatched
    assert out["micro"]["precision"] == 0.5
