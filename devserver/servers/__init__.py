"""The HTTP servers we run on loopback, bounded: uvicorn's protocol with limits."""
