"""``tongbu mappings suggest / review / refit`` end to end: files, drafts, stored decisions, learning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mappings.suggest.draft import sidecar_path
from tongbu.suggest_cli import app

SOURCE = {
    "system": "wecom",
    "object": "external_contact",
    "fields": [
        {
            "name": "external_contact.external_userid",
            "type": "string",
            "label": "外部联系人userid",
            "samples": ["wm1WzEqabHbLlD_e2ND2MzjctEhQthZD", "wmfyCD4m1a6J2mDSJxSSNiWROke-HzCD"],
        },
        {
            "name": "external_contact.name",
            "type": "string",
            "label": "外部联系人名称",
            "samples": ["顾建华", "王磊"],
        },
        {"name": "external_contact.gender", "type": "integer", "label": "性别", "samples": [0, 1, 2]},
        {
            "name": "follow_info.createtime",
            "type": "integer",
            "label": "添加时间",
            "samples": [1572742856, 1719381920],
        },
        {
            "name": "follow_info.remark_mobiles",
            "type": "array",
            "label": "备注手机号",
            "samples": [["13858231903"]],
        },
        {"name": "errcode", "type": "integer", "label": "错误码", "samples": [0]},
    ],
}
TARGET = {
    "system": "crm",
    "object": "contacts",
    "fields": [
        {"name": "name", "type": "string", "label": "姓名", "samples": []},
        {"name": "gender", "type": "string", "label": "性别", "samples": []},
        {"name": "create_time", "type": "datetime", "label": "创建时间", "samples": []},
        {"name": "mobile", "type": "string", "label": "手机", "samples": []},
        {"name": "email", "type": "string", "label": "邮箱", "samples": []},
    ],
}


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TONGBU_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TONGBU_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src.json").write_text(json.dumps(SOURCE, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "tgt.json").write_text(json.dumps(TARGET, ensure_ascii=False), encoding="utf-8")
    yield tmp_path
    from tongbu.db import dispose_engines

    dispose_engines()


def run(*args: str, input: str | None = None):
    result = CliRunner().invoke(app, list(args), input=input)
    return result


def test_suggest_json_shape(env: Path) -> None:
    res = run("suggest", "--source", "src.json", "--target", "tgt.json", "--format", "json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    first = {s["source"]: s["candidates"][0]["target"] for s in out["suggestions"]}
    assert first["external_contact.name"] == "name"
    assert first["follow_info.createtime"] == "create_time"
    assert first["follow_info.remark_mobiles"] == "mobile"
    assert all({"source", "target", "confidence"} <= set(m) for m in out["mapping"])
    assert "errcode" not in {m["source"] for m in out["mapping"]}


def test_malformed_profile_is_a_clear_error(env: Path) -> None:
    (env / "bad.json").write_text(
        '{"system": "x", "fields": [{"name": "a", "type": "text"}]}', encoding="utf-8"
    )
    res = run("suggest", "--source", "bad.json", "--target", "tgt.json", "--format", "json")
    assert res.exit_code == 2
    assert "bad.json" in res.output and "type 'text' is not one of" in res.output
    res = run("suggest", "--source", "missing.json", "--target", "tgt.json")
    assert res.exit_code == 2 and "file not found" in res.output


def test_empty_tables_give_an_empty_mapping(env: Path) -> None:
    (env / "empty.json").write_text('{"system": "x", "object": "y", "fields": []}', encoding="utf-8")
    res = run("suggest", "--source", "empty.json", "--target", "tgt.json", "--format", "json")
    assert res.exit_code == 0
    assert json.loads(res.stdout)["mapping"] == []
    res = run("suggest", "--source", "src.json", "--target", "empty.json", "--format", "json")
    assert res.exit_code == 0
    assert json.loads(res.stdout)["mapping"] == []


def test_table_and_yaml_formats(env: Path) -> None:
    res = run("suggest", "--source", "src.json", "--target", "tgt.json")
    assert res.exit_code == 0 and "create_time" in res.output
    res = run("suggest", "--source", "src.json", "--target", "tgt.json", "--format", "yaml")
    assert res.exit_code == 0
    assert yaml.safe_load(res.output)["version"] == 1


def test_write_review_and_learn(env: Path) -> None:
    draft = env / "mappings" / "wecom_contacts.yaml"
    res = run(
        "suggest",
        "--source",
        "src.json",
        "--target",
        "tgt.json",
        "--write",
        str(draft),
        "--threshold",
        "0.99",
    )
    assert res.exit_code == 0, res.output
    text = draft.read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    assert doc["version"] == 1 and doc["source"] == {"system": "wecom", "stream": "external_contact"}
    assert "confidence" in text  # every line carries its confidence and reason as a comment
    assert sidecar_path(draft).exists()
    from mappings.spec import load_mapping

    spec = load_mapping(draft)  # the mapping engine accepts the draft as it is
    assert {f.target for f in spec.fields} >= {"source_id"}
    side = json.loads(sidecar_path(draft).read_text(encoding="utf-8"))
    todo = [f["source"] for f in side["fields"] if f["status"] in ("review", "auto")]
    acc, rej, alt = "follow_info.createtime", "external_contact.name", "external_contact.gender"
    assert {acc, rej, alt} <= set(todo)
    answers = {acc: "a", rej: "r", alt: "2"}  # accept, reject, choose the second candidate; skip the rest
    res = run(
        "review", str(draft), "--reviewer", "alice", input="\n".join(answers.get(s, "s") for s in todo) + "\n"
    )
    assert res.exit_code == 0, res.output
    assert "3 decision(s) stored" in res.output
    doc = yaml.safe_load(draft.read_text(encoding="utf-8"))
    lines = {f.get("source"): f["target"] for f in doc["fields"]}
    top = {f["source"]: f["candidates"][0]["target"] for f in side["fields"]}
    second = {f["source"]: f["candidates"][1]["target"] for f in side["fields"] if len(f["candidates"]) > 1}
    assert lines[acc] == top[acc]
    assert rej not in lines
    assert lines[alt] == second[alt]

    from mappings.suggest.store import SystemPair, decisions_for

    decided = {
        (r.source_field, r.target_field): r
        for r in decisions_for(SystemPair("wecom", "crm", "external_contact", "contacts"))
    }
    assert decided[(acc, top[acc])].accepted and decided[(acc, top[acc])].decided_by == "alice"
    assert not decided[(rej, top[rej])].accepted
    assert not decided[(alt, top[alt])].accepted and decided[(alt, second[alt])].accepted
    order = [acc, rej, alt]

    # The next suggestion for the same system pair uses the decisions at once.
    res = run("suggest", "--source", "src.json", "--target", "tgt.json", "--format", "json")
    out = json.loads(res.stdout)
    first = {s["source"]: s["candidates"][0]["target"] for s in out["suggestions"]}
    assert first[order[1]] != top[order[1]]  # rejected: never first again
    assert first[order[2]] == second[order[2]]  # chosen alternative: now first
    assert (order[2], second[order[2]]) in {(m["source"], m["target"]) for m in out["mapping"]}
    # ... unless asked to ignore history
    res = run("suggest", "--source", "src.json", "--target", "tgt.json", "--format", "json", "--no-history")
    assert {s["source"]: s["candidates"][0]["target"] for s in json.loads(res.stdout)["suggestions"]}[
        order[1]
    ] == top[order[1]]

    # refit the correction layer from the stored decisions
    res = run("refit")
    assert res.exit_code == 0 and "refit on 4 decisions" in res.output
    assert (env / "home" / "mapping_model_overlay.json").exists()
    res = run("suggest", "--source", "src.json", "--target", "tgt.json", "--format", "json")
    assert res.exit_code == 0


def test_review_without_sidecar(env: Path) -> None:
    (env / "plain.yaml").write_text("version: 1\n", encoding="utf-8")
    res = run("review", "plain.yaml")
    assert res.exit_code == 2 and "suggest" in res.output


def test_crm_object_target_and_unknown_stream(env: Path) -> None:
    res = run("suggest", "--source", "nosuchconn:customers", "--target", "tgt.json", "--format", "json")
    assert res.exit_code == 2
    assert "nosuchconn" in res.output


def test_migration_matches_the_table(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, inspect

    from mappings.suggest.store import MappingReview
    from tongbu.migrate import upgrade_to_head

    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade_to_head(engine)
    cols = {c["name"]: c for c in inspect(engine).get_columns("mapping_reviews")}
    model_cols = {c.name: c for c in MappingReview.__table__.columns}
    assert set(cols) == set(model_cols)
    for name, col in model_cols.items():
        assert bool(cols[name]["nullable"]) == bool(col.nullable), name
    idx = {i["name"] for i in inspect(engine).get_indexes("mapping_reviews")}
    assert "ix_mapping_reviews_pair" in idx
    engine.dispose()
