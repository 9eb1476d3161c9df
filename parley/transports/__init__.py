"""Transports: each turns one kind of connection into audio in, paced audio out and control events."""
