"""A local public procurement site (标讯) for tests, demos and ``tongbu simulate tender`` (see :mod:`.app`)."""

from connectors.tender.simulator.app import TenderSimulator
from connectors.tender.simulator.data import NoticeStore

SIMULATOR = TenderSimulator

__all__ = ["SIMULATOR", "NoticeStore", "TenderSimulator"]
