"""The HTTP/WebSocket server: live sessions, health, metrics and the browser voice page."""
