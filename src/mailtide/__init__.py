"""mailtide: a Gmail sync engine that keeps a complete local mirror of Gmail mailboxes."""

__version__ = "0.1.0"
