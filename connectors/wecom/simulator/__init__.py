"""A local WeCom (企业微信) server: the 客户联系 API at the real paths, and its callbacks.

What it reproduces (external-apis.md §1):

* ``/cgi-bin/gettoken`` → ``access_token`` that expires after ``expires_in``; every error is HTTP 200
  with ``errcode``/``errmsg`` (41001 missing, 40014 invalid, 42001 expired token, 45009 frequency,
  45033 concurrency, -1 busy, 84061 no relationship, 40096 bad external_userid, 43001/43002 method);
* ``externalcontact/get_follow_user_list``, ``list``, ``get``, ``batch/get_by_user`` (both request
  shapes, opaque ``next_cursor``), ``get_corp_tag_list``, ``add_corp_tag``/``edit_corp_tag``/
  ``del_corp_tag``, ``mark_tag``, ``remark``, ``groupchat/list``, ``groupchat/get``, ``/cgi-bin/user/list``;
* callbacks POSTed to a configured URL, encrypted and signed with WXBizMsgCrypt, retried when the
  receiver does not answer in time; **changes made through the API produce no callback**, as in WeCom.

Data is realistic Chinese and deterministic from the seed (:mod:`connectors.kit.fakedata`, with WeCom's
own vocabulary and ids in :mod:`connectors.wecom.simdata`);
only changes are stored, so 100,000 contacts over hundreds of employees fit in a few megabytes.

Tests and benchmarks drive it through Python methods (``add_external_contact``, ``edit_external_contact``,
``del_external_contact``, ``del_follow_user``, tag and group-chat changes, ``update_profile`` for the
silent edits WeCom never reports) or the same actions over HTTP under ``/_sim/``.

Fault switches (``--faults``, the kit's catalogue in ``docs/writing-a-connector.md``): ``throttle=RATE``
(45009), ``session_expiry=N`` (a token expires after serving N calls: 42001), ``http_5xx=RATE``,
``slow=SECONDS``, ``timeout=RATE`` (+ ``hang``), and WeCom's own ``token_ttl=SECONDS``,
``token_invalid=RATE`` (40014), ``freq_per_min=N`` (45009 above N calls per API per minute),
``concurrency=N`` (45033 above N requests in flight), ``concurrency_rate=RATE`` (45033), ``busy=RATE``
(-1), ``drop_callbacks=RATE``, ``callback_timeout=SECONDS`` (default 5), ``callback_attempts=N``
(default 3), ``callback_retry_delay=SECONDS`` (default 1).

The package is split by concern: :mod:`.corp` (the data model), :mod:`.api` (API handlers),
:mod:`.changes` (changes WeCom reports with callbacks), :mod:`.callbacks` (encrypted delivery),
:mod:`.tokens`, :mod:`.cursors`, :mod:`.errors` and :mod:`.app` (HTTP and control API).
"""

from connectors.wecom.simulator.app import WeComSimulator, main
from connectors.wecom.simulator.callbacks import CallbackRecord
from connectors.wecom.simulator.errors import WeComAPIError

SIMULATOR = WeComSimulator

__all__ = ["SIMULATOR", "CallbackRecord", "WeComAPIError", "WeComSimulator", "main"]
