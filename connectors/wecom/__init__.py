"""WeCom (企业微信) 客户联系 connector: simulator, client, tap, target, rescan and callbacks (docs/wecom.md)."""
