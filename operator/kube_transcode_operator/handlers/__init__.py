"""kopf handlers: what main.py wires to events, one module per concern."""
