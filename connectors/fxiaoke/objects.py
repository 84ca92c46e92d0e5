"""The preset Fxiaoke objects tongbu works with: their descriptions (the shape
``/cgi/crm/v2/object/describe`` answers) and the checks a write's values go through (Fxiaoke's value
formats). The ``__c`` fields are the custom fields the integration asks the tenant to add
(``docs/connectors/fxiaoke.md``: the intent key, the ERP's number and figures). The simulator serves
exactly these; tap-fxiaoke reads the real tenant's ``describe`` (which may hold more custom fields)
and falls back to these only when discovery runs without network (a catalog built offline).

Value formats, as the real OpenAPI has them: numbers, amounts and percentages are strings
(``"100.01"``), dates and times are milliseconds since the epoch, a single-select holds the option
*value* (not its label), employee and department fields are lists even when single
(``["FSUID_1000"]``), a lookup holds the other record's ``_id``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["OBJECTS", "FieldDesc", "ObjectDesc", "ValueError_", "check_value"]


class ValueError_(ValueError):  # noqa: N801 - a ValueError that names the field
    """A value a write cannot store; ``field`` names the field."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class FieldDesc:
    """One field of an object description."""

    api_name: str
    label: str
    type: str
    required: bool = False
    #: select_one: (value, label) pairs
    options: tuple[tuple[str, str], ...] = ()
    #: object_reference / master_detail: the target object
    target: str | None = None
    #: computed by the system (formula, auto number, system field): a write may not set it
    readonly: bool = False

    def describe(self) -> dict[str, Any]:
        """The field as ``describe`` answers it."""
        out: dict[str, Any] = {
            "api_name": self.api_name,
            "label": self.label,
            "type": self.type,
            "is_required": self.required,
            "is_readonly": self.readonly,
            "define_type": "custom" if self.api_name.endswith("__c") else "package",
        }
        if self.options:
            out["options"] = [{"value": v, "label": lab} for v, lab in self.options]
        if self.target:
            out["target_api_name"] = self.target
        return out


@dataclass(frozen=True)
class ObjectDesc:
    """One object: its apiName, label and fields."""

    api_name: str
    label: str
    fields: tuple[FieldDesc, ...]
    #: the detail object written with it in ``details`` (sales order -> its products)
    detail: str | None = None
    #: an approval flow runs on create/update unless ``triggerApprovalFlow`` is false
    approval: bool = False
    by_name: dict[str, FieldDesc] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.api_name: f for f in self.fields})

    def describe(self) -> dict[str, Any]:
        """The object as ``describe`` answers it."""
        return {
            "api_name": self.api_name,
            "display_name": self.label,
            "define_type": "custom" if self.api_name.endswith("__c") else "package",
            "fields": {f.api_name: f.describe() for f in self.fields},
        }


def _system_fields() -> tuple[FieldDesc, ...]:
    return (
        FieldDesc("_id", "ID", "text", readonly=True),
        FieldDesc("owner", "负责人", "employee", required=True),
        FieldDesc("owner_department", "负责人主属部门", "text", readonly=True),
        FieldDesc("data_own_department", "归属部门", "department"),
        FieldDesc("created_by", "创建人", "employee", readonly=True),
        FieldDesc("create_time", "创建时间", "date_time", readonly=True),
        FieldDesc("last_modified_by", "最后修改人", "employee", readonly=True),
        FieldDesc("last_modified_time", "最后修改时间", "date_time", readonly=True),
        FieldDesc(
            "life_status",
            "生命状态",
            "select_one",
            options=(
                ("normal", "正常"),
                ("under_review", "审核中"),
                ("ineffective", "未生效"),
                ("invalid", "作废"),
            ),
            readonly=True,
        ),
        FieldDesc(
            "lock_status", "锁定状态", "select_one", options=(("0", "未锁定"), ("1", "锁定")), readonly=True
        ),
        FieldDesc("is_deleted", "是否已删除", "true_or_false", readonly=True),
        FieldDesc("record_type", "业务类型", "record_type"),
        #: tongbu's idempotency key, a custom field an integrator adds (creates are findable by it)
        FieldDesc("tongbu_key__c", "同步幂等键", "text"),
    )


LEVELS = (("1", "A类(重要客户)"), ("2", "B类(普通客户)"), ("3", "C类(一般客户)"), ("4", "D类(潜在客户)"))
STAGES = (
    ("1", "验证客户"),
    ("2", "需求确定"),
    ("3", "方案/报价"),
    ("4", "谈判审核"),
    ("5", "赢单"),
    ("6", "输单"),
)
#: the win rate (probability, percent) a stage sets: Fxiaoke's stage-driven probability
STAGE_PROBABILITY = {"1": "10", "2": "30", "3": "50", "4": "80", "5": "100", "6": "0"}
INDUSTRY_OPTIONS = (
    ("manufacturing", "制造业"),
    ("it", "电子信息"),
    ("trade", "批发零售"),
    ("service", "服务业"),
    ("construction", "建筑业"),
    ("other", "其他"),
)

ACCOUNT = ObjectDesc(
    "AccountObj",
    "客户",
    (
        *_system_fields(),
        FieldDesc("name", "客户名称", "text", required=True),
        FieldDesc("account_no", "客户编号", "auto_number", readonly=True),
        FieldDesc("uniform_social_credit_code", "统一社会信用代码", "text"),
        FieldDesc("account_level", "客户级别", "select_one", options=LEVELS),
        FieldDesc("industry_level1", "行业", "select_one", options=INDUSTRY_OPTIONS),
        FieldDesc("tel", "电话", "phone_number"),
        FieldDesc("address", "详细地址", "text"),
        FieldDesc("url", "网址", "url"),
        FieldDesc("remark", "备注", "long_text"),
        FieldDesc("high_seas_id", "所属公海", "object_reference", target="HighSeasObj"),
        FieldDesc("credit_limit__c", "信用额度", "currency"),
        FieldDesc("receivable_balance__c", "应收余额", "currency"),
        FieldDesc("erp_number__c", "ERP客户编码", "text"),
        FieldDesc("level_changed_time__c", "级别变更时间", "date_time", readonly=True),
    ),
)
CONTACT = ObjectDesc(
    "ContactObj",
    "联系人",
    (
        *_system_fields(),
        FieldDesc("name", "姓名", "text", required=True),
        FieldDesc("account_id", "客户名称", "object_reference", target="AccountObj"),
        FieldDesc("job_title", "职务", "text"),
        FieldDesc("department", "部门", "text"),
        FieldDesc("mobile1", "手机1", "phone_number"),
        FieldDesc("tel1", "电话1", "phone_number"),
        FieldDesc("email", "邮件", "email"),
        FieldDesc("gender", "性别", "select_one", options=(("1", "男"), ("2", "女"))),
    ),
)
LEADS = ObjectDesc(
    "LeadsObj",
    "销售线索",
    (
        *_system_fields(),
        FieldDesc("name", "姓名", "text", required=True),
        FieldDesc("company", "公司", "text"),
        FieldDesc("mobile", "手机", "phone_number"),
        FieldDesc("email", "邮件", "email"),
        FieldDesc(
            "source",
            "线索来源",
            "select_one",
            options=(("1", "官网"), ("2", "展会"), ("3", "转介绍"), ("4", "电话营销")),
        ),
        FieldDesc(
            "biz_status",
            "线索状态",
            "select_one",
            options=(
                ("un_assigned", "未分配"),
                ("un_processed", "待处理"),
                ("processed", "已跟进"),
                ("transformed", "已转换"),
                ("closed", "无效"),
            ),
        ),
        FieldDesc("budget__c", "预算", "currency"),
    ),
)
OPPORTUNITY = ObjectDesc(
    "NewOpportunityObj",
    "商机2.0",
    (
        *_system_fields(),
        FieldDesc("name", "商机名称", "text", required=True),
        FieldDesc("account_id", "客户名称", "object_reference", target="AccountObj", required=True),
        FieldDesc("sales_stage", "商机阶段", "select_one", options=STAGES),
        FieldDesc("probability", "赢率", "percentile", readonly=True),
        FieldDesc("amount", "商机金额", "currency"),
        FieldDesc("close_date", "预计成交日期", "date"),
    ),
)
ORDER = ObjectDesc(
    "SalesOrderObj",
    "销售订单",
    (
        *_system_fields(),
        FieldDesc("name", "销售订单编号", "auto_number", readonly=True),
        FieldDesc("account_id", "客户名称", "object_reference", target="AccountObj", required=True),
        FieldDesc("order_time", "下单日期", "date", required=True),
        FieldDesc("order_amount", "销售订单金额", "currency", readonly=True),
        FieldDesc("currency__c", "币种", "text"),
        FieldDesc("erp_bill_no__c", "ERP单据编号", "text"),
        FieldDesc("erp_status__c", "ERP单据状态", "text"),
        FieldDesc("remark", "备注", "long_text"),
    ),
    detail="SalesOrderProductObj",
    approval=True,
)
ORDER_LINE = ObjectDesc(
    "SalesOrderProductObj",
    "订单产品",
    (
        *_system_fields(),
        FieldDesc("order_id", "销售订单", "master_detail", target="SalesOrderObj", readonly=True),
        FieldDesc("product_code__c", "产品编码", "text", required=True),
        FieldDesc("product_name__c", "产品名称", "text"),
        FieldDesc("quantity", "数量", "number", required=True),
        FieldDesc("sales_price", "销售单价", "currency", required=True),
        FieldDesc("tax_rate__c", "税率", "percentile"),
        FieldDesc("subtotal", "小计", "currency", readonly=True),
        FieldDesc("line_no__c", "行号", "number"),
    ),
)
PAYMENT = ObjectDesc(
    "PaymentObj",
    "回款",
    (
        *_system_fields(),
        FieldDesc("name", "回款编号", "auto_number", readonly=True),
        FieldDesc("account_id", "客户名称", "object_reference", target="AccountObj", required=True),
        FieldDesc("order_id", "销售订单", "object_reference", target="SalesOrderObj"),
        FieldDesc("payment_amount", "回款金额", "currency", required=True),
        FieldDesc("payment_time", "回款日期", "date", required=True),
        FieldDesc(
            "payment_term",
            "回款方式",
            "select_one",
            options=(
                ("1", "支票"),
                ("2", "现金"),
                ("3", "邮政汇款"),
                ("4", "电汇"),
                ("5", "网上转账"),
                ("6", "支付宝"),
                ("7", "微信支付"),
            ),
        ),
        FieldDesc("erp_bill_no__c", "ERP收款单号", "text"),
        FieldDesc("currency__c", "币种", "text"),
    ),
)

#: every object by apiName
OBJECTS: dict[str, ObjectDesc] = {
    o.api_name: o for o in (ACCOUNT, CONTACT, LEADS, OPPORTUNITY, ORDER, ORDER_LINE, PAYMENT)
}

_NUMBER = re.compile(r"^-?\d{1,15}(\.\d{1,6})?$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}$")


def check_value(f: FieldDesc, value: Any) -> Any:
    """``value`` as the field stores it, or :class:`ValueError_` naming the rule it breaks."""
    if value is None or value == "":
        if f.required:
            raise ValueError_(f.api_name, "字段必填 (required)")
        return None
    kind = f.type
    if kind in ("number", "currency", "percentile"):
        text = str(value) if not isinstance(value, bool) else ""
        if isinstance(value, float):
            text = format(Decimal(repr(value)), "f")
        if not _NUMBER.match(text):
            raise ValueError_(f.api_name, f"数字格式错误: {str(value)[:40]!r}")
        try:
            return format(Decimal(text).normalize(), "f") if "." in text else text
        except InvalidOperation:
            raise ValueError_(f.api_name, f"数字格式错误: {text[:40]!r}") from None
    if kind in ("date", "date_time"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError_(f.api_name, "日期须为毫秒时间戳 (ms epoch integer)")
        return value
    if kind == "select_one":
        if str(value) not in {v for v, _ in f.options}:
            labels = ", ".join(f"{v}={lab}" for v, lab in f.options)
            raise ValueError_(f.api_name, f"选项值 {str(value)[:40]!r} 不存在 (options: {labels})")
        return str(value)
    if kind in ("employee", "department"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError_(f.api_name, '人员/部门字段须为列表, 如 ["FSUID_1000"]')
        return list(value)
    if kind == "true_or_false":
        if not isinstance(value, bool):
            raise ValueError_(f.api_name, "须为 true/false")
        return value
    if kind == "email" and not _EMAIL.match(str(value)):
        raise ValueError_(f.api_name, f"邮件格式错误: {str(value)[:40]!r}")
    if not isinstance(value, str | int):
        raise ValueError_(f.api_name, "须为文本")
    text = str(value)
    if len(text) > 2000:
        raise ValueError_(f.api_name, "文本过长 (at most 2000 characters)")
    return text
