"""Field keys of Kingdee's customer and sales order forms, written once.

The simulator's form schema (the columns ``ExecuteBillQuery`` can return), its ``Save`` (the fields a
save may set) and the two-way spoke's query all name these; a field Kingdee adds or renames changes here.
"""

from __future__ import annotations

#: number, name and registration fields (all text), in the order the form lists them
CUSTOMER_REGISTRATION: tuple[str, ...] = (
    "FNumber",
    "FName",
    "FShortName",
    "FSOCIALCRECODE",
    "FTAXREGISTERCODE",
    "FLegalPerson",
    "FRegisterFund",
)

#: contact fields (all text), in the order the form lists them
CUSTOMER_CONTACT: tuple[str, ...] = ("FTEL", "FFAX", "FADDRESS", "FZIP", "FWEBSITE", "FDomains")

#: sales order (``SAL_SaleOrder``) header fields: the document's states and its delivery contact
SALES_ORDER_STATES_AND_DELIVERY: tuple[str, ...] = (
    "FDocumentStatus",
    "FCloseStatus",
    "FCancelStatus",
    "FLinkMan",
    "FLinkPhone",
    "FReceiveAddress",
    "FNote",
)
