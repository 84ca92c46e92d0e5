"""The mapping suggester: names, glossary, value profiles, model, assignment, calibration, learning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mappings.suggest.assign import assign, hungarian
from mappings.suggest.engine import Decision, Suggester
from mappings.suggest.features import FEATURE_NAMES, FieldViewer
from mappings.suggest.glossary import default_glossary
from mappings.suggest.model import Isotonic, MappingModel, TreeEnsemble, context_features, default_model
from mappings.suggest.profiles import (
    FieldProfile,
    ProfileError,
    TableProfile,
    load_profile,
    parse_profile,
    profile_from_records,
    profile_from_schema,
)
from mappings.suggest.text import (
    NamingConventions,
    WordSplitter,
    detect_conventions,
    parse_name,
    pinyin_forms,
)
from mappings.suggest.training import (
    PairData,
    accept_threshold,
    augment,
    choose_threshold,
    ece,
    fit_isotonic,
    inner_folds_of,
    refit_overlay,
)
from mappings.suggest.transforms import suggest_transform
from mappings.suggest.values import classify, profile_values

BENCH = Path(__file__).resolve().parents[2] / "shared" / "mapping-bench" / "pairs"


def table(system: str, obj: str, *fields: tuple) -> TableProfile:
    return TableProfile(system, obj, [FieldProfile(n, t, lab, list(s)) for n, t, lab, s in fields])


@pytest.fixture(scope="module")
def suggester() -> Suggester:
    return Suggester()


# ----------------------------------------------------------------------------- names and glossary


def terms(name: str, conv: NamingConventions | None = None) -> list[str]:
    g = default_glossary()
    parts = parse_name(name, conv or NamingConventions(), WordSplitter(g.vocab))
    return g.terms_from_words(parts.leaf)


@pytest.mark.parametrize(
    "name,conv,expected",
    [
        ("customer_name", None, ["customer", "name"]),
        ("customerName", None, ["customer", "name"]),
        ("CustomerName", None, ["customer", "name"]),
        ("customer-name", None, ["customer", "name"]),
        ("customername", None, ["customer", "name"]),
        ("FCUSTNAME", NamingConventions(kingdee=True), ["customer", "name"]),
        ("F_ABCD_Email", NamingConventions(kingdee=True), ["email"]),
        ("cCusName", NamingConventions(hungarian=True), ["customer", "name"]),
        ("iCusCreLine", NamingConventions(hungarian=True), ["credit_limit"]),
        (
            "cCCCode",
            NamingConventions(hungarian=True),
            ["customer", "category", "code"],
        ),  # all-caps code after the prefix
        ("cDCCode", NamingConventions(hungarian=True), ["region", "code"]),
        ("KUNNR", None, ["customer", "number"]),
        ("unified_social_credit_code", None, ["uscc"]),
        ("NumberOfEmployees", None, ["employee_count"]),
        ("created_at", None, ["create", "time"]),
        ("OriginalOrderId", None, ["original", "order", "id"]),  # not origin + al
        ("completedAt", None, ["completed", "time"]),  # not complete + d
        ("add_time", None, ["create", "time"]),  # a leading "add" is the verb
        ("ship_to_add", None, ["shipping"]),  # a closing "add" abbreviates address
        ("email_add", None, ["email"]),  # = email address
        ("FReceiveAddress", NamingConventions(kingdee=True), ["shipping"]),
        ("add_way", None, ["source"]),  # WeCom's 添加方式: how the contact came in
    ],
)
def test_name_styles_normalise_to_the_same_terms(
    name: str, conv: NamingConventions | None, expected: list[str]
) -> None:
    assert terms(name, conv) == expected


def test_the_splitter_keeps_inflected_known_words_whole() -> None:
    splitter = WordSplitter(default_glossary().vocab)
    assert splitter.split("reports") == ("reports",)  # not rep + or + ts
    assert splitter.split("orderitems") == ("order", "items")


def test_chinese_and_pinyin_initials_reach_the_same_terms() -> None:
    g = default_glossary()
    assert g.terms_from_chinese("客户名称") == ["customer", "name"]
    assert g.terms_from_chinese("统一社会信用代码") == ["uscc"]
    assert pinyin_forms("所属行业")[0] == "sshy"  # 行 read as hang in 行业
    viewer = FieldViewer(g)
    assert viewer.parse_initials("khmc") == ["customer", "name"]
    assert "khmc" in g.render(["customer", "name"])


def test_conventions_are_detected_per_table() -> None:
    assert detect_conventions(["FNumber", "FName", "FCUSTID", "F_PAEZ_Email"]).kingdee
    assert detect_conventions(["cCusCode", "cCusName", "iCusCreLine", "dCusDevDate"]).hungarian
    assert not detect_conventions(["name", "email", "Fax"]).kingdee


# ----------------------------------------------------------------------------- value profiles


@pytest.mark.parametrize(
    "value,kind",
    [
        ("13812345678", "mobile"),
        ("+8613812345678", "mobile"),
        ("010-12345678", "landline"),
        ("0571-86925873", "landline"),
        ("a.b@example.com", "email"),
        ("91350100M000100Y43", "uscc"),
        ("2024-03-05", "date"),
        ("2024-03-05T10:20:30.123", "datetime"),
        ("2023年11月08日 09:30", "datetime"),
        (1700000000, "epoch_s"),
        (1700000000000, "epoch_ms"),
        ("/Date(1671148800000)/", "epoch_ms"),
        ("300万元", "amount_wan"),
        ("1234.50", "money"),
        ("www.example.com.cn", "url"),
        ("辽宁联创仪器仪表有限公司", "company_name"),
        ("交通银行沈阳开发区支行", "bank_name"),
        ("王磊", "person_name"),
        ("e6c52d56-2251-11ef-574e-c15b73d0c44f", "uuid"),
    ],
)
def test_value_kinds(value: object, kind: str) -> None:
    assert classify(value) == kind


def test_uscc_needs_a_valid_check_digit() -> None:
    assert classify("91350100M000100Y43") == "uscc"
    assert classify("91350100M000100Y44") != "uscc"


def test_profiles_see_through_lookups_and_find_enums_and_date_formats() -> None:
    prof = profile_values([{"FNumber": "XSY008"}, {"FNumber": "XSY014"}])
    assert prof.top_kind() == "code"
    enum = profile_values([0, 1, 2])
    assert enum.kinds.get("enum", 0) >= 0.5
    dates = profile_values(["2024-01-02 10:00:00", "2024-02-03 11:00:00"])
    assert dates.date_formats == ("%Y-%m-%d %H:%M:%S",)


# ----------------------------------------------------------------------------- profile files


def write(tmp_path: Path, name: str, content: str) -> Path:
    p = tmp_path / name
    p.write_text(content, encoding="utf-8")
    return p


@pytest.mark.parametrize(
    "content,fragment",
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"system": "x", "object": "y"}', "missing the 'fields' list"),
        ('{"fields": {"a": 1}}', "'fields' must be a list"),
        ('{"fields": [{"type": "string"}]}', "'name' must be a non-empty string"),
        ('{"fields": [{"name": "a", "type": "text"}]}', "type 'text' is not one of"),
        ('{"fields": [{"name": "a"}, {"name": "a"}]}', "appears twice"),
        ('{"fields": [{"name": "a", "samples": "x"}]}', "'samples' must be a list"),
        ('{"fields": [{"name": "a", "label": 3}]}', "'label' must be a string or null"),
    ],
)
def test_malformed_profiles_get_a_clear_error_naming_the_file(
    tmp_path: Path, content: str, fragment: str
) -> None:
    path = write(tmp_path, "bad.json", content)
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    assert str(path) in str(exc.value)
    assert fragment in str(exc.value)


def test_missing_profile_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="file not found"):
        load_profile(tmp_path / "nope.json")


def test_profile_from_records_flattens_and_keeps_distinct_samples() -> None:
    records = [
        {
            "id": 1,
            "name": "甲",
            "owner": {"userid": "u1", "name": "A"},
            "ref": {"FNumber": "X1"},
            "empty": "",
        },
        {
            "id": 2,
            "name": "甲",
            "owner": {"userid": "u2", "name": "B"},
            "ref": {"FNumber": "X2"},
            "empty": None,
        },
    ]
    prof = profile_from_records(records, system="wecom", object="contacts")
    by = {f.name: f for f in prof.fields}
    assert set(by) == {"id", "name", "owner.userid", "owner.name", "ref", "empty"}
    assert by["name"].samples == ["甲"]
    assert by["ref"].type == "object" and by["ref"].samples == [{"FNumber": "X1"}, {"FNumber": "X2"}]
    assert by["empty"].samples == []
    assert by["id"].type == "integer"


def test_profile_from_schema_takes_types_labels_and_enums() -> None:
    prof = profile_from_schema(
        {
            "properties": {
                "name": {"type": "string", "title": "客户名称"},
                "created": {"type": ["null", "string"], "format": "date-time"},
                "gender": {"type": "string", "enum": ["male", "female", None]},
            }
        },
        object="accounts",
    )
    by = {f.name: f for f in prof.fields}
    assert by["name"].label == "客户名称"
    assert by["created"].type == "datetime"
    assert by["gender"].samples == ["male", "female"]
    with pytest.raises(ProfileError, match="properties"):
        profile_from_schema({"type": "object"})


# ----------------------------------------------------------------------------- suggestions

SRC = table(
    "kingdee",
    "BD_Customer",
    ("FName", "string", "客户名称", ["辽宁联创仪器仪表有限公司", "南京联创化工有限公司"]),
    ("FSOCIALCRECODE", "string", None, ["91350100M000100Y43"]),
    ("F_PAEZ_Mobile", "string", "联系人手机", ["13858231903", "13295399861"]),
    ("FCreateDate", "datetime", "创建日期", ["2022-05-07T10:26:24.196"]),
    ("FDocumentStatus", "string", "单据状态", ["A", "C"]),
)
TGT = table(
    "crm",
    "accounts",
    ("khmc", "string", None, []),
    ("tyshxydm", "string", None, []),
    ("lxrsj", "string", None, []),
    ("cjsj", "datetime", None, []),
    ("bz", "string", None, []),
)


def test_suggests_pinyin_targets_from_kingdee_names_and_labels(suggester: Suggester) -> None:
    res = suggester.suggest(SRC, TGT)
    first = {s.source: s.candidates[0].target for s in res.suggestions}
    assert first["FName"] == "khmc"
    assert first["FSOCIALCRECODE"] == "tyshxydm"
    assert first["F_PAEZ_Mobile"] == "lxrsj"
    assert first["FCreateDate"] == "cjsj"
    mapping = {(m.source, m.target) for m in res.mapping}
    assert len({t for _, t in mapping}) == len(mapping)  # one-to-one
    assert ("FDocumentStatus", "bz") not in mapping


HELD_OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "glossary_covered_pairs"


@pytest.mark.parametrize("pair_file", sorted(HELD_OUT.glob("x_00[123]_*.json")), ids=lambda p: p.stem[:5])
def test_naming_styles_absent_from_the_dev_set(suggester: Suggester, pair_file: Path) -> None:
    # SAP codes (KNA1) and Yonyou U8 Hungarian names, with and without labels: styles the issue names
    # that the shared dev set has no pair for. Hand-made from the vendors' public table docs.
    pair = json.loads(pair_file.read_text(encoding="utf-8"))
    res = suggester.suggest(parse_profile(pair["source"]), parse_profile(pair["target"]))
    first = {s.source: s.candidates[0].target for s in res.suggestions if s.candidates}
    truth = dict(pair["ground_truth"])
    top1 = sum(first.get(s) == t for s, t in truth.items()) / len(truth)
    assert top1 >= 0.9, {s: (t, first.get(s)) for s, t in truth.items() if first.get(s) != t}
    accepted = {(m.source, m.target) for m in res.mapping}
    assert accepted and len(accepted & set(map(tuple, pair["ground_truth"]))) / len(accepted) >= 0.95


def test_output_json_shape(suggester: Suggester) -> None:
    out = suggester.suggest(SRC, TGT).to_json()
    assert set(out) >= {"suggestions", "mapping"}
    for s in out["suggestions"]:
        confs = [c["confidence"] for c in s["candidates"]]
        assert all(0.0 <= c <= 1.0 for c in confs)
        assert confs == sorted(confs, reverse=True)
    json.dumps(out, ensure_ascii=False)


def test_empty_tables_and_no_possible_match_give_an_empty_mapping(suggester: Suggester) -> None:
    empty = TableProfile("a", "b", [])
    assert suggester.suggest(empty, TGT).to_json()["mapping"] == []
    assert suggester.suggest(SRC, empty).to_json()["mapping"] == []
    assert suggester.suggest(empty, empty).to_json() == {
        "suggestions": [],
        "mapping": [],
        "threshold": suggester.model.accept_threshold,
    }
    unrelated = table(
        "iot",
        "telemetry",
        ("values.temperature", "number", None, [21.5, 22.0]),
        ("values.voltage", "number", None, [380.2]),
    )
    res = suggester.suggest(SRC, unrelated)
    assert res.mapping == []
    assert all(len(s.candidates) <= 2 for s in res.suggestions)


def test_a_rejected_suggestion_is_never_first_again(suggester: Suggester) -> None:
    scored = suggester.score(SRC, TGT)
    base = suggester.decide(scored, [])
    for s in base.suggestions:
        top = s.candidates[0].target
        again = suggester.decide(scored, [Decision(s.source, top, False)])
        row = next(x for x in again.suggestions if x.source == s.source)
        assert row.candidates[0].target != top
        assert (s.source, top) not in {(m.source, m.target) for m in again.mapping}


def test_an_accepted_decision_wins_its_row_and_column(suggester: Suggester) -> None:
    scored = suggester.score(SRC, TGT)
    res = suggester.decide(scored, [Decision("FDocumentStatus", "bz", True)])
    first = {s.source: s.candidates[0] for s in res.suggestions}
    assert first["FDocumentStatus"].target == "bz"
    assert first["FDocumentStatus"].confidence > 0.99
    assert ("FDocumentStatus", "bz") in {(m.source, m.target) for m in res.mapping}
    assert all(s.candidates[0].target != "bz" for s in res.suggestions if s.source != "FDocumentStatus")


def test_decisions_about_another_object_are_a_soft_hint(suggester: Suggester) -> None:
    scored = suggester.score(SRC, TGT)
    base = {s.source: s for s in suggester.decide(scored, []).suggestions}
    hinted = {
        s.source: s
        for s in suggester.decide(scored, [Decision("FDocumentStatus", "bz", True, 0.5)]).suggestions
    }
    p_base = next((c.probability for c in base["FDocumentStatus"].candidates if c.target == "bz"), 0.0)
    p_hint = next(c.probability for c in hinted["FDocumentStatus"].candidates if c.target == "bz")
    assert p_hint > p_base


@pytest.mark.skipif(not BENCH.exists(), reason="shared mapping benchmark not present")
def test_dev_pair_quality(suggester: Suggester) -> None:
    # Speed is measured in benchmarks/mapping_accuracy.py (latency_inprocess), not asserted here.
    p = json.loads(
        (BENCH / "dev_001_erp_to_crm_kingdee-BD_Customer__fxiaoke-AccountObj.json").read_text(
            encoding="utf-8"
        )
    )
    src, tgt = parse_profile(p["source"]), parse_profile(p["target"])
    res = suggester.suggest(src, tgt)
    gt = dict(map(tuple, p["ground_truth"]))
    first = {s.source: s.candidates[0].target for s in res.suggestions if s.candidates}
    assert sum(first.get(s) == t for s, t in gt.items()) / len(gt) >= 0.7
    accepted = {(m.source, m.target) for m in res.mapping}
    assert len(accepted & set(gt.items())) >= 0.9 * len(accepted)


# ----------------------------------------------------------------------------- transforms


def view(f: FieldProfile, conv: NamingConventions | None = None):
    return FieldViewer(default_glossary()).field(f, conv or NamingConventions())


@pytest.mark.parametrize(
    "src,tgt,expected",
    [
        (
            FieldProfile("createtime", "integer", None, [1572742856]),
            FieldProfile("create_time", "datetime"),
            [{"epoch": {"unit": "s"}}],
        ),
        (
            FieldProfile("ts", "integer", None, [1728962295453]),
            FieldProfile("last_seen", "date"),
            [{"epoch": {"unit": "ms"}}, "date"],
        ),
        (
            FieldProfile("found", "string", None, ["2020-02-22"]),
            FieldProfile("establishment_date", "date"),
            [{"datetime": {"format": "%Y-%m-%d", "tz": "+08:00"}}, "date"],
        ),
        (
            FieldProfile("fund", "string", "注册资本", ["300万元", "1000万元"]),
            FieldProfile("registered_capital", "number"),
            [
                {"regex": {"pattern": r"([0-9][0-9,]*\.?[0-9]*)", "group": 1}},
                "decimal",
                {"scale": {"factor": 10000}},
            ],
        ),
        (
            FieldProfile("gender", "integer", None, [0, 1, 2]),
            FieldProfile("gender", "string"),
            [{"enum": {"map": {"0": "unknown", "1": "male", "2": "female"}, "default": None}}],
        ),
        (
            FieldProfile("mobile", "string", None, ["13858231903"]),
            FieldProfile("MobilePhone", "string"),
            ["phone"],
        ),
        (
            FieldProfile("uscc", "string", None, ["91350100M000100Y43"]),
            FieldProfile("credit_code", "string"),
            ["strip", "upper", "uscc"],
        ),
    ],
)
def test_value_transform_suggestions(src: FieldProfile, tgt: FieldProfile, expected: list) -> None:
    steps, _note = suggest_transform(view(src), view(tgt))
    assert steps == expected


def test_wecom_gender_codes_map_to_target_values() -> None:
    src = view(FieldProfile("gender", "integer", "性别", [0, 1, 2]))
    tgt = view(FieldProfile("xb", "string", "性别", ["男", "女", "未知"]))
    steps, _ = suggest_transform(src, tgt)
    assert steps == [{"enum": {"map": {"0": "未知", "1": "男", "2": "女"}, "default": None}}]


# ----------------------------------------------------------------------------- assignment, model, calibration


def test_numpy_hungarian_matches_scipy() -> None:
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(1)
    for _ in range(50):
        cost = rng.random((int(rng.integers(1, 9)), int(rng.integers(1, 9))))
        r1, c1 = hungarian(cost)
        r2, c2 = linear_sum_assignment(cost)
        assert cost[r1, c1].sum() == pytest.approx(cost[r2, c2].sum())


def test_assignment_is_global_not_greedy() -> None:
    # Greedy would give row 0 its best (col 0) and leave row 1 with 0.05; the optimum swaps them.
    prob = np.array([[0.90, 0.85], [0.88, 0.05]])
    assert assign(prob) == {0: 1, 1: 0}
    assert assign(np.array([[0.01, 0.02]])) == {}


def test_tree_ensemble_reproduces_sklearn() -> None:
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.default_rng(0)
    x = rng.random((400, 5))
    y = (x[:, 0] + 0.3 * x[:, 1] > 0.7).astype(int)
    clf = GradientBoostingClassifier(n_estimators=20, max_depth=3).fit(x, y)
    ens = TreeEnsemble.from_json(json.loads(json.dumps(TreeEnsemble.from_sklearn(clf).to_json())))
    assert np.allclose(ens.predict_proba(x), clf.predict_proba(x)[:, 1], atol=1e-5)


def test_hist_gradient_boosting_export_reproduces_sklearn() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(4)
    x = rng.random((600, 4))
    y = (x[:, 0] - 0.5 * x[:, 2] + 0.1 * rng.random(600) > 0.3).astype(int)
    clf = HistGradientBoostingClassifier(max_iter=30, monotonic_cst=[1, 0, -1, 0]).fit(x, y)
    ens = TreeEnsemble.from_hist_gbdt(clf)
    assert np.allclose(ens.predict_proba(x), clf.predict_proba(x)[:, 1], atol=1e-9)


def test_shipped_model_is_json_and_matches_the_features() -> None:
    model = default_model()
    assert model.feature_names == FEATURE_NAMES
    again = MappingModel.from_json(json.loads(json.dumps(model.to_json())))
    x = np.random.default_rng(2).random((3, 4, len(FEATURE_NAMES)))
    assert np.allclose(model.score(x)[1], again.score(x)[1])
    assert 0.5 <= model.accept_threshold <= 0.99


def test_context_features_rank_rows_and_columns() -> None:
    ctx = context_features(np.array([[0.9, 0.1], [0.8, 0.7]]))
    assert ctx[0, 0, 4] == 0 and ctx[1, 0, 4] == 0  # row rank
    assert ctx[1, 0, 5] == 1  # second in its column
    assert ctx[0, 0, 10] == 1 and ctx[1, 1, 10] == 0  # mutual best


def test_isotonic_calibration_and_ece() -> None:
    rng = np.random.default_rng(3)
    conf = rng.random(2000)
    correct = (rng.random(2000) < conf**2).astype(float)  # over-confident raw scores
    iso = fit_isotonic(conf, correct)
    calibrated = iso(conf)
    assert np.all(np.diff(iso(np.linspace(0, 1, 50))) >= -1e-12)
    raw_ece = ece(list(zip(conf, correct.astype(bool), strict=True)))
    cal_ece = ece(list(zip(calibrated, correct.astype(bool), strict=True)))
    assert cal_ece < raw_ece / 2
    assert Isotonic.identity()(0.3) == pytest.approx(0.3)


def test_threshold_keeps_auto_accept_precision() -> None:
    pts = [(0.99, True)] * 90 + [(0.9, True)] * 5 + [(0.9, False)] * 5 + [(0.5, False)] * 20
    thr = choose_threshold(pts, n_gt=100, target_precision=0.97)
    assert thr == pytest.approx(0.99)


def test_accept_threshold_is_the_stricter_of_held_out_and_seen() -> None:
    held_out = [(0.95, True)] * 90 + [(0.8, True)] * 8 + [(0.8, False)] * 2
    seen = [(0.95, True)] * 97 + [(0.95, False)] * 1 + [(0.8, True)] * 1 + [(0.8, False)] * 1
    ident = Isotonic.identity()
    assert accept_threshold(ident, held_out, 100, [], 0) == pytest.approx(0.8)  # 98 % held out
    assert accept_threshold(ident, held_out, 100, seen, 100) == pytest.approx(0.8)
    strict_seen = [(0.95, True)] * 97 + [(0.8, False)] * 3
    assert accept_threshold(ident, held_out, 100, strict_seen, 100) == pytest.approx(0.95)


def test_inner_folds_hold_out_whole_source_systems() -> None:
    def pair(pid: str, system: str) -> PairData:
        t = TableProfile(system, "o", [])
        return PairData(
            pid, "erp_to_crm", {}, t, t, [], np.zeros((0, 0, len(FEATURE_NAMES))), np.zeros((0, 0))
        )

    pairs = (
        [pair(f"a{i}", "a") for i in range(5)]
        + [pair(f"b{i}", "b") for i in range(3)]
        + [pair("c0", "c"), pair("d0", "d")]
    )
    folds = inner_folds_of(pairs, 3)
    assert sorted(i for f in folds for i in f) == sorted(p.id for p in pairs)  # each pair held out once
    system_of = {p.id: p.source_system for p in pairs}
    held_systems = [{system_of[i] for i in f} for f in folds]
    assert held_systems == [{"a", "d"}, {"b"}, {"c"}]  # largest first, dealt round
    few = inner_folds_of(pairs[:4], 3)  # one system only: pairs are dealt instead
    assert few == [{"a0", "a3"}, {"a1"}, {"a2"}]


def test_cross_validation_trains_on_extra_pairs_but_never_on_the_held_out_system(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mappings.suggest.training as training

    def pair(pid: str, system: str) -> PairData:
        src = TableProfile(system, "customer", [FieldProfile("khmc", "string", None, ["华为"])])
        tgt = TableProfile("crm", "account", [FieldProfile("name", "string", None, ["华为"])])
        return PairData(
            pid,
            "erp_to_crm",
            {},
            src,
            tgt,
            [("khmc", "name")],
            np.zeros((1, 1, len(FEATURE_NAMES))),
            np.ones((1, 1)),
        )

    seen: list[set[str]] = []

    def fake_fit(train: list[PairData], inner_folds: int = 3) -> tuple[TreeEnsemble, TreeEnsemble]:
        seen.append({p.id for p in train})
        flat = TreeEnsemble(0.0, 0.1, [])
        return flat, flat

    monkeypatch.setattr(training, "fit_stages", fake_fit)
    monkeypatch.setattr(training, "in_sample_points", lambda model, pairs: ([], 0))
    monkeypatch.setattr(training, "fit_platt", lambda conf, correct: Isotonic.identity())
    monkeypatch.setattr(training, "accept_threshold", lambda *args: 0.5)
    pairs = [pair("dev_001", "a"), pair("dev_002", "b"), pair("dev_003", "c")]
    extra = [pair("h_1", "a"), pair("h_2", "z")]
    training.cross_validate(pairs, lambda p: p.source_system, verbose=False, extra=extra)
    assert seen == [
        {"dev_002", "dev_003", "h_2"},
        {"dev_001", "h_1", "dev_003", "h_2"},
        {"dev_001", "h_1", "dev_002", "h_2"},
    ]
    assert training._pair_number("dev_017_x#nolabels") == 17
    assert training._pair_number("h_a01_sap") == training._pair_number("h_a01_sap#coldstart")


def test_augment_makes_harder_copies_of_a_pair() -> None:
    src = TableProfile(
        "erp",
        "customer",
        [
            FieldProfile("khmc", "string", "客户名称", ["华为"]),
            FieldProfile("dh", "string", None, ["13800000000"]),
        ],
    )
    tgt = TableProfile(
        "crm",
        "account",
        [
            FieldProfile("name", "string", "Name", ["华为"]),
            FieldProfile("phone", "string", None, ["13900000000"]),
        ],
    )
    y = np.eye(2)
    pair = PairData(
        "p1",
        "erp_to_crm",
        {},
        src,
        tgt,
        [("khmc", "name"), ("dh", "phone")],
        np.zeros((2, 2, len(FEATURE_NAMES))),
        y,
    )
    copies = augment([pair])
    tags = {c.id.split("#")[1]: c for c in copies}
    assert set(tags) == {"nolabels", "coldstart"}
    assert all(
        c.augmented and c.source_system == "erp" and c.y is y and c.x.shape == (2, 2, len(FEATURE_NAMES))
        for c in copies
    )
    assert all(f.label is None for f in tags["nolabels"].source.fields + tags["nolabels"].target.fields)
    assert all(f.samples == [] for f in tags["coldstart"].target.fields)
    assert tags["coldstart"].source.fields[0].samples == ["华为"]
    assert augment(copies) == []  # copies are not copied again
    assert pair.source.fields[0].label == "客户名称"  # the original is untouched


def test_refit_overlay_moves_towards_the_decisions() -> None:
    rows = [([1.0, 0.0], 0.3, True)] * 30 + [([0.0, 1.0], 0.6, False)] * 30
    overlay = refit_overlay(rows, l2=1.0)
    p = overlay.apply(np.array([0.3, 0.6]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert p[0] > 0.3 and p[1] < 0.6
    assert refit_overlay([]).a == 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("采购方式", ["procurement_method"]),  # not 采购方 + 式
        ("开标地点", ["bid_opening", "location"]),
        ("逾期天数", ["overdue"]),
        ("竞争对手", ["competitor"]),
    ],
)
def test_general_chinese_vocabulary(text: str, expected: list[str]) -> None:
    assert default_glossary().terms_from_chinese(text) == expected


def test_new_terms_do_not_take_over_existing_pinyin_initials() -> None:
    viewer = FieldViewer(default_glossary())
    assert viewer.parse_initials("cjsj")[0] == "create"  # 创建, not 成交 (award)
    assert default_glossary().sim("competitor", "supplier") < 1.0


@pytest.mark.skipif(not BENCH.exists(), reason="mapping benchmark not available")
def test_features_do_not_depend_on_the_hash_seed() -> None:
    """Pinyin renderings are ordered before truncation, so CV figures are reproducible run to run."""
    import os
    import subprocess
    import sys

    pair = sorted(BENCH.glob("dev_004_*.json"))[0]  # Kingdee → pinyin-initial CRM: many pinyin renderings
    code = (
        "import json, sys\n"
        "from mappings.suggest.engine import Suggester\n"
        "from mappings.suggest.profiles import parse_profile\n"
        "p = json.load(open(sys.argv[1], encoding='utf-8'))\n"
        "print(Suggester().score(parse_profile(p['source']), parse_profile(p['target'])).x.round(12).tolist())\n"
    )
    root = Path(__file__).resolve().parents[1]
    outs = {
        subprocess.run(
            [sys.executable, "-c", code, str(pair)],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1


def test_the_shipped_pinyin_cache_covers_the_glossary() -> None:
    # A Chinese glossary form missing from data/pinyin_cache.json makes every suggest call import
    # pypinyin (~0.3 s); run mappings.suggest.glossary.write_pinyin_cache() after editing the glossary.
    from mappings.suggest.glossary import PINYIN_CACHE, Glossary

    cached = json.loads(PINYIN_CACHE.read_text(encoding="utf-8"))
    assert sorted(set(Glossary.load().zh_term) - set(cached)) == []
