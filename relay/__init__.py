"""The bundled relay: an authenticated, rate-limited, unbuffered SSE passthrough."""
