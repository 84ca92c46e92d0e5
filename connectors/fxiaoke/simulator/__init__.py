"""A local Fxiaoke (纷享销客) CRM OpenAPI server for tests, demos and benchmarks.

It speaks the documented wire protocol (issue 11; developer.fxiaoke.com / open.fxiaoke.com wiki):

* every call is ``POST`` with a JSON body; errors are HTTP 200 with ``errorCode`` != 0, an
  ``errorMessage`` and a ``traceId``;
* tokens, two generations: ``/cgi/corpAccessToken/get/V2`` (``appId``, ``appSecret``,
  ``permanentCode`` -> ``corpAccessToken``, ``corpId``, ``expiresIn``; calls then carry them and
  ``currentOpenUserId`` in the body) and ``/oauth2.0/token`` (``grantType: app_secret`` ->
  ``accessToken`` + ``ea``; calls send ``authorization: Bearer``, ``x-fs-ea``, ``x-fs-userid`` and a
  fresh ``thirdTraceId`` on the URL). Tokens live 7,200 s, asking again within 6,600 s returns the
  same one, the endpoint takes at most 10 calls a minute and refuses a concurrent call;
* ``/cgi/crm/v2/data/{query,get,create,update,invalid,delete,changeOwner}`` for the preset objects
  (``AccountObj``, ``ContactObj``, ``LeadsObj``, ``NewOpportunityObj``, ``SalesOrderObj`` with
  ``SalesOrderProductObj`` lines, ``PaymentObj``), ``/cgi/crm/custom/v2/data/*`` for ``__c`` objects,
  ``/cgi/crm/v2/object/{list,describe}``;
* query limits: ``limit`` <= 100, ``offset`` a multiple of ``limit`` and <= 10,000 (beyond that, page
  by ``_id GT last``);
* 100 calls per 20 s per endpoint (errorCode 10009), the daily quota (30002 spent, 30003 not bought),
  20016 when a token has expired.

:mod:`.objects` holds the descriptions and value formats, :mod:`.data` the records, the query engine
and the write side effects, :mod:`.app` the HTTP API (:class:`FxiaokeSimulator`).
"""

from connectors.fxiaoke.objects import OBJECTS, STAGE_PROBABILITY
from connectors.fxiaoke.simulator.app import (
    QUOTA_EXCEEDED,
    QUOTA_NOT_PURCHASED,
    THROTTLED,
    TOKEN_CONCURRENT,
    TOKEN_EXPIRED,
    TOKEN_FREQ,
    FxiaokeSimulator,
)
from connectors.fxiaoke.simulator.data import MAX_LIMIT, MAX_OFFSET, TenantStore

SIMULATOR = FxiaokeSimulator

__all__ = [
    "MAX_LIMIT",
    "MAX_OFFSET",
    "OBJECTS",
    "QUOTA_EXCEEDED",
    "QUOTA_NOT_PURCHASED",
    "SIMULATOR",
    "STAGE_PROBABILITY",
    "THROTTLED",
    "TOKEN_CONCURRENT",
    "TOKEN_EXPIRED",
    "TOKEN_FREQ",
    "FxiaokeSimulator",
    "TenantStore",
]
