"""The dev server's side of the live conversation with the stubs (conversation.py: sans-I/O); the
asyncio shell that moves its messages over AppSync is devserver/live/bridge.py."""
