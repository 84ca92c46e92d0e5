"""A local Kingdee K/3 Cloud (金蝶云星空) WebAPI server for tests, demos and benchmarks.

It speaks the documented wire protocol (``../shared/research/external-apis.md`` §2):

* ``POST /k3cloud/Kingdee.BOS.WebApi.ServicesStub.AuthService.ValidateUser.common.kdsvc`` and
  ``...AuthService.LoginByAppSecret.common.kdsvc`` log in and set the ``kdservice-sessionid`` and
  ``ASP.NET_SessionId`` cookies (``LoginResultType`` 1 = success, 0 = failure with ``Message``);
* ``...DynamicFormService.ExecuteBillQuery.common.kdsvc`` answers ``FormId`` / ``FieldKeys`` /
  ``FilterString`` / ``OrderString`` / ``StartRow`` / ``Limit`` / ``TopRowCount`` with an array of
  arrays in FieldKeys order, one row per entry line when an entry field is asked for;
  ``...BillQuery...`` returns the same rows as objects; ``...View...`` returns one entity;
* errors come back as HTTP 200 with ``Result.ResponseStatus`` (nested ``[[{...}]]`` for queries):
  "会话信息已丢失，请重新登录" when the session is gone, ``MsgCode`` 14 when throttled.

Three forms are served: ``BD_Customer`` (客户), ``SAL_SaleOrder`` (销售订单, header +
``FSaleOrderEntry`` lines) and ``AR_receivable`` (应收单). The package is split by concern:

* :mod:`.forms`: the forms' schema and FieldKeys, Kingdee's datetime format, :class:`QueryError`;
* :mod:`.filterstring`: the FilterString parser (linear time, bounded size and depth);
* :mod:`.data`: the seeded rows (companies, people, phones from :mod:`connectors.kit.fakedata`);
* :mod:`.store`: the SQLite database, the query engine, edits and the ground truth;
* :mod:`.app`: the HTTP API, sessions and the control API (:class:`KingdeeSimulator`).

Fault switches (the kit's catalogue, ``docs/writing-a-connector.md``): ``throttle=RATE`` (MsgCode 14),
``session_expiry=N`` (a session is dropped after serving N queries; ``session_idle=SECONDS``, default
1200, drops idle ones), ``http_5xx=RATE`` (IIS error page), ``slow=SECONDS``, ``timeout=RATE`` (+
``hang=SECONDS``, default 120), and the row-level ``same_second=ROWS``, ``null_modify_date=ROWS``
(that share of the rows has a NULL ``FModifyDate``) and ``malformed=RATE`` (a bad value that
``truth()`` names). Row-level switches take effect when the data is seeded.

A control API (``/_sim/...``) and the matching Python methods (:meth:`KingdeeSimulator.modify`,
``insert``, ``counts``, ``truth``, ``stats``, ``set_faults``, ``expire_sessions``) let tests and the
demo change data and read the ground truth.
"""

from connectors.kingdee.simulator.app import (
    ASPNET_COOKIE,
    SESSION_COOKIE,
    SESSION_LOST_MESSAGE,
    THROTTLE_MESSAGE,
    KingdeeSimulator,
)
from connectors.kingdee.simulator.filterstring import (
    MAX_DEPTH,
    MAX_FILTER_CHARS,
    MAX_PARAMS,
    FilterTranslator,
    filter_array_to_string,
)
from connectors.kingdee.simulator.forms import (
    FORMS,
    LCID_ZH_CN,
    FieldDef,
    FormDef,
    QueryError,
    kd_format,
    parse_literal_ms,
)
from connectors.kingdee.simulator.store import DEFAULT_LIMIT, MAX_LIMIT, KingdeeStore

SIMULATOR = KingdeeSimulator

__all__ = [
    "ASPNET_COOKIE",
    "DEFAULT_LIMIT",
    "FORMS",
    "LCID_ZH_CN",
    "MAX_DEPTH",
    "MAX_FILTER_CHARS",
    "MAX_LIMIT",
    "MAX_PARAMS",
    "SESSION_COOKIE",
    "SESSION_LOST_MESSAGE",
    "SIMULATOR",
    "THROTTLE_MESSAGE",
    "FieldDef",
    "FilterTranslator",
    "FormDef",
    "KingdeeSimulator",
    "KingdeeStore",
    "QueryError",
    "filter_array_to_string",
    "iter_form_ids",
    "kd_format",
    "parse_literal_ms",
]


def iter_form_ids() -> list[str]:
    """Form ids the simulator serves."""
    return [f.form_id for f in FORMS.values()]
