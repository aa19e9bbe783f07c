"""The pure core: events, commands, the config fold and validation. No I/O, no clock."""
