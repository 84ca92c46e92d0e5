"""``python -m connectors.wecom.simulator``: run the WeCom simulator in the foreground."""

from connectors.wecom.simulator.app import main

main()
