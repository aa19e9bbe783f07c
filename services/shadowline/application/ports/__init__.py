"""What the application needs from the outside, as Protocols the adapters satisfy structurally."""
